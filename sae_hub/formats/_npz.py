"""Reading numpy `.npz` archives as tensors, memory-mapped when the members are stored uncompressed.

An `.npz` is a zip of `.npy` files; each `.npy` is the magic `\\x93NUMPY`, a version, a header dict
(`descr`, `fortran_order`, `shape`) and the raw array bytes. `np.savez` stores members uncompressed,
so their bytes can be viewed in place: this module locates each member's data through the zip
local header and the `.npy` header and returns zero-copy views of a private (copy-on-write) memory
map, as `_safetensors` does. Compressed, big-endian or Fortran-ordered members fall back to
`np.load`. Object arrays (pickles) are refused in both paths (`allow_pickle=False`).
"""

from __future__ import annotations

import io
import math
import mmap
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sae_hub.errors import FormatError

_LOCAL_HEADER = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _Fallback(Exception):
    """A member that cannot be viewed in place: read the archive with np.load instead."""


def read_npz(path: Path) -> dict[str, Tensor]:
    """Return every array of an `.npz` as a tensor (member name without `.npy`), refusing pickles."""
    try:
        with open(path, "rb") as fh:
            with zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
            if infos and all(i.compress_type == zipfile.ZIP_STORED for i in infos):
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
                try:
                    return {_name(i.filename): _view(mm, i, path) for i in infos}
                except _Fallback:
                    pass
    except FileNotFoundError:
        raise FormatError("expected file is missing", path=str(path)) from None
    except FormatError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise FormatError(f"not a readable .npz archive ({exc})", path=str(path)) from exc
    return _load_copy(path)


def _name(member: str) -> str:
    return member.removesuffix(".npy")


def _view(mm: mmap.mmap, info: zipfile.ZipInfo, path: Path) -> Tensor:
    """A zero-copy tensor over one stored `.npy` member."""
    start = info.header_offset
    if mm[start : start + 4] != _LOCAL_HEADER:
        raise FormatError(
            f"member {info.filename} has no zip local header", path=str(path), key=info.filename
        )
    name_len, extra_len = struct.unpack("<HH", mm[start + 26 : start + 30])
    begin = start + 30 + name_len + extra_len
    end = begin + info.file_size
    if end > len(mm):
        raise FormatError(
            f"member {info.filename} runs past the end of the file (truncated?)", path=str(path)
        )
    head = io.BytesIO(mm[begin : min(end, begin + 65536 + 10)])
    if head.read(6) != _NPY_MAGIC:
        raise FormatError(f"member {info.filename} is not a .npy array", path=str(path), key=info.filename)
    version = (head.read(1)[0], head.read(1)[0])
    reader = _HEADER_READERS.get(version)
    if reader is None:
        raise _Fallback
    try:
        shape, fortran_order, dtype = reader(head)
    except ValueError as exc:
        raise FormatError(f"member {info.filename} has a bad .npy header ({exc})", path=str(path)) from exc
    if dtype.hasobject:
        raise FormatError(
            f"refused: member {info.filename} holds pickled objects (allow_pickle=False)", path=str(path)
        )
    if fortran_order or not dtype.isnative:
        raise _Fallback
    offset = begin + head.tell()
    count = math.prod(shape)
    if offset + count * dtype.itemsize > end:
        raise FormatError(f"member {info.filename} is shorter than its header says", path=str(path))
    torch_dtype = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    if count == 0:
        return torch.empty(shape, dtype=torch_dtype)
    return torch.frombuffer(mm, dtype=torch_dtype, count=count, offset=offset).reshape(shape)


def _load_copy(path: Path) -> dict[str, Tensor]:
    """Read the archive with np.load (compressed or unusual members): one copy in memory."""
    try:
        # our own handle, so a damaged archive that np.load rejects is still closed
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise FormatError(f"not a readable .npz archive ({exc})", path=str(path)) from exc
        raise FormatError(f"refused: the archive holds pickled objects ({exc})", path=str(path)) from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FormatError(f"not a readable .npz archive ({exc})", path=str(path)) from exc
    raw = sorted(name for name, value in arrays.items() if not isinstance(value, np.ndarray))
    if raw:  # np.load returns members without the .npy magic as bytes
        raise FormatError(f"members {raw} of the archive are not .npy arrays", path=str(path))
    return {
        name: torch.from_numpy(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")))
        for name, arr in arrays.items()
    }
