"""Per-token input normalisation of SAEs, and its inverse on the output.

`layer_norm` is OpenAI's v5 scheme, reproduced by SAELens: per-token mean and unbiased std, the input
divided by `std + 1e-5`, the output multiplied back by `std` (without the eps) and shifted by the mean.
`constant_norm_rescale` scales each token to norm `sqrt(d_in)` and divides the output back. Constant
dataset-wise scales are applied around these and can be folded into the weights
(`SAE.fold_normalization`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

LAYER_NORM_EPS = 1e-5


class NormStats(NamedTuple):
    """Per-token statistics needed to undo the input normalisation on the output."""

    mean: Tensor | None
    """Per-token mean removed by layer_norm (`[..., 1]`), else None."""
    scale: Tensor | None
    """Per-token factor the output is multiplied by (`[..., 1]`), else None."""


def normalize(x: Tensor, kind: str, input_scale: float) -> tuple[Tensor, NormStats]:
    """Apply the constant input scale, then the per-token normalisation `kind`."""
    if input_scale != 1.0:
        x = x * input_scale
    if kind == "none":
        return x, NormStats(None, None)
    if kind == "layer_norm":
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        std = centred.std(dim=-1, keepdim=True)
        return centred / (std + LAYER_NORM_EPS), NormStats(mean, std)
    if kind == "constant_norm_rescale":
        # An all-zero token (padding) stays zero instead of becoming NaN.
        divisor = (x.norm(dim=-1, keepdim=True) / math.sqrt(x.shape[-1])).clamp_min(torch.finfo(x.dtype).tiny)
        return x / divisor, NormStats(None, divisor)
    raise ValueError(f"unknown normalization {kind!r}")


def denormalize(y: Tensor, stats: NormStats | None, output_scale: float) -> Tensor:
    """Undo the per-token normalisation (when `stats` are given), then the constant output scale."""
    if stats is not None:
        if stats.scale is not None:
            y = y * stats.scale
        if stats.mean is not None:
            y = y + stats.mean
    if output_scale != 1.0:
        y = y / output_scale
    return y
