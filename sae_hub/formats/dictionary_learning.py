"""saprmarks `dictionary_learning`: `ae.pt` + `config.json` per trainer folder (`.../trainer_{i}/`).

`ae.pt` is a `torch.save`d state dict (during training a backup nests it as `{"ae": state_dict,
"step", "optimizer", "config", "norm_factor"}`; both are read). `config.json` is `{"trainer":
{dict_class, activation_dim, dict_size, k, layer, lm_name, submodule_name, ...}, "buffer": {io,
d_submodule, ctx_len, ...}}`. Tensors and math per `dict_class` (`Linear` weights are transposed):
`AutoEncoder` (`bias`, `encoder.weight/bias`, `decoder.weight`; `relu(enc(x - bias))`, decode +
`bias`) -> relu with pre-bias; `AutoEncoderNew` (`encoder.*`, `decoder.weight/bias`; no pre-bias)
-> relu; `GatedAutoEncoder` (`decoder_bias`, `encoder.weight`, `gate_bias`, `mag_bias`, `r_mag`,
`decoder.weight`; gate `xW + gate_bias > 0`, magnitude `relu(exp(r_mag)·xW + mag_bias)` with
`xW = (x - decoder_bias) @ Wᵀ`) -> gated; `JumpReluAutoEncoder` (`W_enc`, `b_enc`, `W_dec`, `b_dec`,
`threshold`; no pre-bias) -> jumprelu; `AutoEncoderTopK` (`encoder.*`, `decoder.weight`, `b_dec`,
int `k`, scalar `threshold`; `relu(enc(x - b_dec))` then top-k) -> topk; `BatchTopKSAE` (same keys;
`f·1[f > threshold]` with the scalar threshold) and `MatryoshkaBatchTopKSAE` (`W_enc`, `b_enc`,
`W_dec`, `b_dec`, `k`, `threshold`, `group_sizes`) -> batchtopk in threshold mode with the threshold
broadcast to every latent. Training normalisation is already folded into the saved weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hub._io import write_json_atomic
from sae_hub.config import Architecture, Provenance, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats._common import (
    get_field,
    load_json,
    load_torch_state,
    names_of,
    prefix,
    prepared,
    refuse,
    save_torch_state,
    tensor,
    uniform_value,
    with_pre_bias,
)

logger = logging.getLogger(__name__)

NAME = "dictionary-learning"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "ae.pt"
_SITES = {
    "resid_post": "blocks.{L}.hook_resid_post",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "attn_out": "blocks.{L}.hook_attn_out",
}


def detect(files: Sequence[str]) -> bool:
    """True when the folder holds `ae.pt` and `config.json`."""
    return {CONFIG_FILE, WEIGHTS_FILE} <= names_of(files)


def files_for(sae_id: str | None) -> list[str]:
    """Patterns of the files one SAE needs, relative to the repo root."""
    return [prefix(sae_id) + WEIGHTS_FILE, prefix(sae_id) + CONFIG_FILE]


# ---- reading: one small mapping per dict_class ----------------------------------------------

Getter = Callable[[str, int | None], Tensor]


def _linear_sae(get: Getter, bias_key: str) -> dict[str, Tensor]:
    return {
        "W_enc": get("encoder.weight", 2).T,
        "b_enc": get("encoder.bias", 1),
        "W_dec": get("decoder.weight", 2).T,
        "b_dec": get(bias_key, 1),
    }


def _canonical_sae(get: Getter) -> dict[str, Tensor]:
    return {
        name: get(name, 2 if name.startswith("W_") else 1) for name in ("W_enc", "b_enc", "W_dec", "b_dec")
    }


def _gated(get: Getter) -> dict[str, Tensor]:
    return {
        "W_enc": get("encoder.weight", 2).T,
        "W_dec": get("decoder.weight", 2).T,
        "b_dec": get("decoder_bias", 1),
        "b_gate": get("gate_bias", 1),
        "b_mag": get("mag_bias", 1),
        "r_mag": get("r_mag", 1),
    }


# dict_class -> (canonical architecture, pre-bias, tensor mapping)
_CLASSES: dict[str, tuple[Architecture, bool, Callable[[Getter], dict[str, Tensor]]]] = {
    "AutoEncoder": ("relu", True, lambda g: _linear_sae(g, "bias")),
    "AutoEncoderNew": ("relu", False, lambda g: _linear_sae(g, "decoder.bias")),
    "GatedAutoEncoder": ("gated", True, _gated),
    "JumpReluAutoEncoder": (
        "jumprelu",
        False,
        lambda g: {**_canonical_sae(g), "threshold": g("threshold", 1)},
    ),
    "AutoEncoderTopK": ("topk", True, lambda g: _linear_sae(g, "b_dec")),
    "BatchTopKSAE": ("batchtopk", True, lambda g: _linear_sae(g, "b_dec")),
    "MatryoshkaBatchTopKSAE": ("batchtopk", True, _canonical_sae),
}


def _state_dict(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (state dict, backup info): a training backup nests the state dict under `ae`."""
    state = load_torch_state(path)
    if isinstance(state.get("ae"), dict):
        info = {k: v for k, v in state.items() if k in ("step", "norm_factor") and isinstance(v, int | float)}
        logger.info(
            "%s is a training backup (step %s); reading its nested `ae` state dict", path, info.get("step")
        )
        return state["ae"], info
    return state, {}


def read(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read a dictionary_learning trainer folder (any dict_class, final or backup ae.pt) into canonical form."""
    folder = Path(folder)
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    raw = load_json(cfg_path)
    trainer = get_field(raw, "trainer", dict, cfg_path)
    buffer = raw.get("buffer") if isinstance(raw.get("buffer"), dict) else {}
    dict_class = get_field(trainer, "dict_class", str, cfg_path)
    if dict_class not in _CLASSES:
        raise ConfigError(
            f"{cfg_path}: trainer.dict_class {dict_class!r} is not supported; expected one of {sorted(_CLASSES)}",
            field="trainer.dict_class",
        )
    d_in = get_field(trainer, "activation_dim", int, cfg_path)
    d_sae = get_field(trainer, "dict_size", int, cfg_path)
    arch, pre_bias, mapping = _CLASSES[dict_class]
    state, backup = _state_dict(weights_path)

    def get(key: str, ndim: int | None) -> Tensor:
        return tensor(state, key, weights_path, ndim=ndim)

    tensors = mapping(get)
    dtype = tensors["W_enc"].dtype
    tensors = {n: t.to(dtype) for n, t in tensors.items()}
    if tuple(tensors["W_enc"].shape) != (d_in, d_sae):
        raise FormatError(
            f"encoder has shape {tuple(tensors['W_enc'].shape)} (as [d_in, d_sae]) but config.json says "
            f"activation_dim={d_in}, dict_size={d_sae}",
            path=str(weights_path),
        )
    k = None
    extra: dict[str, Any] = {"dict_class": dict_class, **backup}
    if arch in ("topk", "batchtopk"):
        k_value = state.get("k", trainer.get("k"))
        k = int(k_value.item()) if isinstance(k_value, Tensor) else k_value
        if not isinstance(k, int):
            raise FormatError(
                f"{dict_class} needs an integer k; found {k_value!r}", path=str(weights_path), key="k"
            )
        if arch == "batchtopk":
            threshold = get("threshold", None).to(dtype)
            tensors["threshold"] = threshold.expand(d_sae).clone() if threshold.ndim == 0 else threshold
            if float(threshold.min()) < 0:
                logger.warning(
                    "%s: the BatchTopK threshold was never set; it acts as plain ReLU", weights_path
                )
        elif isinstance(state.get("threshold"), Tensor):  # tracked by the TopK trainer, unused by encode
            extra["threshold"] = float(state["threshold"].reshape(-1)[0])
    if "group_sizes" in state:
        extra["group_sizes"] = [int(v) for v in state["group_sizes"].reshape(-1).tolist()]
    layer = trainer.get("layer") if isinstance(trainer.get("layer"), int) else None
    submodule = trainer.get("submodule_name")
    site = next((s for s in _SITES if isinstance(submodule, str) and s in submodule), None)
    extra.update(
        {
            k2: v
            for k2, v in (
                ("submodule_name", submodule),
                ("io", buffer.get("io")),
                ("ctx_len", buffer.get("ctx_len")),
                ("trainer_class", trainer.get("trainer_class")),
            )
            if v is not None
        }
    )
    prov = Provenance(
        model=trainer.get("lm_name") if isinstance(trainer.get("lm_name"), str) else None,
        hook=_SITES[site].format(L=layer) if site and layer is not None else None,
        layer=layer,
        source_format=NAME,
        extra=extra,
    )
    cfg = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        architecture=arch,
        k=k,
        relu_before_topk=arch == "topk",
        apply_b_dec_to_input=pre_bias,
        dtype=dtype,
        provenance=prov,
    )
    return cfg, tensors


# ---- writing ---------------------------------------------------------------------------------


def _choose_class(cfg: SAEConfig, tensors: dict[str, Tensor]) -> str:
    arch = cfg.architecture
    if arch == "relu":
        return "AutoEncoder" if cfg.apply_b_dec_to_input else "AutoEncoderNew"
    if arch == "gated":
        return "GatedAutoEncoder"
    if arch == "topk" or (arch == "batchtopk" and cfg.batchtopk_mode == "topk"):
        return "AutoEncoderTopK"
    if arch == "batchtopk" and cfg.k is not None and uniform_value(tensors["threshold"]) is not None:
        return "BatchTopKSAE"
    if arch in ("jumprelu", "batchtopk"):
        return "JumpReluAutoEncoder"
    raise refuse(NAME, f"no dictionary_learning class implements {arch}", "architecture")


def write(cfg: SAEConfig, tensors: dict[str, Tensor], folder: Path) -> None:
    """Write `ae.pt` + `config.json` with the dict_class that reproduces the SAE's math."""
    if cfg.normalization != "none":
        raise refuse(
            NAME, f"dictionary_learning applies no {cfg.normalization} input normalisation", "normalization"
        )
    if cfg.is_transcoder:
        raise refuse(
            NAME, "dictionary_learning dictionaries reconstruct their input (no transcoders)", "d_out"
        )
    cfg, tensors = prepared(cfg, tensors)  # folding scales may fold the pre-bias too: choose after
    dict_class = _choose_class(cfg, tensors)
    if dict_class == "JumpReluAutoEncoder":
        cfg, tensors = prepared(cfg, tensors, fold_pre_bias=True)
    if dict_class in ("GatedAutoEncoder", "AutoEncoderTopK", "BatchTopKSAE"):
        cfg, tensors = with_pre_bias(cfg, tensors)
    t = tensors
    if dict_class in ("AutoEncoder", "AutoEncoderNew"):
        state: dict[str, Any] = {
            "encoder.weight": t["W_enc"].T,
            "encoder.bias": t["b_enc"],
            "decoder.weight": t["W_dec"].T,
        }
        state["bias" if dict_class == "AutoEncoder" else "decoder.bias"] = t["b_dec"]
    elif dict_class == "GatedAutoEncoder":
        state = {
            "decoder_bias": t["b_dec"],
            "encoder.weight": t["W_enc"].T,
            "r_mag": t["r_mag"],
            "gate_bias": t["b_gate"],
            "mag_bias": t["b_mag"],
            "decoder.weight": t["W_dec"].T,
        }
    elif dict_class == "JumpReluAutoEncoder":
        state = {n: t[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
    else:
        threshold = uniform_value(t["threshold"]) if dict_class == "BatchTopKSAE" else -1.0
        state = {
            "encoder.weight": t["W_enc"].T,
            "encoder.bias": t["b_enc"],
            "decoder.weight": t["W_dec"].T,
            "b_dec": t["b_dec"],
            "k": torch.tensor(cfg.k, dtype=torch.int32),
            "threshold": torch.tensor(threshold, dtype=torch.float32),
        }
    prov = cfg.provenance
    trainer: dict[str, Any] = {
        "dict_class": dict_class,
        "activation_dim": cfg.d_in,
        "dict_size": cfg.d_sae,
        "layer": prov.layer,
        "lm_name": prov.model,
        "submodule_name": prov.extra.get("submodule_name"),
    }
    if cfg.k is not None:
        trainer["k"] = cfg.k
    buffer = {
        "d_submodule": cfg.d_in,
        "io": prov.extra.get("io", "out"),
        "ctx_len": prov.extra.get("ctx_len"),
    }
    folder = Path(folder)
    save_torch_state(state, folder / WEIGHTS_FILE)
    write_json_atomic(folder / CONFIG_FILE, {"trainer": trainer, "buffer": buffer})
