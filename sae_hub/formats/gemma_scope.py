"""Gemma Scope 1 (`google/gemma-scope-*`): one `params.npz` per SAE, nothing else.

The folder is `layer_{L}/width_{W}/average_l0_{N}/` (or `embedding/width_4k/average_l0_{N}/`) and holds
a numpy `.npz` with float32 arrays `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_out]`, `b_enc [d_sae]`,
`b_dec [d_out]` and `threshold [d_sae]`, already in canonical orientation. The SAE is a JumpReLU
(`f = relu(pre)·1[pre > threshold]`, `pre = x @ W_enc + b_enc`) with no pre-bias and no input
normalisation. There is no config: hook, model and site live only in the repo id and the path, so
the registry supplies them; the reader records the layer, width and L0 parsed from the path. Arrays
are memory-mapped (the archive stores them uncompressed) and a pickled object inside it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sae_hub._io import atomic_path
from sae_hub.config import Provenance, SAEConfig
from sae_hub.errors import FormatError
from sae_hub.formats._common import names_of, prefix, prepared, refuse
from sae_hub.formats._npz import read_npz

NAME = "gemma-scope"
WEIGHTS_FILE = "params.npz"
_KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


def detect(files: Sequence[str]) -> bool:
    """True when the SAE folder holds `params.npz`."""
    return WEIGHTS_FILE in names_of(files)


def files_for(sae_id: str | None) -> list[str]:
    """Patterns of the files one SAE needs, relative to the repo root."""
    return [prefix(sae_id) + WEIGHTS_FILE]


def _path_facts(folder: Path) -> tuple[int | None, dict[str, Any]]:
    """Return (layer, other facts) parsed from `layer_{L}/width_{W}/average_l0_{N}` path parts."""
    layer: int | None = None
    facts: dict[str, Any] = {}
    for part in folder.parts:
        if m := re.fullmatch(r"layer_(\d+)", part):
            layer = int(m.group(1))
        elif m := re.fullmatch(r"width_(\w+)", part):
            facts["width"] = m.group(1)
        elif m := re.fullmatch(r"average_l0_(\d+)", part):
            facts["average_l0"] = int(m.group(1))
        elif part == "embedding":
            facts["embedding"] = True
    return layer, facts


def read(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read `params.npz` into a canonical JumpReLU SAE (float32, no pre-bias, no normalisation)."""
    folder = Path(folder)
    path = folder if folder.suffix == ".npz" else folder / WEIGHTS_FILE
    arrays = {(k[0].upper() + k[1:] if k.startswith("w_") else k): v for k, v in read_npz(path).items()}
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise FormatError(f"arrays {missing} are missing; found {sorted(arrays)}", path=str(path))
    tensors: dict[str, Tensor] = {}
    for key in _KEYS:
        arr = arrays[key]
        if not arr.is_floating_point():
            raise FormatError(f"array {key} has dtype {arr.dtype}; expected float", path=str(path), key=key)
        tensors[key] = arr
    d_in, d_sae = tensors["W_enc"].shape if tensors["W_enc"].ndim == 2 else (0, 0)
    if tensors["W_dec"].ndim != 2 or d_in == 0:
        raise FormatError("W_enc and W_dec must be matrices", path=str(path), key="W_enc")
    layer, facts = _path_facts(folder.parent if folder.suffix == ".npz" else folder)
    cfg = SAEConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        d_out=int(tensors["W_dec"].shape[1]),
        architecture="jumprelu",
        dtype=tensors["W_enc"].dtype,
        provenance=Provenance(layer=layer, source_format=NAME, extra=facts),
    )
    return cfg, tensors


def write(cfg: SAEConfig, tensors: dict[str, Tensor], folder: Path) -> None:
    """Write a JumpReLU (or ReLU, as threshold 0) SAE as float32 `params.npz`; refuse the rest."""
    if cfg.normalization != "none":
        raise refuse(
            NAME,
            f"params.npz has no config to record {cfg.normalization} input normalisation",
            "normalization",
        )
    if cfg.skip_connection:
        raise refuse(NAME, "params.npz has no skip connection (use gemma-scope-2)", "skip_connection")
    thresholded = cfg.architecture == "jumprelu" or (
        cfg.architecture == "batchtopk" and cfg.batchtopk_mode == "threshold"
    )
    if not thresholded and cfg.architecture != "relu":
        raise refuse(
            NAME, f"Gemma Scope SAEs are JumpReLU; {cfg.architecture} is not representable", "architecture"
        )
    cfg, tensors = prepared(cfg, tensors, fold_pre_bias=True)
    if cfg.architecture == "relu":  # relu(pre)·1[pre > 0] == relu(pre)
        tensors["threshold"] = torch.zeros(cfg.d_sae, dtype=cfg.dtype)
    arrays = {k: tensors[k].detach().to("cpu", torch.float32).numpy() for k in _KEYS}
    folder = Path(folder)
    with atomic_path(folder / WEIGHTS_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
