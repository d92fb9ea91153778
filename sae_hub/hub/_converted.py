"""The conversion cache: each foreign-format SAE is converted once and kept as a native folder.

Copies live under `SAE_HUB_CACHE/converted/<repo_id>/<commit>/<path>/` (or `<host>/<url path>/` for URL
downloads), so a new revision converts again while the same commit never does. A copy is written into a
temporary sibling folder and renamed into place, so readers see a complete folder or none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from torch import Tensor

from sae_hub import constants
from sae_hub.config import SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats import native

logger = logging.getLogger(__name__)


def converted_dir(*, repo_id: str | None, commit: str | None, path: str, url: str | None) -> Path:
    """Where the native copy of one SAE (repo folder at a commit, or URL) is kept."""
    root = constants.SAE_HUB_CACHE / "converted"
    if url is not None:
        parts = urlsplit(url)
        return root / parts.netloc.replace(":", "_") / parts.path.strip("/")
    assert repo_id is not None
    assert commit is not None
    return root / repo_id / commit / (path or "__root__")


def read_converted(folder: Path) -> tuple[SAEConfig, dict[str, Tensor]] | None:
    """Read a native copy (memory-mapped) if one exists and is intact, else None."""
    if not (folder / native.CONFIG_FILE).is_file() or not (folder / native.WEIGHTS_FILE).is_file():
        return None
    try:
        cfg, tensors = native.read(folder)
    except (FormatError, ConfigError) as exc:  # a damaged cache entry is converted again, not fatal
        logger.warning("discarding unreadable native copy %s (%s); converting again", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    logger.debug("conversion cache hit: %s", folder)
    return cfg, tensors


def write_converted(folder: Path, cfg: SAEConfig, tensors: dict[str, Tensor]) -> None:
    """Write the native copy atomically (temporary sibling folder, then rename); a lost race is fine."""
    if constants.SAE_HUB_DISABLE_CONVERSION_CACHE:
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    try:
        native.write(cfg, tensors, tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process won the race and its copy is complete
            if not (folder / native.CONFIG_FILE).is_file():
                raise
        logger.info("cached native copy at %s", folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
