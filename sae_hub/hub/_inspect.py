"""Describe a remote SAE (config file and tensor shapes) without downloading its weights."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx2

from sae_hub.errors import HubTimeoutError
from sae_hub.hub._fetch import remote_lister, resolve_commit, select_files
from sae_hub.hub._remote import TensorInfo, open_remote, remote_tensor_infos
from sae_hub.hub._target import Target, target_for

_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_MAX_CONFIG_BYTES = 1024 * 1024


@dataclass
class RemoteFileInfo:
    """One needed file: its size, and its parsed config or tensor table when it has one."""

    path: str
    size: int
    bytes_read: int = 0
    tensors: list[TensorInfo] = field(default_factory=list)
    config: Any = None


@dataclass
class RemoteSAEInfo:
    """What `sae-hub info` shows for one SAE."""

    target: Target
    commit: str | None
    format: str
    files: list[RemoteFileInfo]

    @property
    def bytes_read(self) -> int:
        """Bytes fetched from the server to build this description."""
        return sum(f.bytes_read for f in self.files)


def inspect_remote(
    name: str, sae_id: str | None, *, revision: str | None = None, token: str | bool | None = None
) -> RemoteSAEInfo:
    """Read an SAE's config files whole and its weight files' headers with byte ranges (no weights)."""
    target = target_for(name, sae_id)
    if target.url is not None:
        return RemoteSAEInfo(target, None, target.format or "unknown", [])
    commit = resolve_commit(target, revision, cache_dir=None, token=token, offline=False)
    repo_id = target.repo_id or ""
    try:
        adapter, needed = select_files(target, commit, remote_lister(repo_id, commit, token))
    except httpx2.TimeoutException as exc:  # every retry of the listing went unanswered
        raise HubTimeoutError(
            f"Timed out listing the files of {repo_id}@{commit} on the Hub ({type(exc).__name__}); check the "
            "connection and retry"
        ) from exc
    files = []
    for path in needed:
        if path.endswith((".safetensors", ".npz")):
            tensors, read, size = remote_tensor_infos(repo_id, path, revision=commit, token=token)
            files.append(RemoteFileInfo(path, size, read, tensors=tensors))
            continue
        f = open_remote(repo_id, path, revision=commit, token=token)
        info = RemoteFileInfo(path, f.size)
        if path.endswith(_CONFIG_SUFFIXES) and f.size <= _MAX_CONFIG_BYTES:
            text = f.read(f.size).decode("utf-8", errors="replace")
            info.config = _parse_config(path, text)
            info.bytes_read = f.bytes_fetched
        files.append(info)
    return RemoteSAEInfo(target, commit, adapter.NAME, files)


def _parse_config(path: str, text: str) -> Any:
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
