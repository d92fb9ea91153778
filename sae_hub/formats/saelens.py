"""SAELens native format: `cfg.json` + `sae_weights.safetensors` (+ `sparsity.safetensors`) per folder.

Tensors are canonical: `W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_out]`, `b_dec`, plus
`threshold [d_sae]` (jumprelu family), `b_gate`/`b_mag`/`r_mag` (gated, no `b_enc`) and `W_skip
[d_out, d_in]` (skip transcoders, applied as `x @ W_skipᵀ`, so canonical `W_skip` is its transpose).
Old files may carry `scaling_factor`/`finetuning_scaling_factor [d_sae]`, which multiplies the
features before decoding; it is folded into `W_dec`. `cfg.json` comes in three generations: ≤ v3
(`hook_point`, `activation_fn`, boolean `normalize_activations`), v4-v5 (flat, `architecture`,
`hook_name`, `activation_fn_kwargs`) and v6 (`architecture`, `k`, `rescale_acts_by_decoder_norm`,
LLM fields under `metadata`). The math is `x → norm_in → x - b_dec·apply_b_dec_to_input → @ W_enc +
b_enc → activation → @ W_dec + b_dec → norm_out`; top-k with `rescale_acts_by_decoder_norm` ranks
`pre·‖W_dec[i]‖`, which is folded into `W_enc`/`b_enc`/`W_dec` exactly. `normalize_activations:
expected_average_only_in` needs a dataset factor that is not in the files: the registry supplies it
(as `input_scale`/`output_scale`); the reader records the need in `provenance.extra`. The optional
`sparsity.safetensors` (log10 feature density, a training statistic) is not read or downloaded.
Tensors keep the dtype stored in the file (the `dtype` field is informative).
Writing produces a v6 `cfg.json` that `sae-lens` 6.x loads with `SAE.load_from_disk`; BatchTopK is
exported the SAELens way, as JumpReLU with its constant threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from torch import Tensor

from sae_hub._io import write_json_atomic
from sae_hub.config import Architecture, Normalization, Provenance, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats._common import get_field, layer_of, load_json, names_of, prefix, prepared, refuse
from sae_hub.formats._safetensors import read_safetensors, write_safetensors

logger = logging.getLogger(__name__)

NAME = "saelens"
CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
# The cfg.json generation we write: sae-lens treats >= 6.0.0 configs as already upgraded.
WRITTEN_SAELENS_VERSION = "6.0.0"

# SAELens architecture -> (canonical architecture, is transcoder, has skip connection)
_ARCHS: dict[str, tuple[Architecture, bool, bool]] = {
    "standard": ("relu", False, False),
    "topk": ("topk", False, False),
    "abstopk": ("abstopk", False, False),
    "jumprelu": ("jumprelu", False, False),
    "gated": ("gated", False, False),
    "transcoder": ("relu", True, False),
    "skip_transcoder": ("relu", True, True),
    "jumprelu_transcoder": ("jumprelu", True, False),
    "jumprelu_skip_transcoder": ("jumprelu", True, True),
}
_NORMALIZATIONS = {
    "none": "none",
    "layer_norm": "layer_norm",
    "constant_norm_rescale": "constant_norm_rescale",
}
_EXTRA_KEYS = (
    "dataset_path",
    "context_size",
    "prepend_bos",
    "neuronpedia_id",
    "model_from_pretrained_kwargs",
    "model_class_name",
    "seqpos_slice",
    "exclude_special_tokens",
    "sae_lens_version",
    "sae_lens_training_version",
)
_TENSOR_NAMES = {"W_enc", "b_enc", "W_dec", "b_dec", "threshold", "b_gate", "b_mag", "r_mag", "W_skip"}
_SCALING = ("scaling_factor", "finetuning_scaling_factor")


def detect(files: Sequence[str]) -> bool:
    """True when the folder holds `cfg.json` and `sae_weights.safetensors`."""
    return {CONFIG_FILE, WEIGHTS_FILE} <= names_of(files)


def files_for(sae_id: str | None) -> list[str]:
    """Patterns of the files one SAE needs (not `sparsity.safetensors`), relative to the repo root."""
    return [prefix(sae_id) + CONFIG_FILE, prefix(sae_id) + WEIGHTS_FILE]


# ---- reading ---------------------------------------------------------------------------------


def _architecture(raw: dict[str, Any], path: Path) -> tuple[str, int | None]:
    """Return (SAELens architecture, k) for any cfg.json generation."""
    arch = raw.get("architecture", "standard")
    act = raw.get("activation_fn", raw.get("activation_fn_str", "relu"))
    kwargs = raw.get("activation_fn_kwargs") or {}
    k = raw.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)
    if arch == "standard" and act == "topk":
        arch = "topk"
    elif arch == "standard" and act not in ("relu", None):
        raise ConfigError(
            f"{path}: activation_fn {act!r} is not supported; expected relu or topk", field="activation_fn"
        )
    if arch not in _ARCHS:
        raise ConfigError(
            f"{path}: architecture {arch!r} is not supported; expected one of {sorted(_ARCHS)}",
            field="architecture",
        )
    if arch in ("topk", "abstopk") and not (isinstance(k, int) and not isinstance(k, bool)):
        raise ConfigError(f"{path}: architecture {arch!r} needs an int k, got {k!r}", field="k")
    return arch, k


def _normalization(raw: dict[str, Any], path: Path) -> tuple[Normalization, bool]:
    """Return (canonical normalization, needs a dataset-wise scale from the registry)."""
    value = raw.get("normalize_activations")
    if isinstance(value, bool):  # <= v3: True meant the expected-average scaling
        value = "expected_average_only_in" if value else "none"
    if value in (None, "none"):
        return "none", False
    if value == "expected_average_only_in":
        return "none", True
    if value in _NORMALIZATIONS:
        return _NORMALIZATIONS[value], False
    raise ConfigError(
        f"{path}: normalize_activations {value!r} is not supported (covariance whitening needs statistics "
        "the files do not hold); expected none, expected_average_only_in, layer_norm or constant_norm_rescale",
        field="normalize_activations",
    )


def _provenance(raw: dict[str, Any], meta: dict[str, Any], needs_scale: bool) -> Provenance:
    def llm(*keys: str) -> Any:
        for key in keys:
            for source in (meta, raw):
                if source.get(key) is not None:
                    return source[key]
        return None

    hook = llm("hook_name", "hook_point")
    extra = {key: llm(key) for key in _EXTRA_KEYS if llm(key) is not None}
    head = llm("hook_head_index", "hook_point_head_index")
    if head is not None:
        extra["hook_head_index"] = head
    if raw.get("reshape_activations", "none") != "none":
        extra["reshape_activations"] = raw["reshape_activations"]
    if needs_scale:
        extra["normalize_activations"] = "expected_average_only_in"
    layer = llm("hook_layer", "hook_point_layer")
    saved = meta.get("sae_hub_provenance") if isinstance(meta.get("sae_hub_provenance"), dict) else {}
    fields = {
        "model": llm("model_name"),
        "hook": hook,
        "hook_out": llm("hook_name_out"),
        "hf_hook": llm("hf_hook_name"),
        "layer": layer if isinstance(layer, int) else layer_of(hook),
        "extra": {**saved.get("extra", {}), **extra},
    }
    merged = {
        **{k: v for k, v in saved.items() if k != "extra"},
        **{k: v for k, v in fields.items() if v is not None},
    }
    merged["source_format"] = NAME
    try:
        return Provenance(**merged)
    except TypeError as exc:
        raise ConfigError(f"metadata.sae_hub_provenance has unknown keys ({exc})", field="metadata") from exc


def read(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read a SAELens folder (any cfg.json generation) into canonical form, folding what SAELens applies."""
    folder = Path(folder)
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    raw = load_json(cfg_path)
    meta = raw.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{cfg_path}: field 'metadata' must be an object", field="metadata")
    arch, k = _architecture(raw, cfg_path)
    canonical, transcoder, skip = _ARCHS[arch]
    normalization, needs_scale = _normalization(raw, cfg_path)
    if needs_scale:
        logger.warning(
            "%s uses normalize_activations=expected_average_only_in; the dataset scale is not in the files and "
            "must come from the registry (input_scale/output_scale)",
            cfg_path,
        )
    state = read_safetensors(weights_path)
    unknown = sorted(set(state) - _TENSOR_NAMES - set(_SCALING))
    if unknown or "W_enc" not in state:
        raise FormatError(
            f"unexpected tensors {unknown}; expected a subset of {sorted(_TENSOR_NAMES)}",
            path=str(weights_path),
        )
    dtype = state["W_enc"].dtype
    tensors = {n: t if t.dtype == dtype else t.to(dtype) for n, t in state.items() if n in _TENSOR_NAMES}
    d_in = get_field(raw, "d_in", int, cfg_path)
    # <= v3 configs may give only expansion_factor; the weights then say d_sae
    d_sae = (
        get_field(raw, "d_sae", int, cfg_path)
        if raw.get("d_sae") is not None
        else int(tensors["W_enc"].shape[-1])
    )
    if tuple(tensors["W_enc"].shape) != (d_in, d_sae):
        raise FormatError(
            f"W_enc has shape {tuple(tensors['W_enc'].shape)} but {cfg_path.name} says d_in={d_in}, d_sae={d_sae}",
            path=str(weights_path),
            key="W_enc",
        )
    if skip:
        if "W_skip" not in tensors:
            raise FormatError(f"{arch} needs tensor 'W_skip'", path=str(weights_path), key="W_skip")
        tensors["W_skip"] = tensors["W_skip"].T
    _fold_scaling_factor(state, tensors, weights_path)
    d_out = raw.get("d_out", d_in) if transcoder else d_in
    cfg = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        d_out=d_out,
        architecture=canonical,
        k=k if canonical in ("topk", "abstopk") else None,
        apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)) and not transcoder,
        normalization=normalization,
        skip_connection=skip,
        dtype=dtype,
        provenance=_provenance(raw, meta, needs_scale),
    )
    if canonical in ("topk", "abstopk") and raw.get("rescale_acts_by_decoder_norm", False):
        _fold_decoder_norm_into_topk(tensors)
    return cfg, tensors


def _fold_scaling_factor(state: dict[str, Tensor], tensors: dict[str, Tensor], path: Path) -> None:
    """Fold a per-latent `(finetuning_)scaling_factor` (features * s before decoding) into `W_dec`."""
    for name in _SCALING:
        if name not in state:
            continue
        s = state[name].to(tensors["W_dec"].dtype)
        if s.shape != (tensors["W_dec"].shape[0],):
            raise FormatError(
                f"{name} has shape {tuple(s.shape)}; expected [d_sae]", path=str(path), key=name
            )
        if not bool((s == 1).all()):
            logger.info("folding %s into W_dec (%s)", name, path)
            tensors["W_dec"] = tensors["W_dec"] * s[:, None]


def _fold_decoder_norm_into_topk(tensors: dict[str, Tensor]) -> None:
    """Make `pre·‖W_dec[i]‖` ranking and `f/‖W_dec[i]‖` decoding plain top-k with unit decoder rows."""
    norms = tensors["W_dec"].norm(dim=-1)
    tensors["W_enc"] = tensors["W_enc"] * norms
    tensors["b_enc"] = tensors["b_enc"] * norms
    tensors["W_dec"] = tensors["W_dec"] / norms[:, None]


# ---- writing ---------------------------------------------------------------------------------


def _saelens_architecture(cfg: SAEConfig) -> str:
    arch = cfg.architecture
    thresholded = arch == "jumprelu" or (arch == "batchtopk" and cfg.batchtopk_mode == "threshold")
    if cfg.is_transcoder:
        if cfg.normalization != "none":
            raise refuse(
                NAME, "SAELens transcoders do not undo input normalisation on the output", "normalization"
            )
        if arch == "relu":
            return "skip_transcoder" if cfg.skip_connection else "transcoder"
        if thresholded:
            return "jumprelu_skip_transcoder" if cfg.skip_connection else "jumprelu_transcoder"
        raise refuse(NAME, f"SAELens has no {arch} transcoder", "architecture")
    if arch == "relu":
        return "standard"
    if thresholded:
        return "jumprelu"  # SAELens's own BatchTopK export convention
    if arch == "batchtopk" or arch == "topk":
        return "topk"
    if arch in ("abstopk", "gated"):
        return arch
    raise refuse(NAME, f"architecture {arch!r} has no SAELens equivalent", "architecture")


def write(cfg: SAEConfig, tensors: dict[str, Tensor], folder: Path) -> None:
    """Write a v6 SAELens folder (constant scales folded; transcoders without pre-bias)."""
    arch = _saelens_architecture(cfg)
    cfg, tensors = prepared(cfg, tensors, fold_pre_bias=cfg.is_transcoder)
    names = {"W_enc", "W_dec", "b_dec"} | ({"b_gate", "b_mag", "r_mag"} if arch == "gated" else {"b_enc"})
    if "jumprelu" in arch:
        names.add("threshold")
    out = {n: tensors[n] for n in names}
    if cfg.skip_connection:
        out["W_skip"] = tensors["W_skip"].T
    prov = cfg.provenance
    metadata: dict[str, Any] = {
        key: prov.extra[key] for key in _EXTRA_KEYS if key in prov.extra and not key.startswith("sae_lens")
    }
    metadata.update(
        sae_lens_version=WRITTEN_SAELENS_VERSION,
        model_name=prov.model,
        hook_name=prov.hook,
        hook_head_index=prov.extra.get("hook_head_index"),
        hf_hook_name=prov.hf_hook,
        sae_hub_provenance={k: v for k, v in _provenance_dict(prov).items() if k != "source_format"},
    )
    if prov.hook_out is not None:
        metadata["hook_name_out"] = prov.hook_out
    raw: dict[str, Any] = {
        "architecture": arch,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": str(cfg.dtype).removeprefix("torch."),
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": cfg.normalization,
        "reshape_activations": prov.extra.get("reshape_activations", "none"),
        "metadata": metadata,
    }
    if arch in ("topk", "abstopk"):
        raw.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    if cfg.is_transcoder:
        raw["d_out"] = cfg.d_out
    folder = Path(folder)
    write_safetensors(out, folder / WEIGHTS_FILE, metadata={"format": "pt"})
    write_json_atomic(folder / CONFIG_FILE, raw)


def _provenance_dict(prov: Provenance) -> dict[str, Any]:
    return {f.name: getattr(prov, f.name) for f in fields(prov) if getattr(prov, f.name) not in (None, {})}
