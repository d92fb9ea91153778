"""Sparse kernels: decode from (values, indices) and from a mostly-zero dense code without a dense matmul.

Both use `embedding_bag`, which gathers only the decoder rows that are active and sums them with
per-sample weights; gradients flow to the decoder and to the values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Below this fraction of non-zeros, gathering rows beats the dense [n, d_sae] @ [d_sae, d_out] matmul.
SPARSE_DECODE_MAX_DENSITY = 0.05


def gather_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """Return `sum_j values[..., j] * W_dec[indices[..., j]]`, shape `[..., d_out]`."""
    lead = values.shape[:-1]
    k = values.shape[-1]
    flat_idx = indices.reshape(-1, k)
    flat_val = values.reshape(-1, k).to(W_dec.dtype)
    if flat_idx.shape[0] == 0 or k == 0:
        return W_dec.new_zeros(*lead, W_dec.shape[1])
    out = F.embedding_bag(flat_idx, W_dec, mode="sum", per_sample_weights=flat_val)
    return out.reshape(*lead, W_dec.shape[1])


def decode_mostly_zero(f: Tensor, W_dec: Tensor) -> Tensor:
    """Return `f @ W_dec`, gathering only the non-zero entries of `f` when it is sparse enough."""
    lead = f.shape[:-1]
    flat = f.reshape(-1, f.shape[-1])
    n = flat.shape[0]
    mask = flat != 0
    nnz = int(mask.sum())
    if n == 0 or nnz > SPARSE_DECODE_MAX_DENSITY * flat.numel():
        return (f.to(W_dec.dtype) @ W_dec).reshape(*lead, W_dec.shape[1])
    rows, cols = mask.nonzero(as_tuple=True)
    vals = flat[rows, cols].to(W_dec.dtype)
    counts = torch.bincount(rows, minlength=n)
    offsets = torch.cumsum(counts, 0) - counts
    out = F.embedding_bag(cols, W_dec, offsets, mode="sum", per_sample_weights=vals)
    return out.reshape(*lead, W_dec.shape[1])


def pack_dense(f: Tensor) -> tuple[Tensor, Tensor]:
    """Turn a dense code into (values, indices) padded to the largest per-row count of non-zeros."""
    flat = f.reshape(-1, f.shape[-1])
    width = int((flat != 0).sum(-1).max()) if flat.numel() else 0
    width = max(width, 1)
    _, indices = torch.topk(flat.abs(), width, dim=-1, sorted=True)
    values = flat.gather(-1, indices)
    return values.reshape(*f.shape[:-1], width), indices.reshape(*f.shape[:-1], width)
