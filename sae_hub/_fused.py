"""Fused TopK encoder for training: dense forward, a backward that touches only the k selected latents.

The forward is `topk(relu(x @ W_enc + b_enc), k)`. A dense autograd graph would spend two more
`[N, d_in] x [d_in, d_sae]` matmuls in the backward; here the input gradient is an `embedding_bag` over
the selected encoder columns and the weight and bias gradients are scattered into those columns only,
so the backward costs O(N k d_in) instead of O(N d_sae d_in) (the sparsify design, written anew).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class TopKCode(NamedTuple):
    """The k largest ReLU pre-activations per token: `values[n, j]` belongs to latent `indices[n, j]`."""

    values: Tensor
    indices: Tensor


class _FusedTopK(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, W_enc: Tensor, b_enc: Tensor, k: int) -> tuple[Tensor, Tensor]:
        pre = torch.addmm(b_enc.to(x.dtype), x, W_enc.to(x.dtype))
        values, indices = torch.topk(torch.relu_(pre), k, dim=-1, sorted=False)
        ctx.save_for_backward(x, W_enc, values, indices)
        ctx.mark_non_differentiable(indices)
        return values, indices

    @staticmethod
    def backward(ctx: Any, grad_values: Tensor, _grad_indices: Tensor | None) -> tuple[Tensor | None, ...]:
        x, W_enc, values, indices = ctx.saved_tensors
        g = (grad_values * (values > 0)).to(W_enc.dtype)  # ReLU: no gradient where the value is 0
        grad_x = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(indices, W_enc.T.contiguous(), mode="sum", per_sample_weights=g)
            grad_x = grad_x.to(x.dtype)
        if ctx.needs_input_grad[1]:
            # d/dW of embedding_bag(indices, W, g) against upstream x is exactly the scatter
            # sum_{n,j} g[n, j] * x[n] into row indices[n, j]; its backward kernel is the fastest scatter.
            with torch.enable_grad():
                rows = W_enc.new_zeros(W_enc.shape[1], W_enc.shape[0], requires_grad=True)
                out = F.embedding_bag(indices, rows, mode="sum", per_sample_weights=g)
                (grad_W_t,) = torch.autograd.grad(out, rows, x.to(W_enc.dtype))
            grad_W = grad_W_t.T
        if ctx.needs_input_grad[2]:
            grad_b = W_enc.new_zeros(W_enc.shape[1]).index_add_(0, indices.reshape(-1), g.reshape(-1))
        return grad_x, grad_W, grad_b, None


def fused_topk(x: Tensor, W_enc: Tensor, b_enc: Tensor, k: int) -> TopKCode:
    """Return the top-k of `relu(x @ W_enc + b_enc)` per row of `x [N, d_in]`, with a sparse backward."""
    values, indices = _FusedTopK.apply(x, W_enc, b_enc, k)
    return TopKCode(values, indices)
