"""`SAEConfig`: the small, validated description of one canonical SAE, and its on-disk dict form.

The config says which math `SAE` runs (architecture, k, input handling) and where the SAE came from
(provenance). Tensors live in the module, never here; `device` is never saved. `expected_shapes` and
`validate_tensors` state which canonical tensors a config implies, for loaders to check files against.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from sae_hub.errors import ConfigError, FormatError

Architecture = Literal["relu", "jumprelu", "topk", "batchtopk", "gated", "abstopk"]
Normalization = Literal["none", "layer_norm", "constant_norm_rescale"]
BatchTopKMode = Literal["threshold", "topk"]

ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
TOPK_ARCHITECTURES = frozenset({"topk", "abstopk"})
THRESHOLD_ARCHITECTURES = frozenset({"jumprelu", "batchtopk"})
SUPPORTED_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
CONFIG_SCHEMA_VERSION = 1


def dtype_from_str(name: str | torch.dtype) -> torch.dtype:
    """Parse a dtype given as `torch.float32`, `"float32"` or `"torch.float32"`."""
    if isinstance(name, torch.dtype):
        if name not in SUPPORTED_DTYPES.values():
            raise ConfigError(
                f"dtype {name} is not supported; expected one of {sorted(SUPPORTED_DTYPES)}",
                field="dtype",
            )
        return name
    key = str(name).removeprefix("torch.")
    if key not in SUPPORTED_DTYPES:
        raise ConfigError(
            f"dtype {name!r} is not supported; expected one of {sorted(SUPPORTED_DTYPES)}",
            field="dtype",
        )
    return SUPPORTED_DTYPES[key]


def dtype_to_str(dtype: torch.dtype) -> str:
    """Write a dtype as the plain string used on disk (`"float32"`)."""
    return str(dtype).removeprefix("torch.")


@dataclass(kw_only=True, frozen=True)
class Provenance:
    """Where an SAE comes from and where it reads: informative only, never changes the math."""

    model: str | None = None
    """Hugging Face model id the SAE was trained on (e.g. `google/gemma-2-2b`)."""
    hook: str | None = None
    """Input hook point, TransformerLens style (`blocks.12.hook_resid_post`) or HF module path."""
    hook_out: str | None = None
    """Output hook point for transcoders; None for plain SAEs."""
    hf_hook: str | None = None
    """Input hook point as a Hugging Face module path (`model.layers.12.output`), when known."""
    layer: int | None = None
    """Layer index of the hook point, when it has one."""
    release: str | None = None
    """Registry release name the SAE was loaded from."""
    sae_id: str | None = None
    """SAE id inside the release, or the folder inside the repo."""
    repo_id: str | None = None
    """Hub repository holding the files."""
    revision: str | None = None
    """Commit hash the files were resolved to."""
    source_format: str | None = None
    """Name of the format adapter that read the files (`native`, `saelens`, `gemma-scope`, ...)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (dataset, context size, training tokens, metrics)."""


@dataclass(kw_only=True, frozen=True)
class SAEConfig:
    """Architecture and input handling of one canonical SAE (`W_enc [d_in, d_sae]` orientation)."""

    d_in: int
    """Width of the input activations."""
    d_sae: int
    """Number of latents (dictionary size)."""
    d_out: int | None = None
    """Width of the output; differs from `d_in` only for transcoders. None means `d_in`."""
    architecture: Architecture = "relu"
    """Activation: relu, jumprelu (per-latent threshold, strict `>`), topk, batchtopk, gated, abstopk."""
    k: int | None = None
    """Active latents per token for topk / abstopk, and for batchtopk's per-row mode."""
    relu_before_topk: bool = False
    """TopK variant: apply ReLU before selecting the top k (sparsify) instead of after (SAELens, OpenAI)."""
    batchtopk_mode: BatchTopKMode = "threshold"
    """BatchTopK at inference: the global threshold (JumpReLU) or an explicit per-row top-k."""
    apply_b_dec_to_input: bool = False
    """Subtract `b_dec` from the (normalised) input before encoding."""
    normalization: Normalization = "none"
    """Per-token input normalisation, undone on the output."""
    input_scale: float = 1.0
    """Constant dataset-wise factor multiplying the input (foldable into the weights)."""
    output_scale: float = 1.0
    """Constant factor dividing the output back (equals `input_scale` for plain SAEs)."""
    skip_connection: bool = False
    """Whether the SAE has `W_skip [d_in, d_out]` (skip transcoders): output adds `x @ W_skip`."""
    dtype: torch.dtype = torch.float32
    """dtype of the parameters."""
    provenance: Provenance = field(default_factory=Provenance)
    """Model, hook point and source of the SAE."""

    def __post_init__(self) -> None:
        if self.d_out is None:
            object.__setattr__(self, "d_out", self.d_in)
        object.__setattr__(self, "dtype", dtype_from_str(self.dtype))
        if isinstance(self.provenance, dict):
            object.__setattr__(self, "provenance", Provenance(**self.provenance))
        self._validate()

    @property
    def out_dim(self) -> int:
        """`d_out` as an int (never None after construction)."""
        assert self.d_out is not None
        return self.d_out

    @property
    def is_transcoder(self) -> bool:
        """True when the SAE maps one activation to another (`d_out != d_in` or an output hook)."""
        return self.d_out != self.d_in or self.provenance.hook_out is not None or self.skip_connection

    def _validate(self) -> None:
        for name in ("d_in", "d_sae", "d_out"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive int, got {value!r}", field=name)
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"unknown architecture {self.architecture!r}; expected one of {list(ARCHITECTURES)}",
                field="architecture",
            )
        needs_k = self.architecture in TOPK_ARCHITECTURES or (
            self.architecture == "batchtopk" and self.batchtopk_mode == "topk"
        )
        if needs_k and self.k is None:
            raise ConfigError(
                f"architecture {self.architecture!r} needs k (active latents per token)", field="k"
            )
        valid_k = isinstance(self.k, int) and not isinstance(self.k, bool) and 0 < self.k <= self.d_sae
        if self.k is not None and not valid_k:
            raise ConfigError(f"k must be an int in 1..d_sae={self.d_sae}, got {self.k!r}", field="k")
        if self.batchtopk_mode not in get_args(BatchTopKMode):
            raise ConfigError(
                f"batchtopk_mode must be one of {list(get_args(BatchTopKMode))}, got {self.batchtopk_mode!r}",
                field="batchtopk_mode",
            )
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"unknown normalization {self.normalization!r}; expected one of {list(NORMALIZATIONS)}",
                field="normalization",
            )
        if self.normalization != "none" and self.d_out != self.d_in:
            raise ConfigError(
                f"normalization {self.normalization!r} needs d_out == d_in (got {self.d_out} != {self.d_in})",
                field="normalization",
            )
        if self.apply_b_dec_to_input and self.d_out != self.d_in:
            raise ConfigError(
                f"apply_b_dec_to_input needs d_out == d_in (got {self.d_out} != {self.d_in})",
                field="apply_b_dec_to_input",
            )
        for name in ("input_scale", "output_scale"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite positive number, got {value!r}", field=name)

    # ---- dict form -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready dict written to `config.json` (dtype as a string, no device)."""
        out: dict[str, Any] = {"format_version": CONFIG_SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "dtype":
                value = dtype_to_str(value)
            elif f.name == "provenance":
                value = {
                    p.name: getattr(value, p.name)
                    for p in dataclasses.fields(value)
                    if getattr(value, p.name) not in (None, {})
                }
            out[f.name] = value
        from sae_hub import __version__

        out["sae_hub_version"] = __version__
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Build a config from `to_dict()` output; unknown keys are refused, old versions migrated."""
        data = migrate_config_dict(dict(data))
        data.pop("format_version", None)
        data.pop("sae_hub_version", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config keys {unknown}; expected a subset of {sorted(known)}",
                field=unknown[0],
            )
        prov = data.get("provenance") or {}
        if not isinstance(prov, dict):
            raise ConfigError("provenance must be a mapping", field="provenance")
        prov_known = {f.name for f in dataclasses.fields(Provenance)}
        bad = sorted(set(prov) - prov_known)
        if bad:
            raise ConfigError(
                f"unknown provenance keys {bad}; expected a subset of {sorted(prov_known)}",
                field=f"provenance.{bad[0]}",
            )
        data["provenance"] = Provenance(**prov)
        _check_types(data)
        return cls(**data)

    def replace(self, **changes: Any) -> SAEConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_provenance(self, **changes: Any) -> SAEConfig:
        """Return a copy whose provenance has some fields changed."""
        return dataclasses.replace(self, provenance=dataclasses.replace(self.provenance, **changes))


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "d_in": (int,),
    "d_sae": (int,),
    "d_out": (int, type(None)),
    "architecture": (str,),
    "k": (int, type(None)),
    "relu_before_topk": (bool,),
    "batchtopk_mode": (str,),
    "apply_b_dec_to_input": (bool,),
    "normalization": (str,),
    "input_scale": (int, float),
    "output_scale": (int, float),
    "skip_connection": (bool,),
    "dtype": (str,),
}


def _check_types(data: dict[str, Any]) -> None:
    for name, types in _FIELD_TYPES.items():
        if name not in data:
            continue
        value = data[name]
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise ConfigError(
                f"config field {name} must be {expected}, got {type(value).__name__} {value!r}",
                field=name,
            )


def migrate_config_dict(data: dict[str, Any]) -> dict[str, Any]:
    """Upgrade a config dict written by an older sae_hub to the current schema."""
    version = data.get("format_version", CONFIG_SCHEMA_VERSION)
    if not isinstance(version, int) or version > CONFIG_SCHEMA_VERSION:
        raise ConfigError(
            f"config format_version {version!r} is newer than this sae_hub understands "
            f"({CONFIG_SCHEMA_VERSION}); upgrade sae_hub",
            field="format_version",
        )
    return data


# ---- the tensors a config implies ---------------------------------------------------------------


def expected_shapes(cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
    """Return the name and shape of every parameter an SAE with this config has."""
    shapes: dict[str, tuple[int, ...]] = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "W_dec": (cfg.d_sae, cfg.out_dim),
        "b_dec": (cfg.out_dim,),
    }
    if cfg.architecture == "gated":
        shapes.update(b_gate=(cfg.d_sae,), b_mag=(cfg.d_sae,), r_mag=(cfg.d_sae,))
    else:
        shapes["b_enc"] = (cfg.d_sae,)
    if cfg.architecture in ("jumprelu", "batchtopk"):
        shapes["threshold"] = (cfg.d_sae,)
    if cfg.skip_connection:
        shapes["W_skip"] = (cfg.d_in, cfg.out_dim)
    return shapes


def validate_tensors(
    cfg: SAEConfig, tensors: Mapping[str, Tensor], *, source: str = "", check_finite: bool = True
) -> None:
    """Check names, shapes, dtypes and (unless already verified) finiteness of `tensors`; raise FormatError."""
    expected = expected_shapes(cfg)
    where = f" in {source}" if source else ""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise FormatError(
            f"tensor names{where} do not match the {cfg.architecture} config: "
            f"missing {missing}, unexpected {extra}",
            path=source or None,
        )
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape:
            raise FormatError(
                f"tensor {name}{where} has shape {tuple(t.shape)} but the config "
                f"(d_in={cfg.d_in}, d_sae={cfg.d_sae}, d_out={cfg.d_out}) expects {shape}",
                path=source or None,
                key=name,
            )
        if not t.is_floating_point():
            raise FormatError(
                f"tensor {name}{where} has dtype {t.dtype}; expected a floating-point dtype",
                path=source or None,
                key=name,
            )
        if check_finite and t.device.type != "meta" and not _all_finite(t):
            raise FormatError(
                f"tensor {name}{where} contains NaN or Inf values", path=source or None, key=name
            )


def _all_finite(t: Tensor, *, chunk: int = 1 << 18) -> bool:
    """True when `t` has no NaN/Inf, without temporaries the size of the weights.

    A finite sum proves every element finite in one pass; only when it is not (a NaN, an Inf, or an
    overflow of large finite values) are the elements checked, in small chunks.
    """
    if t.numel() == 0 or bool(torch.isfinite(t.sum())):
        return True
    return all(bool(torch.isfinite(part).all()) for part in t.reshape(-1).split(chunk))
