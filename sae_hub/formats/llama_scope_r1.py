"""Llama Scope R1 Distill (`fnlp/Llama-Scope-R1-Distill`): `config.json` + `sae_weights.safetensors`.

Folders `{mix}/L{L}R/` hold float32 `nn.Linear` tensors `encoder.weight [d_sae, d_in]`,
`encoder.bias [d_sae]`, `decoder.weight [d_out, d_sae]`, `decoder.bias [d_out]` and a per-latent
`log_jumprelu_threshold [d_sae]`. The SAE is a JumpReLU with `threshold = exp(log_jumprelu_threshold)`,
no pre-bias (`apply_decoder_bias_to_pre_encoder: false`) and no decoder-norm term
(`sparsity_include_decoder_norm: false`). `config.json` records `sae_type`, `d_model`,
`expansion_factor`, `hook_point_in`/`hook_point_out`, `act_fn`, `norm_activation` (`dataset-wise`)
and more, but **not** the dataset norm: the registry supplies it as `input_scale`/`output_scale`, so
`read` leaves both at 1 and records `norm_activation` in `provenance.extra`. Read-only (the
threshold is stored as a logarithm, so writing could not round-trip bitwise).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from sae_hub.config import Provenance, SAEConfig
from sae_hub.errors import FormatError
from sae_hub.formats._common import (
    check_dims,
    from_linear,
    get_field,
    layer_of,
    names_of,
    prefix,
    tensor,
)
from sae_hub.formats._safetensors import read_safetensors
from sae_hub.formats.llama_scope import read_lm_saes_config

logger = logging.getLogger(__name__)

NAME = "llama-scope-r1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "sae_weights.safetensors"


def detect(files: Sequence[str]) -> bool:
    """True when the folder holds `config.json` and `sae_weights.safetensors`."""
    return {CONFIG_FILE, WEIGHTS_FILE} <= names_of(files)


def files_for(sae_id: str | None) -> list[str]:
    """Patterns of the files one SAE needs, relative to the repo root."""
    return [prefix(sae_id) + CONFIG_FILE, prefix(sae_id) + WEIGHTS_FILE]


def read(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read an R1 Distill folder into a canonical JumpReLU SAE (dataset scales left to the registry)."""
    folder = Path(folder)
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    raw = read_lm_saes_config(
        cfg_path, "an R1 Distill", ("apply_decoder_bias_to_pre_encoder", "sparsity_include_decoder_norm")
    )
    d_model = get_field(raw, "d_model", int, cfg_path)
    check_dims(cfg_path, d_model=d_model)
    state = read_safetensors(weights_path)
    enc_w = tensor(state, "encoder.weight", weights_path, ndim=2)
    dec_w = tensor(state, "decoder.weight", weights_path, ndim=2)
    d_sae = int(enc_w.shape[0])
    expected = d_model * raw["expansion_factor"] if isinstance(raw.get("expansion_factor"), int) else d_sae
    if enc_w.shape[1] != d_model or d_sae != expected or dec_w.shape[1] != d_sae:
        raise FormatError(
            f"encoder.weight {tuple(enc_w.shape)} / decoder.weight {tuple(dec_w.shape)} do not match "
            f"d_model={d_model}, expansion_factor={raw.get('expansion_factor')} in {CONFIG_FILE}",
            path=str(weights_path),
        )
    tensors = from_linear(
        enc_w,
        tensor(state, "encoder.bias", weights_path, ndim=1),
        dec_w,
        tensor(state, "decoder.bias", weights_path, ndim=1),
    )
    tensors["threshold"] = tensor(state, "log_jumprelu_threshold", weights_path, ndim=1).to(enc_w.dtype).exp()
    norm = raw.get("norm_activation")
    if norm == "dataset-wise":
        logger.info(
            "%s: dataset-wise norm is not in the files; the registry supplies input/output scales", cfg_path
        )
    hook_in, hook_out = raw.get("hook_point_in"), raw.get("hook_point_out")
    extra = {k: raw[k] for k in ("norm_activation", "sae_type", "top_k", "expansion_factor") if k in raw}
    prov = Provenance(
        hook=hook_in,
        hook_out=hook_out if hook_out != hook_in else None,
        layer=layer_of(hook_in),
        source_format=NAME,
        extra=extra,
    )
    cfg = SAEConfig(
        d_in=d_model,
        d_sae=d_sae,
        d_out=int(dec_w.shape[0]),
        architecture="jumprelu",
        dtype=enc_w.dtype,
        provenance=prov,
    )
    return cfg, tensors
