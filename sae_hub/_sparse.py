"""Sparse kernels: decode a code by gathering only the active decoder rows, never a dense matmul.

A top-k code arrives padded (`values, indices` of width k); a thresholded code (relu, jumprelu,
gated) arrives as a mask over the pre-activations and is compacted row by row (`RowSparse`). Both
decode through `embedding_bag`, which sums the selected rows of `W_dec` with per-sample weights and
passes gradients to the decoder and to the values. When a mask is dense enough that a matmul wins,
`decode_masked` does the matmul instead, so callers never need to choose.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

# Above this fraction of non-zeros the dense [n, d_sae] @ [d_sae, d_out] matmul beats gathering rows
# (measured on a 2-core AVX2 CPU: gathering reaches ~1/10 of the matmul's multiply-add rate).
SPARSE_DECODE_MAX_DENSITY = 0.05


class RowSparse(NamedTuple):
    """The non-zeros of an `[n, d]` code in row order (CSR): rows, columns, values, row starts."""

    rows: Tensor
    """Row of each non-zero, `[nnz]`, non-decreasing."""
    cols: Tensor
    """Latent index of each non-zero, `[nnz]`."""
    vals: Tensor
    """Activation of each non-zero, `[nnz]`."""
    offsets: Tensor
    """Position in `cols`/`vals` where each row starts, `[n]`."""


def select(values: Tensor, mask: Tensor) -> RowSparse:
    """Compact the entries of the 2-D `values` where `mask` is True, row by row."""
    rows, cols = mask.nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=mask.shape[0])
    offsets = counts.cumsum(0) - counts
    return RowSparse(rows, cols, values[rows, cols], offsets)


def decode_rows(code: RowSparse, W_dec: Tensor) -> Tensor:
    """Return the `[n, d_out]` product of a row-sparse code with `W_dec`."""
    n = code.offsets.shape[0]
    if n == 0 or code.cols.numel() == 0:
        return W_dec.new_zeros(n, W_dec.shape[1])
    return F.embedding_bag(
        code.cols, W_dec, code.offsets, mode="sum", per_sample_weights=code.vals.to(W_dec.dtype)
    )


def pad_rows(code: RowSparse) -> tuple[Tensor, Tensor]:
    """Lay a row-sparse code out as `(values, indices)` padded to the longest row with zeros at index 0."""
    n = code.offsets.shape[0]
    counts = torch.bincount(code.rows, minlength=n)
    width = max(int(counts.max()), 1) if n and code.rows.numel() else 1
    values = code.vals.new_zeros(n, width)
    indices = torch.zeros(n, width, dtype=torch.long, device=code.cols.device)
    pos = torch.arange(code.rows.numel(), device=code.rows.device) - code.offsets[code.rows]
    values[code.rows, pos] = code.vals
    indices[code.rows, pos] = code.cols
    return values, indices


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


def _worth_gathering(mask: Tensor) -> bool:
    return int(mask.count_nonzero()) <= SPARSE_DECODE_MAX_DENSITY * mask.numel()


def decode_masked(values: Tensor, mask: Tensor, W_dec: Tensor) -> Tensor:
    """Return `where(mask, values, 0) @ W_dec`, gathering rows when the mask is sparse enough."""
    lead = values.shape[:-1]
    flat_v = values.reshape(-1, values.shape[-1])
    flat_m = mask.reshape(-1, mask.shape[-1])
    if _worth_gathering(flat_m):
        out = decode_rows(select(flat_v, flat_m), W_dec)
    else:
        out = torch.where(flat_m, flat_v, 0).to(W_dec.dtype) @ W_dec
    return out.reshape(*lead, W_dec.shape[1])


def decode_mostly_zero(f: Tensor, W_dec: Tensor) -> Tensor:
    """Return `f @ W_dec`, gathering only the non-zero entries of `f` when it is sparse enough."""
    flat = f.reshape(-1, f.shape[-1])
    mask = flat != 0
    if not _worth_gathering(mask):
        return f.to(W_dec.dtype) @ W_dec
    return decode_rows(select(flat, mask), W_dec).reshape(*f.shape[:-1], W_dec.shape[1])
