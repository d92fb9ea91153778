"""Tensor names, dtypes and shapes of remote weight files, read with byte-range requests only.

A safetensors file needs two small ranged GETs (the 8-byte length, then the JSON header). An `.npz` is
a zip archive: `zipfile` reads its end record and central directory from the file's tail, and each
member's `.npy` header from the member's first bytes, through a seekable file object that fetches
aligned blocks on demand. Either way only headers cross the network, never the weights.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from dataclasses import dataclass

import httpx2
import numpy as np
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from sae_hub.errors import FormatError, HubTimeoutError

_BLOCK = 32 * 1024
_MAX_HEADER = 100 * 1024 * 1024
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's name, dtype (as the file spells it) and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def _timed_out(where: str, what: str, timeout: float | None, exc: httpx2.TimeoutException) -> HubTimeoutError:
    """The error for a request that got no answer in time, naming the file and what was being read."""
    return HubTimeoutError(
        f"Timed out after {timeout} s reading {what} of {where} from the Hub ({type(exc).__name__}). "
        f"Check the connection (HF_ENDPOINT={hf_constants.ENDPOINT}) and retry."
    )


def _timeout_behind(exc: BaseException | None) -> HubTimeoutError | None:
    """The `_timed_out` error that `exc` is, or replaced: zipfile reports any OSError as `BadZipFile`."""
    while exc is not None and not isinstance(exc, HubTimeoutError):
        exc = exc.__cause__ or exc.__context__
    return exc


class RemoteFile(io.RawIOBase):
    """A read-only, seekable view of a remote file that fetches `_BLOCK`-aligned ranges on demand."""

    def __init__(self, url: str, size: int, headers: dict[str, str], *, where: str) -> None:
        super().__init__()
        self.url, self.size, self.headers = url, size, headers
        self.where = where  # `repo@revision/filename`, for errors
        self.pos = 0
        self.blocks: dict[int, bytes] = {}
        self.bytes_fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _block(self, index: int) -> bytes:
        if index not in self.blocks:
            begin = index * _BLOCK
            end = min(begin + _BLOCK, self.size) - 1
            timeout = hf_constants.HF_HUB_DOWNLOAD_TIMEOUT  # read at call time, as hf_hub_download's GET does
            headers = {**self.headers, "Range": f"bytes={begin}-{end}"}
            try:
                response = get_session().get(self.url, headers=headers, timeout=timeout)
            except httpx2.TimeoutException as exc:
                raise _timed_out(self.where, f"bytes {begin}-{end}", timeout, exc) from exc
            hf_raise_for_status(response)
            data = response.content
            if response.status_code != 206 and len(data) == self.size:  # server ignored the range
                data = data[begin : end + 1]
            self.blocks[index] = data
            self.bytes_fetched += len(data)
        return self.blocks[index]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self.pos)
        done = 0
        while done < want:
            index, offset = divmod(self.pos, _BLOCK)
            chunk = self._block(index)[offset : offset + want - done]
            if not chunk:
                break
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
            self.pos += len(chunk)
        return done


def open_remote(repo_id: str, filename: str, *, revision: str, token: str | bool | None = None) -> RemoteFile:
    """Open a Hub file for ranged reading (one HEAD for its size, then GETs per block read)."""
    url = hf_hub_url(repo_id, filename, revision=revision)
    where = f"{repo_id}@{revision}/{filename}"
    timeout = hf_constants.HF_HUB_ETAG_TIMEOUT  # the metadata request's setting, read at call time
    try:
        meta = get_hf_file_metadata(url, token=token, timeout=timeout)
    except httpx2.TimeoutException as exc:
        raise _timed_out(where, "the size", timeout, exc) from exc
    if meta.size is None:
        raise FormatError("the Hub did not report the file's size", path=f"{repo_id}/{filename}")
    return RemoteFile(url, meta.size, build_hf_headers(token=token), where=where)


def safetensors_header(f: RemoteFile, *, where: str) -> list[TensorInfo]:
    """Read the tensor table of a safetensors file (8 bytes, then the JSON header)."""
    head = f.read(8)
    if len(head) < 8:
        raise FormatError("file is shorter than the 8-byte safetensors header length", path=where)
    (n,) = struct.unpack("<Q", head)
    if n > min(f.size - 8, _MAX_HEADER):
        raise FormatError(f"safetensors header claims {n} bytes in a {f.size}-byte file", path=where)
    try:
        header = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"safetensors header is not valid JSON ({exc})", path=where) from exc
    header.pop("__metadata__", None)
    return [TensorInfo(k, v["dtype"], tuple(v["shape"])) for k, v in sorted(header.items())]


def npz_headers(f: RemoteFile, *, where: str) -> list[TensorInfo]:
    """Read each `.npy` member's dtype and shape from an `.npz` archive's central directory and headers."""
    try:
        with zipfile.ZipFile(f) as archive:
            out = []
            for member in archive.infolist():
                with archive.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version not in _NPY_HEADER_READERS:
                        raise ValueError(f"unsupported .npy version {version} in {member.filename}")
                    shape, _, dtype = _NPY_HEADER_READERS[version](fh)
                name = member.filename.removesuffix(".npy")
                out.append(TensorInfo(name, str(dtype), tuple(shape)))
            return sorted(out, key=lambda t: t.name)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        if (timeout := _timeout_behind(exc)) is not None:
            raise timeout from timeout.__cause__  # the Hub did not answer: says nothing about the archive
        raise FormatError(f"not a readable .npz archive ({exc})", path=where) from exc


def remote_tensor_infos(
    repo_id: str, filename: str, *, revision: str, token: str | bool | None = None
) -> tuple[list[TensorInfo], int, int]:
    """Return (tensor infos, bytes fetched, file size) of a remote `.safetensors` or `.npz` file."""
    f = open_remote(repo_id, filename, revision=revision, token=token)
    infos = (
        npz_headers(f, where=f.where) if filename.endswith(".npz") else safetensors_header(f, where=f.where)
    )
    return infos, f.bytes_fetched, f.size
