"""Bring one SAE's files into the standard HF cache (only the files its format needs), or find them there.

Online, the revision is pinned to a commit sha first (one `model_info` call, skipped when the revision
already is a sha), the SAE's folder is listed once, and each needed file goes through `hf_hub_download`.
Every request is bounded by huggingface_hub's timeouts; when the Hub cannot be reached, a cached commit and
a complete cached snapshot stand in for the revision and the listing (as `hf_hub_download` does for files).
Offline (`HF_HUB_OFFLINE=1` or `local_files_only=True`), the commit comes from the cache's `refs/` and the
files from its `snapshots/<sha>/`, with no request at all. OpenAI's original `.pt` files are plain HTTPS
downloads, fetched with huggingface_hub's HTTP client into `SAE_HUB_CACHE/downloads/`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import quote, urlsplit

import httpx2
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.file_download import http_get, repo_folder_name
from huggingface_hub.utils import build_hf_headers, paginate, validate_repo_id

from sae_hub import constants, formats
from sae_hub._io import atomic_path, write_text_atomic
from sae_hub.errors import SaeFilesMissingError, UnknownFormatError
from sae_hub.hub._target import Target

logger = logging.getLogger(__name__)

_SHA = re.compile(r"^[0-9a-f]{40}$")
# transport failures huggingface_hub itself treats as "the Hub is unreachable" (see hf_hub_download)
_UNREACHABLE = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
_FILE_SUFFIXES = (".pt", ".pth")


@dataclass(frozen=True)
class Fetched:
    """An SAE's files on local disk: the path the adapter reads and the adapter to read it with."""

    folder: Path
    """The SAE folder, or the weights file of file-based layouts (OpenAI, Goodfire)."""
    adapter: ModuleType
    files: list[str]
    """Paths relative to the repo root (or file names for URLs) that were fetched or found."""


def is_offline(local_files_only: bool) -> bool:
    """True when no request may leave the machine."""
    return local_files_only or hf_constants.is_offline_mode()


def _hub_cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else Path(hf_constants.HF_HUB_CACHE)


def _not_cached(target: Target, revision: str | None, what: str) -> LocalEntryNotFoundError:
    files = target.url or f"the files under `{target.path or '.'}` of the repo `{target.repo_id}`"
    return LocalEntryNotFoundError(
        f"{target.describe(revision)} is not in the local cache ({what}) and outgoing traffic is disabled "
        f"(HF_HUB_OFFLINE=1 or local_files_only=True). While online, run `{target.how_to_download()}` "
        f"to fetch {files}."
    )


def resolve_commit(
    target: Target,
    revision: str | None,
    *,
    cache_dir: str | os.PathLike[str] | None,
    token: str | bool | None,
    offline: bool,
) -> str:
    """Pin `revision` (default `main`) of the target's repo to a commit sha."""
    assert target.repo_id is not None
    rev = revision or hf_constants.DEFAULT_REVISION
    if _SHA.match(rev):
        return rev
    if offline:
        ref = (
            _hub_cache(cache_dir) / repo_folder_name(repo_id=target.repo_id, repo_type="model") / "refs" / rev
        )
        if not ref.is_file():
            raise _not_cached(target, rev, f"no cached ref `{rev}`")
        return ref.read_text().strip()
    storage = _hub_cache(cache_dir) / repo_folder_name(repo_id=target.repo_id, repo_type="model")
    ref = storage / "refs" / rev
    try:
        # model_info has no timeout of its own: bound it like hf_hub_download's metadata request
        info = HfApi().model_info(
            target.repo_id, revision=rev, token=token, timeout=hf_constants.HF_HUB_ETAG_TIMEOUT
        )
    except (*_UNREACHABLE, HfHubHTTPError) as exc:
        if isinstance(exc, HfHubHTTPError) and not _is_server_error(exc):
            raise  # 401/403/404 name the repo or revision; a cached commit must not mask them
        # as hf_hub_download does for files: the Hub is unreachable, so fall back to the cached commit
        if ref.is_file():
            logger.warning(
                "could not reach the Hub (%s); using the cached commit of %s", exc, target.describe(rev)
            )
            return ref.read_text().strip()
        if isinstance(exc, HfHubHTTPError):
            raise
        raise LocalEntryNotFoundError(
            f"Could not reach the Hub to resolve {target.describe(rev)} ({type(exc).__name__}: {exc}), and no "
            f"commit for it is cached. Check the connection (HF_ENDPOINT={hf_constants.ENDPOINT}) and retry."
        ) from exc
    sha = info.sha
    assert sha is not None, "the Hub's revision info has no sha"
    logger.debug("resolved %s@%s to %s", target.repo_id, rev, sha)
    # Record branch -> sha in the cache's refs/, as hf_hub_download does, so offline loads find it.
    if not ref.is_file() or ref.read_text().strip() != sha:
        write_text_atomic(ref, sha)
    return sha


def _is_server_error(exc: HfHubHTTPError) -> bool:
    return exc.response is not None and exc.response.status_code >= 500


Lister = Callable[[str, bool], list[str]]
"""(folder, recursive) -> paths from the repo root of the files in that folder; [] when it is missing."""


def remote_lister(repo_id: str, commit: str, token: str | bool | None) -> Lister:
    """List folders of a Hub repo at `commit` (one tree request per folder and page).

    This is the request `HfApi.list_repo_tree` makes, through the same paginated, retried helper, plus the
    timeout that `list_repo_tree` does not take (its client has none): `HF_HUB_ETAG_TIMEOUT`, read at call
    time like `hf_hub_download`'s metadata request, bounds each try.
    """
    validate_repo_id(repo_id)
    tree = f"{hf_constants.ENDPOINT}/api/models/{repo_id}/tree/{quote(commit, safe='')}"

    def lister(folder: str, recursive: bool) -> list[str]:
        url = f"{tree}/{quote(folder, safe='')}" if folder else tree
        params = {"recursive": recursive, "expand": False}
        headers = build_hf_headers(token=token)
        try:
            entries = list(paginate(url, params, headers, timeout=hf_constants.HF_HUB_ETAG_TIMEOUT))
        except EntryNotFoundError:
            return []
        return [e["path"] for e in entries if e["type"] == "file"]

    return lister


def local_lister(snapshot: Path) -> Lister:
    """List folders of a cached snapshot (no request)."""

    def lister(folder: str, recursive: bool) -> list[str]:
        root = snapshot / folder
        if not root.is_dir():
            return []
        found = root.rglob("*") if recursive else root.iterdir()
        return sorted(p.relative_to(snapshot).as_posix() for p in found if p.is_file())

    return lister


def _listing_root(target: Target) -> str:
    """The folder to list: the SAE folder, or the parent of a file-based SAE (`.pt`, `.pth`)."""
    if target.path.endswith(_FILE_SUFFIXES):
        return target.path.rpartition("/")[0]
    return target.path


def _under(path: str, folder: str) -> bool:
    return not folder or path.startswith(f"{folder}/")


def _required(pattern: str, target: Target) -> bool:
    """The SAE's own files are required; files beside it (run-level configs) are read when present."""
    if target.path.endswith(_FILE_SUFFIXES):
        return pattern == target.path
    return _under(pattern, target.path)


def select_files(target: Target, commit: str, lister: Lister) -> tuple[ModuleType, list[str]]:
    """Pick the adapter (registry's, or detected from the folder) and the files the SAE needs.

    Raises:
        SaeFilesMissingError: the folder is missing, or lacks a file the format requires.
        UnknownFormatError: no format matches the folder's files.
    """
    root = _listing_root(target)
    listing = lister(root, True)
    if not listing:
        raise SaeFilesMissingError(
            f"Repo `{target.repo_id}` at revision {commit} has no folder `{root or target.path}`.",
            repo_id=target.repo_id or "",
            paths=[target.path],
        )
    if target.format is not None:
        adapter = formats.get_adapter(target.format)
    else:
        top = sorted({f[len(root) + 1 if root else 0 :].split("/")[0] for f in listing})
        adapter = formats.detect(top, path=f"{target.repo_id}:{target.path or '.'}")
    patterns = adapter.files_for(target.path or None)
    for folder in sorted({p.rpartition("/")[0] for p in patterns if not _under(p, root)}):
        listing += lister(folder, False)
    chosen = sorted({f for f in listing if any(fnmatch.fnmatchcase(f, p) for p in patterns)})
    missing = [
        p for p in patterns if _required(p, target) and not any(fnmatch.fnmatchcase(f, p) for f in chosen)
    ]
    if missing:
        raise SaeFilesMissingError(
            f"Repo `{target.repo_id}` at revision {commit} lacks {missing}, needed by the {adapter.NAME} "
            f"format for `{target.path or '.'}` (found: {sorted(listing)[:20]}).",
            repo_id=target.repo_id or "",
            paths=missing,
        )
    return adapter, chosen


def fetch_repo(
    target: Target,
    commit: str,
    *,
    cache_dir: str | os.PathLike[str] | None,
    force_download: bool,
    token: str | bool | None,
    offline: bool,
) -> Fetched:
    """Download (or find in the cache, offline) only the files the target's SAE needs."""
    repo_id = target.repo_id or ""
    storage = _hub_cache(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshot = storage / "snapshots" / commit
    local = snapshot / target.path if target.path else snapshot
    if offline:
        try:
            adapter, files = select_files(target, commit, local_lister(snapshot))
        except (SaeFilesMissingError, UnknownFormatError) as exc:
            raise _not_cached(target, commit, f"cached files incomplete: {exc}") from exc
        return Fetched(local, adapter, files)
    try:
        adapter, files = select_files(target, commit, remote_lister(repo_id, commit, token))
    except _UNREACHABLE as exc:
        adapter, files = _cached_selection(target, commit, snapshot, exc)
    for name in files:
        hf_hub_download(
            repo_id, name, revision=commit, cache_dir=cache_dir, force_download=force_download, token=token
        )
    logger.info("fetched %d file(s) of %s", len(files), target.describe(commit))
    return Fetched(local, adapter, files)


def _cached_selection(
    target: Target, commit: str, snapshot: Path, exc: Exception
) -> tuple[ModuleType, list[str]]:
    """The Hub did not answer the folder listing: use the cached snapshot of `commit` if it is complete."""
    where = target.describe(commit)
    try:
        selection = select_files(target, commit, local_lister(snapshot))
    except (SaeFilesMissingError, UnknownFormatError):
        raise LocalEntryNotFoundError(
            f"Could not reach the Hub to list the files of {where} ({type(exc).__name__}: {exc}), and they are "
            f"not all in the local cache. Check the connection (HF_ENDPOINT={hf_constants.ENDPOINT}) and retry."
        ) from exc
    logger.warning("could not reach the Hub to list %s (%s); using the cached files", where, exc)
    return selection


def url_folder(url: str) -> Path:
    """Cache folder holding one downloaded URL (one folder per file, so an adapter sees only it)."""
    parts = urlsplit(url)
    stem = parts.path.strip("/").rsplit(".", 1)[0]
    return constants.SAE_HUB_CACHE / "downloads" / parts.netloc.replace(":", "_") / stem


def fetch_url(target: Target, *, force_download: bool, offline: bool) -> Fetched:
    """Download a plain HTTPS file (OpenAI's originals) atomically into the cache, once."""
    url = target.url or ""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    folder = url_folder(url)
    path = folder / name
    if force_download or not path.is_file():
        if offline:
            raise _not_cached(target, None, f"no cached download at {path}")
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                http_get(url, fh, displayed_filename=name)
        except HfHubHTTPError as exc:
            if exc.response is None or exc.response.status_code != 404:
                raise
            raise SaeFilesMissingError(
                f"{url} does not exist (HTTP 404); the registry entry for `{target.release}` / "
                f"`{target.sae_id}` names it.",
                repo_id=url,
                paths=[url],
            ) from exc
        logger.info("downloaded %s", url)
    adapter = formats.get_adapter(target.format) if target.format else formats.detect([name], path=url)
    return Fetched(folder, adapter, [name])
