"""Gemma Scope 2 (`google/gemma-scope-2-*`): `params.safetensors` + `config.json` per SAE folder.

The folder is `{site}[_all]/layer_{L}_width_{W}_l0_{small|medium|big}[_affine]/`. The safetensors
file holds lowercase tensors in canonical orientation: `w_enc [d_in, d_sae]`, `w_dec [d_sae, d_out]`,
`b_enc [d_sae]`, `b_dec [d_out]`, `threshold [d_sae]`, and for affine transcoders
`affine_skip_connection [d_in, d_out]`, applied as `x @ affine_skip_connection` (so it is `W_skip`
as is). The SAE is a JumpReLU with no pre-bias and no normalisation. `config.json` records
`architecture` (`"jump_relu"`), `model_name` (e.g. `gemma-v3-1b-pt`), `hf_hook_point_in`,
`hf_hook_point_out` (transcoders), `width`, `l0`, and optionally `affine_connection` and `type`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from sae_hub._io import write_json_atomic
from sae_hub.config import Provenance, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats._common import get_field, layer_of, load_json, names_of, prefix, prepared, refuse, tensor
from sae_hub.formats._safetensors import read_safetensors, write_safetensors

NAME = "gemma-scope-2"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "params.safetensors"
_NAMES = {"w_enc": "W_enc", "w_dec": "W_dec", "b_enc": "b_enc", "b_dec": "b_dec", "threshold": "threshold"}
_SKIP = "affine_skip_connection"


def detect(files: Sequence[str]) -> bool:
    """True when the folder holds `params.safetensors` and `config.json`."""
    return {CONFIG_FILE, WEIGHTS_FILE} <= names_of(files)


def files_for(sae_id: str | None) -> list[str]:
    """Patterns of the files one SAE needs, relative to the repo root."""
    return [prefix(sae_id) + CONFIG_FILE, prefix(sae_id) + WEIGHTS_FILE]


def _model_id(raw: str | None) -> str | None:
    """`gemma-v3-1b-pt` -> `google/gemma-3-1b-pt` (the Hugging Face id of the base model)."""
    if not raw:
        return None
    name = raw if "/" in raw else f"google/{raw}"
    return name.replace("-v3", "-3")


def read(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read a Gemma Scope 2 folder into a canonical JumpReLU SAE (skip transcoder when affine)."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    raw = load_json(cfg_path)
    arch = get_field(raw, "architecture", str, cfg_path)
    if arch != "jump_relu":
        raise ConfigError(
            f"{cfg_path}: field 'architecture' is {arch!r}; expected 'jump_relu'", field="architecture"
        )
    weights_path = folder / WEIGHTS_FILE
    state = read_safetensors(weights_path)
    tensors = {canon: tensor(state, name, weights_path) for name, canon in _NAMES.items()}
    if _SKIP in state:
        tensors["W_skip"] = tensor(state, _SKIP, weights_path, ndim=2)
    w_enc, w_dec = tensors["W_enc"], tensors["W_dec"]
    if w_enc.ndim != 2 or w_dec.ndim != 2:
        raise FormatError("w_enc and w_dec must be matrices", path=str(weights_path), key="w_enc")
    hook_in = raw.get("hf_hook_point_in")
    hook_out = raw.get("hf_hook_point_out")
    extra: dict[str, Any] = {k: raw[k] for k in ("width", "l0", "type", "affine_connection") if k in raw}
    prov = Provenance(
        model=_model_id(raw.get("model_name")),
        hook=hook_in,
        hf_hook=hook_in,
        hook_out=hook_out,
        layer=layer_of(hook_in, folder.name),
        source_format=NAME,
        extra=extra,
    )
    cfg = SAEConfig(
        d_in=int(w_enc.shape[0]),
        d_sae=int(w_enc.shape[1]),
        d_out=int(w_dec.shape[1]),
        architecture="jumprelu",
        skip_connection="W_skip" in tensors,
        dtype=w_enc.dtype,
        provenance=prov,
    )
    return cfg, tensors


def write(cfg: SAEConfig, tensors: dict[str, Tensor], folder: Path) -> None:
    """Write a JumpReLU (or ReLU, as threshold 0) SAE or transcoder; refuse what has no equivalent."""
    if cfg.normalization != "none":
        raise refuse(NAME, f"no field records {cfg.normalization} input normalisation", "normalization")
    thresholded = cfg.architecture == "jumprelu" or (
        cfg.architecture == "batchtopk" and cfg.batchtopk_mode == "threshold"
    )
    if not thresholded and cfg.architecture != "relu":
        raise refuse(
            NAME, f"Gemma Scope 2 SAEs are JumpReLU; {cfg.architecture} is not representable", "architecture"
        )
    cfg, tensors = prepared(cfg, tensors, fold_pre_bias=True)
    if cfg.architecture == "relu":  # relu(pre)·1[pre > 0] == relu(pre)
        tensors["threshold"] = tensors["b_enc"].new_zeros(cfg.d_sae)
    out = {name: tensors[canon] for name, canon in _NAMES.items()}
    if cfg.skip_connection:
        out[_SKIP] = tensors["W_skip"]
    prov = cfg.provenance
    raw: dict[str, Any] = {
        "architecture": "jump_relu",
        "model_name": prov.model,
        "hf_hook_point_in": prov.hf_hook or prov.hook,
        "width": cfg.d_sae,
        "type": "transcoder" if cfg.is_transcoder else "sae",
    }
    if cfg.is_transcoder:
        raw["hf_hook_point_out"] = prov.hook_out
        raw["affine_connection"] = cfg.skip_connection
    if "l0" in prov.extra:
        raw["l0"] = prov.extra["l0"]
    folder = Path(folder)
    write_safetensors(out, folder / WEIGHTS_FILE, metadata={"format": "pt"})
    write_json_atomic(folder / CONFIG_FILE, raw)
