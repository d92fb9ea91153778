"""Llama Scope (`fnlp/Llama3_1-8B-Base-LX{R,A,M,TC}-{8,32}x`): `hyperparams.json` + `checkpoints/final.safetensors`.

Each folder `Llama3_1-8B-Base-L{L}{R|A|M|TC}-{8|32}x/` holds bfloat16 `nn.Linear` tensors
`encoder.weight [d_sae, d_in]`, `encoder.bias [d_sae]`, `decoder.weight [d_out, d_sae]`,
`decoder.bias [d_out]`, saved in lm_saes's *training* space. `hyperparams.json` records `d_model`,
`d_sae`, `hook_point_in`/`hook_point_out` (TransformerLens names), `act_fn` (`jumprelu`), a single
scalar `jump_relu_threshold`, `norm_activation` (`dataset-wise`) with
`dataset_average_activation_norm {in, out}`, `sparsity_include_decoder_norm` and
`apply_decoder_bias_to_pre_encoder` (false). lm_saes loads it by folding the dataset norm
(`s = sqrt(d_model) / norm`) into the parameters, then moving every latent to a unit-norm decoder
column, then applying JumpReLU with the scalar threshold. The reader does the same (per-latent
factors in float64) and returns float32 canonical weights on raw activations; with
`n_i = ||decoder[:, i]||`: `W_enc[:, i] = E[i]·n_i·s_in/s_out`, `b_enc[i] = bias[i]·n_i/s_out`,
`W_dec[i] = D[:, i]/n_i`, `b_dec = decoder.bias/s_out`, `threshold[i] = jump_relu_threshold`
(without `sparsity_include_decoder_norm` only the dataset norm is folded: `b_enc = bias/s_in`,
`W_dec = Dᵀ·s_in/s_out`). Read-only: the files live in a training space that a canonical SAE
does not carry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hub.config import Provenance, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats._common import (
    check_dims,
    get_field,
    layer_of,
    load_json,
    names_of,
    prefix,
    tensor,
)
from sae_hub.formats._safetensors import read_safetensors

NAME = "llama-scope"
CONFIG_FILE = "hyperparams.json"
WEIGHTS_FILE = "checkpoints/final.safetensors"


def detect(files: Sequence[str]) -> bool:
    """True when the folder holds `hyperparams.json` and the `checkpoints/final.safetensors` file."""
    names = names_of(files)
    return CONFIG_FILE in names and ("checkpoints" in names or "final.safetensors" in names)


def files_for(sae_id: str | None) -> list[str]:
    """Patterns of the files one SAE needs, relative to the repo root."""
    return [prefix(sae_id) + CONFIG_FILE, prefix(sae_id) + WEIGHTS_FILE]


def _norm_scales(raw: dict[str, Any], d_model: int, path: Path) -> tuple[float, float]:
    """Return (s_in, s_out) = sqrt(d_model) / dataset average norm of the input and output."""
    kind = raw.get("norm_activation", "dataset-wise")
    if kind == "inference" or kind is None:
        return 1.0, 1.0
    if kind != "dataset-wise":
        raise ConfigError(
            f"{path}: norm_activation {kind!r} is not supported; expected 'dataset-wise' or 'inference'",
            field="norm_activation",
        )
    norms = get_field(raw, "dataset_average_activation_norm", dict, path)
    scales = []
    for side in ("in", "out"):
        value = norms.get(side)
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise ConfigError(
                f"{path}: dataset_average_activation_norm.{side} must be a positive number, got {value!r}",
                field=f"dataset_average_activation_norm.{side}",
            )
        scales.append(math.sqrt(d_model) / float(value))
    return scales[0], scales[1]


def read_lm_saes_config(cfg_path: Path, release: str, refused_flags: tuple[str, ...]) -> dict:
    """Read an lm_saes JSON config, refusing non-JumpReLU activations and flags the release never sets."""
    raw = load_json(cfg_path)
    act = get_field(raw, "act_fn", str, cfg_path)
    if act != "jumprelu":
        raise ConfigError(f"{cfg_path}: act_fn {act!r} is not supported; expected 'jumprelu'", field="act_fn")
    for flag in refused_flags:
        if raw.get(flag, False):
            raise ConfigError(f"{cfg_path}: {flag}=true is not {release} release setting", field=flag)
    return raw


def read(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read a Llama Scope folder and convert it faithfully (dataset norm and decoder norms folded)."""
    folder = Path(folder)
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    raw = read_lm_saes_config(cfg_path, "a Llama Scope", ("apply_decoder_bias_to_pre_encoder",))
    d_model = get_field(raw, "d_model", int, cfg_path)
    d_sae = get_field(raw, "d_sae", int, cfg_path)
    check_dims(cfg_path, d_model=d_model, d_sae=d_sae)
    theta = get_field(raw, "jump_relu_threshold", (int, float), cfg_path)
    s_in, s_out = _norm_scales(raw, d_model, cfg_path)

    state = read_safetensors(weights_path)
    enc_w = tensor(state, "encoder.weight", weights_path, ndim=2)
    dec_w = tensor(state, "decoder.weight", weights_path, ndim=2)
    if enc_w.shape != (d_sae, d_model) or dec_w.shape[1] != d_sae:
        raise FormatError(
            f"encoder.weight {tuple(enc_w.shape)} / decoder.weight {tuple(dec_w.shape)} do not match "
            f"d_model={d_model}, d_sae={d_sae} in {CONFIG_FILE}",
            path=str(weights_path),
        )
    d_out = dec_w.shape[0]
    enc_b = tensor(state, "encoder.bias", weights_path, ndim=1).double()
    use_dec_bias = raw.get("use_decoder_bias", True)
    dec_b = (
        tensor(state, "decoder.bias", weights_path, ndim=1).double()
        if use_dec_bias
        else torch.zeros(d_out, dtype=torch.float64)
    )

    # m_i: the norm of decoder column i once the dataset norm is folded (x s_in / s_out); the
    # unit-norm step divides it out. Without `sparsity_include_decoder_norm` that step is skipped.
    include_norm = raw.get("sparsity_include_decoder_norm", True)
    # Per-latent factors in float64; the matrices are scaled once each, in float32 (no float64 copies).
    w_dec = dec_w.to(torch.float32).T
    norms = torch.linalg.vector_norm(w_dec, dim=1, dtype=torch.float64)
    m = norms * (s_in / s_out) if include_norm else torch.ones(d_sae, dtype=torch.float64)
    if include_norm and not bool((m > 0).all()):
        raise FormatError(
            "a decoder column has zero norm; cannot move it to unit norm", path=str(weights_path)
        )
    out_dtype = torch.float32
    tensors = {
        "W_enc": enc_w.T.to(out_dtype).mul_(m.to(out_dtype)),
        "b_enc": (enc_b * m / s_in).to(out_dtype),
        "W_dec": w_dec.mul_(((s_in / s_out) / m).to(out_dtype)[:, None]),
        "b_dec": (dec_b / s_out).to(out_dtype),
        "threshold": torch.full((d_sae,), float(theta), dtype=out_dtype),
    }
    hook_in, hook_out = raw.get("hook_point_in"), raw.get("hook_point_out")
    extra = {
        k: raw[k]
        for k in (
            "jump_relu_threshold",
            "dataset_average_activation_norm",
            "top_k",
            "norm_activation",
            "dtype",
        )
        if k in raw
    }
    extra["decoder_norm_folded"] = bool(include_norm)
    prov = Provenance(
        hook=hook_in,
        hook_out=hook_out if hook_out != hook_in else None,
        layer=layer_of(hook_in),
        source_format=NAME,
        extra=extra,
    )
    cfg = SAEConfig(
        d_in=d_model, d_sae=d_sae, d_out=d_out, architecture="jumprelu", dtype=out_dtype, provenance=prov
    )
    return cfg, tensors
