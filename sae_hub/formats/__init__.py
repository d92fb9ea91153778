"""The format table: one adapter module per on-disk SAE format, plus detection and dispatch.

Every adapter exposes `NAME`, `detect(files)`, `files_for(sae_id)`, `read(folder) -> (SAEConfig,
tensors)` and, where the format can represent SAEs, `write(cfg, tensors, folder)`. Adapters never
touch the network: `sae_hub.hub` downloads, adapters only read and write folders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from torch import Tensor

from sae_hub.config import SAEConfig
from sae_hub.errors import ConfigError, UnknownFormatError
from sae_hub.formats import (
    dictionary_learning,
    gemma_scope,
    gemma_scope_2,
    goodfire,
    llama_scope,
    llama_scope_r1,
    native,
    openai,
    saelens,
    sparsify,
)

logger = logging.getLogger(__name__)

# Detection order matters: the most specific layouts first, native last among config.json users.
ADAPTERS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        llama_scope,
        llama_scope_r1,
        gemma_scope_2,
        gemma_scope,
        saelens,
        sparsify,
        dictionary_learning,
        goodfire,
        openai,
        native,
    )
}


def get_adapter(name: str) -> ModuleType:
    """Return the adapter module registered as `name`."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown format {name!r}; expected one of {sorted(ADAPTERS)}", field="format"
        ) from None


def detect(files: Sequence[str], *, path: str | None = None) -> ModuleType:
    """Return the adapter whose layout matches the file names of one SAE folder."""
    for adapter in ADAPTERS.values():
        if adapter.detect(files):
            logger.debug("detected format %s from %s", adapter.NAME, sorted(files))
            return adapter
    raise UnknownFormatError(list(files), path=path)


def read(folder: str | Path, *, format: str | None = None) -> tuple[SAEConfig, dict[str, Tensor], str]:
    """Read an SAE folder (format detected unless given); return (config, tensors, format name)."""
    folder = Path(folder)
    # file-based formats (OpenAI `{layer}.pt`, Goodfire `.pth`) may be given the weights file itself
    listed = folder if folder.is_dir() else folder.parent if folder.is_file() else None
    files = [p.name for p in listed.iterdir()] if listed is not None else []
    adapter = get_adapter(format) if format else detect(files, path=str(folder))
    cfg, tensors = adapter.read(folder)
    # transposed views (nn.Linear layouts) become contiguous: one memory layout, one matmul kernel,
    # the same float results whichever format the SAE came from
    tensors = {name: t.contiguous() for name, t in tensors.items()}
    if cfg.provenance.source_format is None:
        cfg = cfg.with_provenance(source_format=adapter.NAME)
    return cfg, tensors, adapter.NAME


def write(format: str, cfg: SAEConfig, tensors: dict[str, Tensor], folder: str | Path) -> None:
    """Write an SAE folder in `format`; formats that cannot represent the SAE raise ConfigError."""
    adapter = get_adapter(format)
    writer = getattr(adapter, "write", None)
    if writer is None:
        raise ConfigError(f"format {format!r} is read-only", field="format")
    writer(cfg, tensors, Path(folder))
