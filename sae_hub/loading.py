"""Turn `(release_or_repo, sae_id)` into a canonical (config, tensors) pair.

A local folder is read directly; anything else goes through the registry and the Hub client.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from sae_hub import formats
from sae_hub.config import SAEConfig


def load_tensors(
    release_or_repo: str | os.PathLike[str],
    sae_id: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> tuple[SAEConfig, dict[str, Tensor], str]:
    """Return (config, tensors, source description) for a local folder, a release or a Hub repo."""
    local = Path(release_or_repo)
    if sae_id is not None and local.is_dir():
        local = local / sae_id
    if local.is_dir():
        cfg, tensors, _ = formats.read(local)
        return cfg, tensors, str(local)
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
