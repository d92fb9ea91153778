"""EleutherAI sparsify (formerly `EleutherAI/sae`): `{hookpoint}/cfg.json` + `{hookpoint}/sae.safetensors`.

The folder name is the hook point as an HF module path relative to the base model (`layers.10`,
`layers.29.mlp`, `embed_tokens`); a run-level `config.json` beside the folders may name the
`model`. The safetensors file holds `encoder.weight [d_sae, d_in]`, `encoder.bias [d_sae]`,
`W_dec [d_sae, d_out]` (already canonical: *not* transposed), `b_dec [d_out]` and, with
`skip_connection`, `W_skip [d_out, d_in]` applied as `x @ W_skipᵀ`; the dtype is whatever the file
holds (float32 or bfloat16, per file). `cfg.json` has three generations: old `{expansion_factor,
normalize_decoder, k, signed, d_in}`, middle (+ `num_latents`, `multi_topk`) and current
(+ `activation` topk|groupmax, `skip_connection`, `transcode`); `d_sae = num_latents or d_in *
expansion_factor`. Math: `pre = relu((x - b_dec) @ encoder.weightᵀ + encoder.bias)` (no `- b_dec`
when `transcode`), the top `k` of `pre` kept, `x̂ = f @ W_dec + b_dec (+ x @ W_skipᵀ)`; old
`signed: true` files skip the ReLU and rank by |pre| (our `abstopk`). `groupmax` has no canonical
equivalent and is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from sae_hub._io import write_json_atomic
from sae_hub.config import Provenance, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats._common import (
    get_field,
    layer_of,
    load_json,
    names_of,
    prefix,
    prepared,
    refuse,
    tensor,
    with_pre_bias,
)
from sae_hub.formats._safetensors import read_safetensors, write_safetensors

NAME = "sparsify"
CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
RUN_CONFIG = "config.json"


def detect(files: Sequence[str]) -> bool:
    """True when the folder holds `cfg.json` and `sae.safetensors`."""
    return {CONFIG_FILE, WEIGHTS_FILE} <= names_of(files)


def files_for(sae_id: str | None) -> list[str]:
    """The hook-point folder's two files, plus the run-level `config.json` beside it when present."""
    parent = (sae_id or "").strip("/").rpartition("/")[0]
    return [prefix(sae_id) + CONFIG_FILE, prefix(sae_id) + WEIGHTS_FILE, prefix(parent) + RUN_CONFIG]


def _run_model(folder: Path) -> str | None:
    """The `model` of a sparsify run-level `config.json` next to the hook-point folder, if any."""
    path = folder.parent / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        run = load_json(path)
    except FormatError:
        return None  # a foreign config.json next to the folder is not ours to judge
    model = run.get("model")
    return model if isinstance(model, str) and ("sae" in run or "hookpoints" in run) else None


def read(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read a sparsify hook-point folder (any cfg.json generation) into canonical form."""
    folder = Path(folder)
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    raw = load_json(cfg_path)
    d_in = get_field(raw, "d_in", int, cfg_path)
    k = get_field(raw, "k", int, cfg_path)
    activation = raw.get("activation", "topk")
    if activation != "topk":
        raise ConfigError(
            f"{cfg_path}: activation {activation!r} has no canonical equivalent; expected 'topk'",
            field="activation",
        )
    transcode = bool(raw.get("transcode", False))
    signed = bool(raw.get("signed", False))
    state = read_safetensors(weights_path)
    enc = tensor(state, "encoder.weight", weights_path, ndim=2)
    w_dec = tensor(state, "W_dec", weights_path, ndim=2)
    num_latents = raw.get("num_latents") or 0
    d_sae = num_latents or d_in * get_field(raw, "expansion_factor", int, cfg_path)
    if tuple(enc.shape) != (d_sae, d_in) or w_dec.shape[0] != d_sae:
        raise FormatError(
            f"encoder.weight {tuple(enc.shape)} / W_dec {tuple(w_dec.shape)} do not match d_in={d_in}, "
            f"d_sae={d_sae} from {CONFIG_FILE}",
            path=str(weights_path),
        )
    dtype = enc.dtype
    tensors = {
        "W_enc": enc.T,
        "b_enc": tensor(state, "encoder.bias", weights_path, ndim=1).to(dtype),
        "W_dec": w_dec.to(dtype),
        "b_dec": tensor(state, "b_dec", weights_path, ndim=1).to(dtype),
    }
    skip = bool(raw.get("skip_connection", False)) or "W_skip" in state
    if skip:
        tensors["W_skip"] = tensor(state, "W_skip", weights_path, ndim=2).to(dtype).T
    hook = folder.name
    extra: dict[str, Any] = {
        key: raw[key]
        for key in ("normalize_decoder", "multi_topk", "expansion_factor", "transcode")
        if key in raw
    }
    prov = Provenance(
        model=_run_model(folder), hook=hook, layer=layer_of(hook), source_format=NAME, extra=extra
    )
    cfg = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        d_out=int(w_dec.shape[1]),
        architecture="abstopk" if signed else "topk",
        k=k,
        relu_before_topk=not signed,
        apply_b_dec_to_input=not transcode,
        skip_connection=skip,
        dtype=dtype,
        provenance=prov,
    )
    return cfg, tensors


def write(cfg: SAEConfig, tensors: dict[str, Tensor], folder: Path) -> None:
    """Write a top-k SAE or transcoder as a current-generation sparsify folder."""
    topk = cfg.architecture in ("topk", "abstopk") or (
        cfg.architecture == "batchtopk" and cfg.batchtopk_mode == "topk"
    )
    if not topk:
        raise refuse(
            NAME, f"sparsify SAEs are top-k; {cfg.architecture} is not representable", "architecture"
        )
    if cfg.normalization != "none":
        raise refuse(NAME, f"sparsify has no input normalisation ({cfg.normalization})", "normalization")
    transcode = cfg.is_transcoder or (
        not cfg.apply_b_dec_to_input and bool(cfg.provenance.extra.get("transcode"))
    )
    cfg, tensors = prepared(cfg, tensors, fold_pre_bias=transcode)
    if not transcode:  # sparsify SAEs always subtract b_dec: shift the encoder bias to match
        cfg, tensors = with_pre_bias(cfg, tensors)
    out = {
        "encoder.weight": tensors["W_enc"].T,
        "encoder.bias": tensors["b_enc"],
        "W_dec": tensors["W_dec"],
        "b_dec": tensors["b_dec"],
    }
    if cfg.skip_connection:
        out["W_skip"] = tensors["W_skip"].T
    raw: dict[str, Any] = {
        "activation": "topk",
        "expansion_factor": max(cfg.d_sae // cfg.d_in, 1),
        "normalize_decoder": bool(cfg.provenance.extra.get("normalize_decoder", True)),
        "num_latents": cfg.d_sae,
        "k": cfg.k,
        "multi_topk": False,
        "skip_connection": cfg.skip_connection,
        "transcode": transcode,
        "d_in": cfg.d_in,
    }
    if cfg.architecture == "abstopk":
        raw["signed"] = True
    folder = Path(folder)
    write_safetensors(out, folder / WEIGHTS_FILE)
    write_json_atomic(folder / CONFIG_FILE, raw)
