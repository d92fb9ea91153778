"""Small helpers shared by the format adapters: checked JSON and pickle reading, refusals, folds.

Everything here turns a bad file into a typed error that names the file and the field, so each
adapter can stay a readable mapping between its layout and the canonical tensors.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hub._io import atomic_path
from sae_hub.config import SAEConfig
from sae_hub.errors import ConfigError, FormatError

logger = logging.getLogger(__name__)

_LAYER_RE = re.compile(r"(?:^|[._])(?:blocks|layers|layer|h)[._](\d+)(?:[._]|$)")


def names_of(files: Iterable[str]) -> set[str]:
    """Return the base names and every path component of `files` (detection works on either)."""
    out: set[str] = set()
    for f in files:
        parts = Path(f).parts
        out.update(parts)
    return out


def prefix(sae_id: str | None) -> str:
    """Return `sae_id/` (no leading or doubled slash), or "" for the repo root."""
    return f"{sae_id.strip('/')}/" if sae_id and sae_id.strip("/") else ""


def load_json(path: Path) -> dict[str, Any]:
    """Read a JSON object; a missing, invalid or non-object file raises FormatError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError("expected file is missing", path=str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"not valid JSON ({exc})", path=str(path)) from exc
    if not isinstance(data, dict):
        raise FormatError(f"expected a JSON object, got {type(data).__name__}", path=str(path))
    return data


def get_field(data: Mapping[str, Any], key: str, types: type | tuple[type, ...], path: Path) -> Any:
    """Return `data[key]` checked against `types`; raise ConfigError naming the file and field."""
    if key not in data:
        raise ConfigError(f"{path}: required field {key!r} is missing", field=key)
    value = data[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise ConfigError(
            f"{path}: field {key!r} must be {names}, got {type(value).__name__} {value!r}", field=key
        )
    return value


def load_torch_state(path: Path) -> dict[str, Any]:
    """Load a torch pickle with `weights_only=True`; anything that is not plain data is refused."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FormatError("expected file is missing", path=str(path)) from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise FormatError(
            f"refused to load: not a plain tensor state dict loadable with weights_only=True ({exc})",
            path=str(path),
        ) from exc
    if not isinstance(obj, dict):
        raise FormatError(f"expected a state dict, got {type(obj).__name__}", path=str(path))
    return obj


def tensor(state: Mapping[str, Any], key: str, path: Path, ndim: int | None = None) -> Tensor:
    """Return `state[key]` as a tensor, checking presence and rank; FormatError names file and key."""
    if key not in state:
        raise FormatError(f"tensor {key!r} is missing; found {sorted(state)}", path=str(path), key=key)
    value = state[key]
    if not isinstance(value, Tensor):
        raise FormatError(f"{key!r} is a {type(value).__name__}, not a tensor", path=str(path), key=key)
    if ndim is not None and value.ndim != ndim:
        raise FormatError(
            f"tensor {key!r} has shape {tuple(value.shape)}; expected {ndim} dimensions",
            path=str(path),
            key=key,
        )
    return value


def from_linear(enc_w: Tensor, enc_b: Tensor, dec_w: Tensor, dec_b: Tensor) -> dict[str, Tensor]:
    """Canonical tensors from `nn.Linear` weights (encoder `[d_sae, d_in]`, decoder `[d_out, d_sae]`).

    Both weights are transposed; the biases and the decoder take the encoder's dtype.
    """
    dtype = enc_w.dtype
    return {"W_enc": enc_w.T, "b_enc": enc_b.to(dtype), "W_dec": dec_w.T.to(dtype), "b_dec": dec_b.to(dtype)}


def single_file(path: Path, suffixes: Sequence[str], pattern: str | None = None) -> Path:
    """Return `path` if it is a file, else the one file in the folder with a matching name."""
    if path.is_file():
        return path
    rx = re.compile(pattern) if pattern else None
    found = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix in suffixes and (rx is None or rx.fullmatch(p.name))
    )
    if len(found) != 1:
        raise FormatError(
            f"expected exactly one {'/'.join(suffixes)} weights file, found {[p.name for p in found]}",
            path=str(path),
        )
    return found[0]


def layer_of(*names: str | None) -> int | None:
    """Parse a layer index from hook or path names like `blocks.3.hook_resid_post`, `layers.10`."""
    for name in names:
        if name:
            m = _LAYER_RE.search(name)
            if m:
                return int(m.group(1))
    return None


def refuse(fmt: str, reason: str, field: str) -> ConfigError:
    """Build the ConfigError a writer raises when its format cannot represent the SAE."""
    return ConfigError(f"format {fmt!r} cannot represent this SAE: {reason}", field=field)


def prepared(
    cfg: SAEConfig,
    tensors: Mapping[str, Tensor],
    *,
    fold_scales: bool = True,
    fold_pre_bias: bool = False,
) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Return (cfg, tensors) with constant scales and optionally the pre-bias folded into the weights."""
    scaled = cfg.input_scale != 1.0 or cfg.output_scale != 1.0
    if not (fold_scales and scaled) and not (fold_pre_bias and cfg.apply_b_dec_to_input):
        return cfg, dict(tensors)
    from sae_hub.sae import SAE  # the folds live with the SAE math; imported lazily (formats stay light)

    sae = SAE.from_tensors(cfg, {n: t.clone() for n, t in tensors.items()})
    if fold_scales and scaled:
        logger.warning(
            "folding input_scale=%s, output_scale=%s into the weights", cfg.input_scale, cfg.output_scale
        )
        sae.fold_normalization()
    if fold_pre_bias:
        sae.fold_pre_bias()
    return sae.cfg, sae.state_tensors()


def with_pre_bias(cfg: SAEConfig, tensors: Mapping[str, Tensor]) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Return an equal SAE that subtracts `b_dec` from its input (encoder biases shifted to match)."""
    out = dict(tensors)
    if cfg.apply_b_dec_to_input:
        return cfg, out
    shift = out["b_dec"].double() @ out["W_enc"].double()
    if cfg.architecture == "gated":
        out["b_gate"] = (out["b_gate"].double() + shift).to(cfg.dtype)
        out["b_mag"] = (out["b_mag"].double() + shift * out["r_mag"].double().exp()).to(cfg.dtype)
    else:
        out["b_enc"] = (out["b_enc"].double() + shift).to(cfg.dtype)
    return cfg.replace(apply_b_dec_to_input=True), out


def uniform_value(t: Tensor) -> float | None:
    """Return the common value of a tensor whose entries are all equal, else None."""
    if t.numel() == 0:
        return None
    first = t.reshape(-1)[0]
    return float(first) if bool((t == first).all()) else None


def check_dims(path: Path, **dims: Any) -> None:
    """Raise ConfigError naming `path` when a dimension field is not a positive int."""
    for key, value in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{path}: field {key!r} must be a positive int, got {value!r}", field=key)


def save_torch_state(state: Mapping[str, Any], path: Path) -> None:
    """`torch.save` a plain state dict atomically; each tensor gets its own compact storage."""

    def own(value: Any) -> Any:  # torch.save writes whole storages, so a view would drag its base along
        if isinstance(value, Tensor):
            return value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        return value

    with atomic_path(path) as tmp:
        torch.save({k: own(v) for k, v in state.items()}, tmp)
