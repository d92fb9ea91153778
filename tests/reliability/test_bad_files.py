"""A table of bad inputs across formats: each row builds one broken SAE and names the error it must raise.

Every error must be typed (ConfigError, FormatError, ...), say what is wrong (the row's substring) and name
the broken file (or, for registry and Hub rows, the repo, path or URL). Policy on dtypes: any floating
dtype is accepted and cast to the config's dtype (float64 weights load as the config says); integer or
bool tensors are refused.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fixtures.layouts import (
    build_dictionary_learning,
    build_gemma_scope,
    build_openai,
    build_saelens,
    build_sparsify,
)
from huggingface_hub.errors import RepositoryNotFoundError
from safetensors.torch import load_file, save_file

from sae_hub import SAE, SAEConfig
from sae_hub.errors import ConfigError, FormatError, SaeFilesMissingError, UnknownFormatError

D_IN, D_SAE = 8, 16
Loader = Callable[[], Any]


def canonical(dtype: torch.dtype = torch.float32, arch: str = "relu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g),
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_dec": torch.randn(D_IN, generator=g),
    }
    if arch == "jumprelu":
        t["threshold"] = torch.rand(D_SAE, generator=g)
    return {k: v.to(dtype) for k, v in t.items()}


def native(root: Path, *, arch: str = "relu", **cfg_kw: Any) -> Path:
    """A good native folder (config.json + model.safetensors) to break."""
    folder = root / "sae"
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=arch, **cfg_kw)
    SAE.from_tensors(cfg, canonical(arch=arch)).save_pretrained(folder)
    return folder


def local(folder: Path) -> Loader:
    return lambda: SAE.from_pretrained(folder)


# ---- byte-level breakage of a safetensors file ---------------------------------------------------


def st_bytes(tensors: dict[str, torch.Tensor], path: Path) -> bytes:
    save_file(tensors, str(path))
    return path.read_bytes()


def with_header(data: bytes, edit: Callable[[dict], None]) -> bytes:
    """Rewrite a safetensors file's JSON header with `edit`, keeping its data section."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def native_weights(transform: Callable[[bytes], bytes]) -> Callable[[Path], Loader]:
    def build(root: Path) -> Loader:
        folder = native(root)
        weights = folder / "model.safetensors"
        weights.write_bytes(transform(weights.read_bytes()))
        return local(folder)

    return build


def native_tensors(
    edit: Callable[[dict[str, torch.Tensor]], None], arch: str = "relu"
) -> Callable[[Path], Loader]:
    def build(root: Path) -> Loader:
        folder = native(root, arch=arch)
        t = canonical(arch=arch)
        edit(t)
        save_file(t, str(folder / "model.safetensors"))
        return local(folder)

    return build


def native_config(edit: Callable[[dict], Any]) -> Callable[[Path], Loader]:
    def build(root: Path) -> Loader:
        folder = native(root)
        path = folder / "config.json"
        data = json.loads(path.read_text())
        out = edit(data)
        path.write_text(out if isinstance(out, str) else json.dumps(data))
        return local(folder)

    return build


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda d: d.__setitem__(key, value)


def _del(key: str) -> Callable[[dict], None]:
    return lambda d: d.pop(key)


def _lie_offsets(header: dict) -> None:
    header["W_enc"]["data_offsets"][1] += 4


def _lie_shape(header: dict) -> None:
    header["b_dec"]["shape"] = [D_IN * 1000]


def _odd_dtype(header: dict) -> None:
    header["b_dec"]["dtype"] = "C64"


def _nan(t: dict) -> None:
    t["W_dec"][3, 1] = float("nan")


def _inf(t: dict) -> None:
    t["b_enc"][0] = float("inf")


def _ints(t: dict) -> None:
    t["W_enc"] = t["W_enc"].to(torch.int32)


def _bools(t: dict) -> None:
    t["b_enc"] = t["b_enc"] > 0


def _narrow(t: dict) -> None:
    t["W_enc"] = t["W_enc"][: D_IN // 2]


def _transposed(t: dict) -> None:
    t["W_dec"] = t["W_dec"].T.contiguous()


def _drop(name: str) -> Callable[[dict], None]:
    return lambda t: t.pop(name)


def _extra_tensor(t: dict) -> None:
    t["W_skip_typo"] = torch.zeros(D_IN, D_IN)


# ---- other formats -------------------------------------------------------------------------------


def gemma_npz(
    edit: Callable[[dict[str, np.ndarray]], None], *, pickle_ok: bool = False
) -> Callable[[Path], Loader]:
    def build(root: Path) -> Loader:
        raw = build_gemma_scope(root, d_in=D_IN, d_sae=D_SAE)
        path = raw.path / "params.npz"
        with np.load(path) as archive:
            arrays = dict(archive)
        edit(arrays)
        np.savez(path, **arrays)
        return local(raw.path)

    return build


def _pickled_object(arrays: dict) -> None:
    arrays["threshold"] = np.array([{"evil": "object"}] * D_SAE, dtype=object)


def _int_array(arrays: dict) -> None:
    arrays["b_enc"] = arrays["b_enc"].astype(np.int64)


def gemma_truncated(root: Path) -> Loader:
    raw = build_gemma_scope(root, d_in=D_IN, d_sae=D_SAE)
    path = raw.path / "params.npz"
    path.write_bytes(path.read_bytes()[:300])
    return local(raw.path)


class Gadget:
    """An arbitrary Python object: a `.pt` holding one must be refused by weights_only=True."""

    def __reduce__(self):
        return (print, ("this must never run",))


def openai_object(root: Path) -> Loader:
    raw = build_openai(root, d_in=D_IN, d_sae=D_SAE)
    state = torch.load(raw.path, weights_only=True)
    state["gadget"] = Gadget()
    torch.save(state, raw.path)
    return local(raw.path.parent)


def openai_truncated(root: Path) -> Loader:
    raw = build_openai(root, d_in=D_IN, d_sae=D_SAE)
    raw.path.write_bytes(raw.path.read_bytes()[:-200])
    return local(raw.path.parent)


def openai_not_a_dict(root: Path) -> Loader:
    raw = build_openai(root, d_in=D_IN, d_sae=D_SAE)
    torch.save([torch.zeros(3)], raw.path)
    return local(raw.path.parent)


def dl_pickle(root: Path) -> Loader:
    raw = build_dictionary_learning(root, d_in=D_IN, d_sae=D_SAE)
    torch.save({"ae": Gadget()}, raw.path / "ae.pt")
    return local(raw.path)


def saelens_cfg(edit: Callable[[dict], None]) -> Callable[[Path], Loader]:
    def build(root: Path) -> Loader:
        raw = build_saelens(root, d_in=D_IN, d_sae=D_SAE)
        path = raw.path / "cfg.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        return local(raw.path)

    return build


def saelens_weights_shape(root: Path) -> Loader:
    raw = build_saelens(root, d_in=D_IN, d_sae=D_SAE)
    path = raw.path / "sae_weights.safetensors"
    t = load_file(str(path))
    t["W_dec"] = t["W_dec"][:, : D_IN - 1].contiguous()
    save_file(t, str(path))
    return local(raw.path)


def sparsify_cfg(root: Path) -> Loader:
    raw = build_sparsify(root, d_in=D_IN, d_sae=D_SAE)
    path = raw.path / "cfg.json"
    data = json.loads(path.read_text())
    data["k"] = "eight"
    path.write_text(json.dumps(data))
    return local(raw.path)


def unknown_layout(root: Path) -> Loader:
    folder = root / "mystery"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 64)
    (folder / "notes.txt").write_text("not an SAE")
    return local(folder)


def zip_not_npz(root: Path) -> Loader:
    raw = build_gemma_scope(root, d_in=D_IN, d_sae=D_SAE)
    path = raw.path / "params.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"):
            archive.writestr(f"{name}.npy", b"this is not an npy file")
    return local(raw.path)


# ---- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    build: Callable[[Path], Loader]
    error: type[Exception]
    match: str
    names: str
    """The file (or repo / path / URL) the message must name."""


ROWS = [
    # safetensors byte-level damage
    Bad(
        "st-truncated",
        native_weights(lambda b: b[: len(b) * 2 // 3]),
        FormatError,
        "truncated",
        "model.safetensors",
    ),
    Bad("st-empty", native_weights(lambda b: b""), FormatError, "8-byte header", "model.safetensors"),
    Bad(
        "st-header-longer-than-file",
        native_weights(lambda b: struct.pack("<Q", 10**6) + b[8:]),
        FormatError,
        "header claims",
        "model.safetensors",
    ),
    Bad(
        "st-header-not-json",
        native_weights(lambda b: b[:8] + b"\xff" * (len(b) - 8)),
        FormatError,
        "not valid JSON",
        "model.safetensors",
    ),
    Bad(
        "st-lying-offsets",
        native_weights(lambda b: with_header(b, _lie_offsets)),
        FormatError,
        "truncated or corrupt",
        "model.safetensors",
    ),
    Bad(
        "st-lying-shape",
        native_weights(lambda b: with_header(b, _lie_shape)),
        FormatError,
        "claims bytes",
        "model.safetensors",
    ),
    Bad(
        "st-unknown-dtype",
        native_weights(lambda b: with_header(b, _odd_dtype)),
        FormatError,
        "unsupported safetensors dtype 'C64'",
        "model.safetensors",
    ),
    # tensors that disagree with the config or are not usable weights
    Bad("shape-vs-config", native_tensors(_narrow), FormatError, "expects (8, 16)", "sae"),
    Bad("transposed-decoder", native_tensors(_transposed), FormatError, "W_dec", "sae"),
    Bad("missing-tensor", native_tensors(_drop("b_enc")), FormatError, "missing ['b_enc']", "sae"),
    Bad("unexpected-tensor", native_tensors(_extra_tensor), FormatError, "unexpected ['W_skip_typo']", "sae"),
    Bad(
        "jumprelu-no-threshold",
        native_tensors(_drop("threshold"), "jumprelu"),
        FormatError,
        "missing ['threshold']",
        "sae",
    ),
    Bad("nan-weights", native_tensors(_nan), FormatError, "NaN or Inf", "sae"),
    Bad("inf-weights", native_tensors(_inf), FormatError, "NaN or Inf", "sae"),
    Bad("int-weights", native_tensors(_ints), FormatError, "expected a floating-point dtype", "sae"),
    Bad("bool-weights", native_tensors(_bools), FormatError, "expected a floating-point dtype", "sae"),
    # config.json
    Bad("cfg-not-json", native_config(lambda d: "{ d_in: 8,"), FormatError, "not valid JSON", "config.json"),
    Bad("cfg-not-object", native_config(lambda d: "[1, 2]"), FormatError, "JSON object", "config.json"),
    Bad("cfg-missing-field", native_config(_del("d_sae")), ConfigError, "d_sae", "config.json"),
    Bad("cfg-extra-field", native_config(_set("d_hidden", 3)), ConfigError, "d_hidden", "config.json"),
    Bad("cfg-wrong-type", native_config(_set("d_in", "8")), ConfigError, "d_in", "config.json"),
    Bad("cfg-negative-width", native_config(_set("d_sae", -16)), ConfigError, "d_sae", "config.json"),
    Bad(
        "cfg-unknown-architecture",
        native_config(_set("architecture", "relu6")),
        ConfigError,
        "relu6",
        "config.json",
    ),
    Bad(
        "cfg-topk-without-k",
        native_config(lambda d: d.update(architecture="topk", k=None)),
        ConfigError,
        "k",
        "config.json",
    ),
    Bad("cfg-bad-dtype", native_config(_set("dtype", "float128")), ConfigError, "float128", "config.json"),
    # Gemma Scope .npz
    Bad("npz-pickled-object", gemma_npz(_pickled_object), FormatError, "pickle", "params.npz"),
    Bad("npz-int-array", gemma_npz(_int_array), FormatError, "expected float", "params.npz"),
    Bad(
        "npz-missing-array",
        gemma_npz(lambda a: a.pop("W_dec")),
        FormatError,
        "['W_dec'] are missing",
        "params.npz",
    ),
    Bad("npz-truncated", gemma_truncated, FormatError, "not a readable .npz archive", "params.npz"),
    Bad("npz-member-not-npy", zip_not_npz, FormatError, "is not a .npy array", "params.npz"),
    # torch pickles
    Bad("pt-arbitrary-object", openai_object, FormatError, "weights_only=True", "5.pt"),
    Bad("pt-truncated", openai_truncated, FormatError, "refused to load", "5.pt"),
    Bad("pt-not-a-state-dict", openai_not_a_dict, FormatError, "expected a state dict", "5.pt"),
    Bad("dl-arbitrary-object", dl_pickle, FormatError, "weights_only=True", "ae.pt"),
    # SAELens / sparsify configs and weights
    Bad("saelens-missing-d_in", saelens_cfg(_del("d_in")), ConfigError, "'d_in' is missing", "cfg.json"),
    Bad("saelens-wrong-type", saelens_cfg(_set("d_in", [16])), ConfigError, "d_in", "cfg.json"),
    Bad("saelens-shape-vs-cfg", saelens_weights_shape, FormatError, "W_dec", "blocks.8.hook_resid_pre"),
    Bad("sparsify-k-not-int", sparsify_cfg, ConfigError, "'k'", "cfg.json"),
    # no known layout at all
    Bad("unknown-layout", unknown_layout, UnknownFormatError, "Could not detect", "mystery"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_file_is_refused_with_a_clear_error(row: Bad, tmp_path):
    load = row.build(tmp_path)
    with pytest.raises(row.error) as info:
        load()
    message = str(info.value)
    assert row.match in message, message
    assert row.names in message, message


def test_rows_are_distinct_and_many():
    assert len({r.id for r in ROWS}) == len(ROWS) >= 25


# ---- registry entries whose files are not where the registry says -----------------------------


def test_registry_entry_whose_repo_is_missing(tmp_path):
    with pytest.raises(RepositoryNotFoundError, match="google/gemma-scope-2b-pt-res"):
        SAE.from_pretrained("gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71", cache_dir=tmp_path)


def test_registry_entry_whose_path_is_missing(make_repo, tmp_path):
    raw = build_gemma_scope(tmp_path / "repo", "layer_0/width_16k/average_l0_105", d_in=D_IN, d_sae=D_SAE)
    make_repo("google/gemma-scope-2b-pt-res", {"layer_0": raw.root / "layer_0"})
    with pytest.raises(SaeFilesMissingError) as info:
        SAE.from_pretrained(
            "gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71", cache_dir=tmp_path / "hf"
        )
    assert "layer_20/width_16k/average_l0_71" in str(info.value)
    assert "google/gemma-scope-2b-pt-res" in str(info.value)


def test_registry_entry_whose_url_is_missing(hub_server):
    with pytest.raises(SaeFilesMissingError) as info:
        SAE.from_pretrained("openai-gpt2-small-v5-32k-resid-delta-attn", "blocks.3.hook_attn_out")
    assert "HTTP 404" in str(info.value)
    assert "resid_delta_attn_v5_32k/autoencoders/3.pt" in str(info.value)


# ---- the dtype policy, stated positively ----------------------------------------------------------


def test_float64_weights_are_accepted_and_cast_to_the_config_dtype(tmp_path):
    folder = native(tmp_path)
    t64 = canonical(torch.float64)
    save_file(t64, str(folder / "model.safetensors"))
    sae = SAE.from_pretrained(folder)
    assert sae.dtype == torch.float32
    for name, t in sae.state_tensors().items():
        torch.testing.assert_close(t.double(), t64[name], rtol=0, atol=1e-6)
