"""Turn `(release_or_repo, sae_id)` into a canonical (config, tensors) pair.

A local folder is read directly; anything else goes through the registry and the Hub client.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from torch import Tensor

from sae_hub import formats
from sae_hub.config import SAEConfig


class Loaded(NamedTuple):
    """What a load produced: config, tensors, where they came from, and whether they are verified."""

    cfg: SAEConfig
    tensors: dict[str, Tensor]
    source: str
    verified: bool
    """True for sae_hub's own native copies, whose tensors were checked (finite) when written."""


def load_tensors(
    release_or_repo: str | os.PathLike[str],
    sae_id: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Loaded:
    """Load a local folder or weights file (`sae_id` = subfolder), a registry release or a Hub repo (`sae_id` = folder)."""
    local = Path(release_or_repo)
    if sae_id is not None and local.is_dir():
        local = local / sae_id
    if local.is_dir() or local.is_file():  # a folder, or a single weights file (`5.pt`, `.pth`)
        cfg, tensors, _ = formats.read(local)
        return Loaded(cfg, tensors, str(local), verified=False)
    from sae_hub.hub import load_remote

    return load_remote(
        str(release_or_repo),
        sae_id,
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
    )
