"""Per-token input normalisation of SAEs, and its inverse on the output.

`layer_norm` is OpenAI's v5 scheme (per-token mean and unbiased std, eps 1e-5 added to the std);
`constant_norm_rescale` scales each token to norm sqrt(d_in). Constant dataset-wise scales are
applied around these and can be folded into the weights (`SAE.fold_normalization`).
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
    """Per-token factor the input was divided by (`[..., 1]`), else None."""


def normalize(x: Tensor, kind: str, input_scale: float) -> tuple[Tensor, NormStats]:
    """Apply the constant input scale, then the per-token normalisation `kind`."""
    if input_scale != 1.0:
        x = x * input_scale
    if kind == "none":
        return x, NormStats(None, None)
    if kind == "layer_norm":
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        std = centred.std(dim=-1, keepdim=True) + LAYER_NORM_EPS
        return centred / std, NormStats(mean, std)
    if kind == "constant_norm_rescale":
        divisor = x.norm(dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
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
