"""sae_hub's native format: `config.json` + `model.safetensors` in one folder.

`config.json` is `SAEConfig.to_dict()`: the architecture fields, `dtype` as a string, `provenance`,
`format_version` and `sae_hub_version`, keys sorted; unknown keys are refused on read.
`model.safetensors` holds the canonical tensors under their canonical names (`W_enc [d_in, d_sae]`,
`b_enc`, `W_dec [d_sae, d_out]`, `b_dec`, and `threshold`, `b_gate`, `b_mag`, `r_mag`, `W_skip`
where the architecture has them) in the SAE's dtype, with `{"format": "pt"}` as metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from sae_hub._io import write_json_atomic
from sae_hub.config import SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats._safetensors import read_safetensors, write_safetensors

NAME = "native"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def detect(files: Sequence[str]) -> bool:
    """True when the folder's file names are the native pair."""
    names = {Path(f).name for f in files}
    return {CONFIG_FILE, WEIGHTS_FILE} <= names


def files_for(sae_id: str | None) -> list[str]:
    """Patterns of the files one SAE needs, relative to the repo root."""
    prefix = f"{sae_id.strip('/')}/" if sae_id else ""
    return [prefix + CONFIG_FILE, prefix + WEIGHTS_FILE]


def read_config(folder: Path) -> SAEConfig:
    """Read and validate `config.json` only (no weights)."""
    path = Path(folder) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"config is not valid JSON ({exc})", path=str(path)) from exc
    if not isinstance(data, dict):
        raise FormatError("config must be a JSON object", path=str(path))
    try:
        return SAEConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{exc} [{path}]", field=exc.field) from exc
    except TypeError as exc:
        raise ConfigError(f"bad config ({exc}) [{path}]") from exc


def read(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]]:
    """Read a native folder into (config, canonical tensors); tensors are memory-mapped."""
    folder = Path(folder)
    cfg = read_config(folder)
    tensors = read_safetensors(folder / WEIGHTS_FILE)
    return cfg, tensors


def write(cfg: SAEConfig, tensors: dict[str, Tensor], folder: Path) -> None:
    """Write (config, tensors) as a native folder; each file is replaced atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, folder / WEIGHTS_FILE, metadata={"format": "pt"})
    write_json_atomic(folder / CONFIG_FILE, cfg.to_dict())
