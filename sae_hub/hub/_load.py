"""`load_remote`: registry release or Hub repo -> (config, tensors), converting foreign formats once."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sae_hub import formats
from sae_hub.config import SAEConfig
from sae_hub.formats import native
from sae_hub.hub._converted import converted_dir, read_converted, write_converted
from sae_hub.hub._fetch import Fetched, fetch_repo, fetch_url, is_offline, resolve_commit
from sae_hub.hub._target import Target, target_for
from sae_hub.loading import Loaded

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Located:
    """A target pinned to a commit (None for URLs), with where its native copy would live."""

    target: Target
    commit: str | None
    converted: Path


def locate(
    name: str,
    sae_id: str | None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Located:
    """Resolve the name and pin the revision to a commit (one request online, none offline)."""
    target = target_for(name, sae_id)
    commit = None
    if target.url is None:
        offline = is_offline(local_files_only)
        commit = resolve_commit(target, revision, cache_dir=cache_dir, token=token, offline=offline)
    folder = converted_dir(repo_id=target.repo_id, commit=commit, path=target.path, url=target.url)
    return Located(target, commit, folder)


def fetch(
    located: Located,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Fetched:
    """Download (or find offline) only the files the located SAE needs."""
    offline = is_offline(local_files_only)
    if located.target.url is not None:
        return fetch_url(located.target, force_download=force_download, offline=offline)
    assert located.commit is not None
    return fetch_repo(
        located.target,
        located.commit,
        cache_dir=cache_dir,
        force_download=force_download,
        token=token,
        offline=offline,
    )


def _finish(cfg: SAEConfig, located: Located) -> SAEConfig:
    """Apply the registry's config overrides and write where the SAE came from into its provenance."""
    target = located.target
    if target.config_overrides:
        cfg = cfg.replace(**target.config_overrides)
    prov = dict(target.provenance)
    if located.commit is not None:
        prov["revision"] = located.commit
    if target.url is not None:
        prov["extra"] = {**cfg.provenance.extra, "url": target.source_url or target.url}
    return cfg.with_provenance(**prov)


def load_remote(
    name: str,
    sae_id: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Loaded:
    """Return (config, tensors, source, verified) for a registry release or a Hub repo id (sae_id = folder).

    Only the SAE's own files are downloaded, into the standard HF cache. A foreign format is converted
    on first load and its native copy reused (memory-mapped) on every later load of the same commit.

    Raises:
        ReleaseNotFoundError, SaeNotFoundError: unknown names (with the closest ones).
        SaeFilesMissingError: the repo lacks files the SAE's format needs.
        LocalEntryNotFoundError: offline and not cached (the message says what to download).
        RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError: from the Hub, unwrapped.
    """
    located = locate(
        name, sae_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    source = located.target.describe(located.commit)
    cached = None if force_download else read_converted(located.converted)
    if cached is not None:
        cfg, tensors = cached
        return Loaded(_finish(cfg, located), tensors, source, verified=True)
    fetched = fetch(
        located,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
    )
    cfg, tensors, fmt = formats.read(fetched.folder, format=fetched.adapter.NAME)
    if fmt == native.NAME:
        return Loaded(_finish(cfg, located), tensors, source, verified=False)
    from sae_hub.sae import validate_tensors

    validate_tensors(cfg, tensors, source=source)  # a bad file must never reach the conversion cache
    logger.info("converting %s from %s to native (once per commit)", source, fmt)
    write_converted(located.converted, cfg, tensors)
    reread = read_converted(located.converted)
    if reread is not None:  # serve the memory-mapped copy so the converted arrays can be freed
        cfg, tensors = reread
    return Loaded(_finish(cfg, located), tensors, source, verified=True)
