"""sparsify: all cfg.json generations equal sparsify's own encode/decode; writes round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.layouts import build_sparsify
from fixtures.reference import assert_matches, d, inputs, relu

from sae_hub import SAE, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats import detect, read, sparsify


def sparsify_ref(t: dict[str, torch.Tensor], x: torch.Tensor, *, k: int, transcode: bool, signed: bool):
    """SparseCoder: pre = relu((x - b_dec) Eᵀ + b) (no relu and |.| ranking if signed), top-k, Σ v·W_dec[i] + b_dec (+ x W_skipᵀ)."""
    t = {n: d(v) for n, v in t.items()}
    sae_in = x if transcode else x - t["b_dec"]
    pre = sae_in @ t["encoder.weight"].T + t["encoder.bias"]
    if signed:
        idx = pre.abs().topk(k, dim=-1).indices
    else:
        pre = relu(pre)
        idx = pre.topk(k, dim=-1).indices
    vals = pre.gather(-1, idx)
    f = torch.zeros_like(pre).scatter(-1, idx, vals)
    y = (vals[..., None] * t["W_dec"][idx]).sum(-2) + t["b_dec"]
    if "W_skip" in t:
        y = y + x @ t["W_skip"].T
    return f, y


@pytest.mark.parametrize(
    ("generation", "options"),
    [
        ("current", {}),
        ("current", {"transcode": True}),
        ("current", {"skip_connection": True, "transcode": True}),
        ("middle", {}),
        ("old", {}),
        ("old", {"signed": True}),
        ("current", {"dtype": torch.bfloat16}),
    ],
)
def test_matches_sparsify_math(tmp_path: Path, generation: str, options: dict) -> None:
    raw = build_sparsify(tmp_path, generation=generation, **options)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "sparsify"
    assert cfg.dtype == options.get("dtype", torch.float32)
    assert cfg.provenance.hook == "layers.10"
    assert cfg.provenance.layer == 10
    assert cfg.provenance.model == "meta-llama/Meta-Llama-3-8B"
    sae = SAE.from_tensors(cfg, tensors).to(torch.float32)
    x = inputs(cfg.d_in)
    f_ref, y_ref = sparsify_ref(
        raw.tensors, x, k=8, transcode=options.get("transcode", False), signed=options.get("signed", False)
    )
    assert_matches(sae.encode(x.float()), f_ref, what="encode")
    assert_matches(sae(x.float()), y_ref, what="forward")


def test_w_dec_is_not_transposed(tmp_path: Path) -> None:
    raw = build_sparsify(tmp_path, d_in=16, d_sae=64)
    _, tensors, _ = read(raw.path)
    assert torch.equal(tensors["W_dec"], raw.tensors["W_dec"])
    assert torch.equal(tensors["W_enc"], raw.tensors["encoder.weight"].T)


def _random(arch: str, **kw) -> SAE:
    sae = SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return sae


@pytest.mark.parametrize(
    "kw",
    [
        {"k": 6, "relu_before_topk": True, "apply_b_dec_to_input": True},
        {"k": 6, "relu_before_topk": True, "skip_connection": True},
    ],
)
def test_round_trip_is_bitwise(tmp_path: Path, kw: dict) -> None:
    sae = _random("topk", **kw)
    sae.save_pretrained(tmp_path / "layers.3", format="sparsify")
    cfg, tensors, fmt = read(tmp_path / "layers.3")
    assert fmt == "sparsify"
    assert cfg.k == 6
    assert cfg.skip_connection == kw.get("skip_connection", False)
    for name, value in sae.state_tensors().items():
        assert torch.equal(tensors[name], value), name


def test_sae_without_pre_bias_is_written_with_an_equal_one(tmp_path: Path) -> None:
    sae = _random("topk", k=6)
    sae.save_pretrained(tmp_path, format="sparsify")
    again = SAE.from_pretrained(tmp_path)
    assert again.cfg.apply_b_dec_to_input
    x = inputs(16).float()
    torch.testing.assert_close(again.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again(x), sae(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "kw"), [("relu", {}), ("jumprelu", {}), ("topk", {"k": 3, "normalization": "layer_norm"})]
)
def test_refusals(tmp_path: Path, arch: str, kw: dict) -> None:
    with pytest.raises(ConfigError, match="cannot represent"):
        SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw)).save_pretrained(
            tmp_path, format="sparsify"
        )


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"activation": "groupmax"}, "activation"), ({"k": "8"}, "k"), ({"d_in": None}, "d_in")],
)
def test_bad_cfg_names_file_and_field(tmp_path: Path, patch: dict, field: str) -> None:
    raw = build_sparsify(tmp_path)
    (raw.path / "cfg.json").write_text(json.dumps({**raw.config, **patch}))
    with pytest.raises(ConfigError, match=r"cfg\.json") as err:
        read(raw.path)
    assert err.value.field == field


def test_width_mismatch_names_the_weights(tmp_path: Path) -> None:
    raw = build_sparsify(tmp_path)
    (raw.path / "cfg.json").write_text(json.dumps({**raw.config, "num_latents": 128}))
    with pytest.raises(FormatError, match=r"sae\.safetensors"):
        read(raw.path)


def test_detection_and_files() -> None:
    assert (
        detect(["layers.29.mlp/cfg.json", "layers.29.mlp/sae.safetensors", "layers.29.mlp/.cfg.json.swp"])
        is sparsify
    )
    assert sparsify.files_for("layers.10") == [
        "layers.10/cfg.json",
        "layers.10/sae.safetensors",
        "config.json",
    ]
