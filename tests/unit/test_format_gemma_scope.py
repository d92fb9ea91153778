"""Gemma Scope 1 and 2: loaded SAEs equal the JumpReLU math on the raw files; writes round-trip exactly."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.layouts import build_gemma_scope, build_gemma_scope_2
from fixtures.reference import assert_matches, d, inputs, jumprelu

from sae_hub import SAE, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats import detect, gemma_scope, gemma_scope_2, read


def _gemma_ref(t: dict[str, torch.Tensor], x: torch.Tensor, skip: torch.Tensor | None = None):
    """Gemma Scope math: pre = x W_enc + b_enc; f = relu(pre)·1[pre > θ]; y = f W_dec + b_dec (+ x A)."""
    pre = x @ d(t["W_enc"]) + d(t["b_enc"])
    f = jumprelu(pre, d(t["threshold"]))
    y = f @ d(t["W_dec"]) + d(t["b_dec"])
    if skip is not None:
        y = y + x @ d(skip)
    return f, y


def test_gemma_scope_matches_reference(tmp_path: Path) -> None:
    raw = build_gemma_scope(tmp_path)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "gemma-scope"
    assert (cfg.architecture, cfg.apply_b_dec_to_input, cfg.dtype) == ("jumprelu", False, torch.float32)
    assert cfg.provenance.layer == 20
    assert cfg.provenance.extra["average_l0"] == 71
    sae = SAE.from_tensors(cfg, tensors)
    x = inputs(cfg.d_in)
    f_ref, y_ref = _gemma_ref(raw.tensors, x)
    assert 0 < (f_ref != 0).sum() < f_ref.numel()
    assert_matches(sae.encode(x.float()), f_ref, what="encode")
    assert_matches(sae(x.float()), y_ref, what="forward")


@pytest.mark.parametrize("affine", [False, True])
def test_gemma_scope_2_matches_reference(tmp_path: Path, affine: bool) -> None:
    path = "transcoder_all/layer_5_width_16k_l0_big" + ("_affine" if affine else "")
    raw = build_gemma_scope_2(tmp_path, path, affine=affine)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "gemma-scope-2"
    assert cfg.skip_connection is affine
    assert cfg.provenance.hook_out == "model.layers.5.post_feedforward_layernorm.output"
    assert cfg.provenance.model == "google/gemma-3-1b-pt"
    assert cfg.provenance.layer == 5
    sae = SAE.from_tensors(cfg, tensors)
    x = inputs(cfg.d_in)
    lower = {"W_enc": raw.tensors["w_enc"], "W_dec": raw.tensors["w_dec"], **raw.tensors}
    f_ref, y_ref = _gemma_ref(lower, x, raw.tensors.get("affine_skip_connection"))
    assert_matches(sae.encode(x.float()), f_ref, what="encode")
    assert_matches(sae(x.float()), y_ref, what="forward")


def _native(arch: str, *, seed: int = 0, skip: bool = False, pre_bias: bool = False) -> SAE:
    cfg = SAEConfig(d_in=16, d_sae=64, architecture=arch, skip_connection=skip, apply_b_dec_to_input=pre_bias)
    sae = SAE(cfg)
    sae.reset_parameters(seed=seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + p.numel())) * 0.1)
        if hasattr(sae, "threshold"):
            sae.threshold.abs_()
    return sae


@pytest.mark.parametrize(
    ("fmt", "skip"), [("gemma-scope", False), ("gemma-scope-2", False), ("gemma-scope-2", True)]
)
def test_round_trip_is_bitwise(tmp_path: Path, fmt: str, skip: bool) -> None:
    sae = _native("jumprelu", skip=skip)
    sae.save_pretrained(tmp_path, format=fmt)
    cfg, tensors, got = read(tmp_path)
    assert got == fmt
    for name, value in sae.state_tensors().items():
        assert torch.equal(tensors[name], value), name
    assert cfg.architecture == "jumprelu"
    assert cfg.skip_connection is skip


def test_relu_and_pre_bias_are_folded_on_write(tmp_path: Path) -> None:
    sae = _native("relu", pre_bias=True)
    sae.save_pretrained(tmp_path, format="gemma-scope")
    again = SAE.from_pretrained(tmp_path)
    x = inputs(16).float()
    assert again.cfg.architecture == "jumprelu"
    assert not again.cfg.apply_b_dec_to_input
    torch.testing.assert_close(again.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again(x), sae(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"architecture": "topk", "k": 4}, "architecture"),
        ({"normalization": "layer_norm"}, "normalization"),
    ],
)
def test_refusals_name_the_reason(tmp_path: Path, changes: dict, field: str) -> None:
    cfg = SAEConfig(d_in=16, d_sae=64, **changes)
    with pytest.raises(ConfigError, match="cannot represent") as err:
        SAE(cfg).save_pretrained(tmp_path, format="gemma-scope")
    assert err.value.field == field


def test_npz_cannot_hold_skip_connections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="skip"):
        _native("jumprelu", skip=True).save_pretrained(tmp_path, format="gemma-scope")


def test_detection_from_names() -> None:
    assert detect(["layer_20/width_16k/average_l0_71/params.npz"]) is gemma_scope
    assert detect(["params.safetensors", "config.json"]) is gemma_scope_2
    assert gemma_scope.files_for("layer_20/width_16k/average_l0_71") == [
        "layer_20/width_16k/average_l0_71/params.npz"
    ]
    assert gemma_scope_2.files_for("resid_post/layer_17_width_16k_l0_medium/") == [
        "resid_post/layer_17_width_16k_l0_medium/config.json",
        "resid_post/layer_17_width_16k_l0_medium/params.safetensors",
    ]


def test_corrupt_npz_is_refused_with_the_file(tmp_path: Path) -> None:
    raw = build_gemma_scope(tmp_path)
    npz = raw.path / "params.npz"
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(FormatError, match=r"params\.npz"):
        read(raw.path)


def test_pickled_object_in_npz_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "layer_0/width_16k/average_l0_5"
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(folder / "params.npz", "w") as zf:
        zf.writestr("W_enc.npy", buf.getvalue())
    with pytest.raises(FormatError, match="pickled objects"):
        read(folder)


def test_missing_array_is_named(tmp_path: Path) -> None:
    raw = build_gemma_scope(tmp_path)
    arrays = dict(np.load(raw.path / "params.npz"))
    del arrays["threshold"]
    np.savez(raw.path / "params.npz", **arrays)
    with pytest.raises(FormatError, match="threshold"):
        read(raw.path)


def test_gemma_scope_2_wrong_architecture_names_file_and_field(tmp_path: Path) -> None:
    raw = build_gemma_scope_2(tmp_path)
    (raw.path / "config.json").write_text('{"architecture": "topk"}')
    with pytest.raises(ConfigError, match=r"config\.json") as err:
        read(raw.path)
    assert err.value.field == "architecture"


def test_gemma_scope_2_truncated_safetensors(tmp_path: Path) -> None:
    raw = build_gemma_scope_2(tmp_path)
    st = raw.path / "params.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(FormatError, match=r"params\.safetensors"):
        read(raw.path)


@pytest.mark.parametrize("variant", ["compressed", "fortran", "big-endian"])
def test_npz_variants_read_the_same_arrays(tmp_path: Path, variant: str) -> None:
    """Stored members are memory-mapped; compressed, Fortran-order or big-endian ones take np.load's path."""
    raw = build_gemma_scope(tmp_path)
    plain = {k: v.clone() for k, v in read(raw.path)[1].items()}  # the file is rewritten below
    arrays = {k: v.numpy() for k, v in raw.tensors.items()}
    if variant == "compressed":
        np.savez_compressed(raw.path / "params.npz", **arrays)
    elif variant == "fortran":
        np.savez(raw.path / "params.npz", **{k: np.asfortranarray(v) for k, v in arrays.items()})
    else:
        np.savez(raw.path / "params.npz", **{k: v.astype(">f4") for k, v in arrays.items()})
    _, again, _ = read(raw.path)
    for name, value in plain.items():
        assert torch.equal(again[name], value), name


def test_stored_npz_is_memory_mapped_not_copied(tmp_path: Path) -> None:
    raw = build_gemma_scope(tmp_path)
    from sae_hub.formats._npz import read_npz

    arrays = read_npz(raw.path / "params.npz")
    assert not arrays["W_enc"].untyped_storage().resizable()  # a view of the mapped file, not an owned copy
    assert torch.equal(arrays["W_enc"], raw.tensors["W_enc"])
