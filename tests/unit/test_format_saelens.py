"""SAELens format: every cfg.json generation and architecture equals SAELens's math; writes round-trip."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from fixtures.layouts import build_saelens
from fixtures.reference import (
    abs_topk,
    assert_matches,
    d,
    inputs,
    jumprelu,
    relu,
    standardize,
    topk_then_relu,
)

from sae_hub import SAE, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats import detect, read, saelens


def saelens_ref(
    t: dict[str, torch.Tensor],
    x: torch.Tensor,
    *,
    arch: str,
    k: int = 8,
    norm: str = "none",
    pre_bias: bool = True,
    rescale: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAELens: norm_in -> x - b_dec·apply -> @W_enc + b_enc -> act -> (·s) @W_dec + b_dec -> norm_out (+ x W_skipᵀ)."""
    t = {n: d(v) for n, v in t.items()}
    if norm == "layer_norm":
        xn, mu, std = standardize(x)
    elif norm == "constant_norm_rescale":
        coeff = math.sqrt(x.shape[-1]) / x.norm(dim=-1, keepdim=True)
        xn = x * coeff
    else:
        xn = x
    sae_in = xn - t["b_dec"] if pre_bias else xn
    n_dec = t["W_dec"].norm(dim=-1)
    if arch == "gated":
        gate = (sae_in @ t["W_enc"] + t["b_gate"] > 0).double()
        f = gate * relu(sae_in @ (t["W_enc"] * t["r_mag"].exp()) + t["b_mag"])
    else:
        pre = sae_in @ t["W_enc"] + t["b_enc"]
        if rescale:
            pre = pre * n_dec
        if arch in ("standard", "transcoder", "skip_transcoder"):
            f = relu(pre)
        elif arch == "topk":
            f = topk_then_relu(pre, k)
        elif arch == "abstopk":
            f = abs_topk(pre, k)
        else:
            f = jumprelu(pre, t["threshold"])
    g = f / n_dec if rescale else f
    if "scaling_factor" in t:
        g = g * t["scaling_factor"]
    y = g @ t["W_dec"] + t["b_dec"]
    if norm == "layer_norm":
        y = y * std + mu
    elif norm == "constant_norm_rescale":
        y = y / coeff
    if "W_skip" in t:
        y = y + x @ t["W_skip"].T
    return f, y


CASES = [
    ("v6", "standard", {}),
    ("v6", "topk", {}),
    ("v6", "topk", {"rescale_acts_by_decoder_norm": True}),
    ("v6", "abstopk", {"rescale_acts_by_decoder_norm": True}),
    ("v6", "jumprelu", {}),
    ("v6", "gated", {}),
    ("v6", "jumprelu", {"apply_b_dec_to_input": False}),
    ("v6", "topk", {"normalize_activations": "layer_norm"}),
    ("v6", "standard", {"normalize_activations": "constant_norm_rescale"}),
    ("v6", "transcoder", {"d_out": 24}),
    ("v6", "skip_transcoder", {}),
    ("v6", "jumprelu_transcoder", {"d_out": 24}),
    ("v6", "jumprelu_skip_transcoder", {}),
    ("v5", "topk", {}),
    ("v5", "standard", {"scaling_factor": True}),
    ("v5", "jumprelu", {}),
    ("v5", "gated", {"normalize_activations": "none"}),
    ("v3", "standard", {"normalize_activations": False}),
    ("v3", "standard", {"apply_b_dec_to_input": False}),
]


@pytest.mark.parametrize(("generation", "arch", "options"), CASES)
def test_loaded_sae_matches_saelens_math(tmp_path: Path, generation: str, arch: str, options: dict) -> None:
    raw = build_saelens(tmp_path, architecture=arch, generation=generation, **options)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "saelens"
    sae = SAE.from_tensors(cfg, tensors)
    x = inputs(16, scale=2.0)
    f_ref, y_ref = saelens_ref(
        raw.tensors,
        x,
        arch=arch,
        norm=str(options.get("normalize_activations", "none")),
        pre_bias=options.get("apply_b_dec_to_input", True) and "transcoder" not in arch,
        rescale=options.get("rescale_acts_by_decoder_norm", False),
    )
    assert (f_ref != 0).any()
    assert_matches(sae.encode(x.float()), f_ref, what="encode")
    assert_matches(sae(x.float()), y_ref, what="forward")
    assert cfg.provenance.hook == "blocks.8.hook_resid_pre"
    assert cfg.provenance.model == "gpt2-small"
    assert cfg.provenance.layer == 8


def test_bfloat16_files_stay_bfloat16(tmp_path: Path) -> None:
    raw = build_saelens(tmp_path, dtype=torch.bfloat16)
    cfg, tensors, _ = read(raw.path)
    assert cfg.dtype == torch.bfloat16
    assert all(torch.equal(tensors[n], raw.tensors[n]) for n in ("W_enc", "b_enc", "W_dec", "b_dec"))


def test_expected_average_only_in_defers_the_scale_to_the_registry(tmp_path: Path, caplog) -> None:
    raw = build_saelens(tmp_path, normalize_activations="expected_average_only_in")
    with caplog.at_level(logging.WARNING):
        cfg, _, _ = read(raw.path)
    assert (cfg.input_scale, cfg.output_scale, cfg.normalization) == (1.0, 1.0, "none")
    assert cfg.provenance.extra["normalize_activations"] == "expected_average_only_in"
    assert "registry" in caplog.text


def _random_sae(arch: str, **kw) -> SAE:
    cfg = SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw)
    sae = SAE(cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        if hasattr(sae, "threshold"):
            sae.threshold.abs_()
    return sae


ROUND_TRIPS = [
    ("relu", {"apply_b_dec_to_input": True}),
    ("relu", {"apply_b_dec_to_input": False}),
    ("topk", {"k": 5, "normalization": "layer_norm", "apply_b_dec_to_input": True}),
    ("abstopk", {"k": 5}),
    ("jumprelu", {}),
    ("gated", {"apply_b_dec_to_input": True}),
    ("relu", {"d_out": 24}),
    ("jumprelu", {"skip_connection": True}),
    ("relu", {"skip_connection": True, "d_out": 20}),
    ("relu", {"normalization": "constant_norm_rescale"}),
]


@pytest.mark.parametrize(("arch", "kw"), ROUND_TRIPS)
def test_round_trip_is_bitwise(tmp_path: Path, arch: str, kw: dict) -> None:
    sae = _random_sae(arch, **kw).to(torch.float32)
    sae.cfg = sae.cfg.with_provenance(
        model="gpt2", hook="blocks.3.hook_resid_post", layer=3, extra={"dataset_path": "x"}
    )
    sae.save_pretrained(tmp_path, format="saelens")
    cfg, tensors, fmt = read(tmp_path)
    assert fmt == "saelens"
    assert set(tensors) == set(sae.state_tensors())
    for name, value in sae.state_tensors().items():
        assert torch.equal(tensors[name], value), name
    for field in (
        "architecture",
        "k",
        "d_in",
        "d_sae",
        "d_out",
        "apply_b_dec_to_input",
        "normalization",
        "skip_connection",
    ):
        assert getattr(cfg, field) == getattr(sae.cfg, field), field
    assert (cfg.provenance.model, cfg.provenance.hook, cfg.provenance.layer) == (
        "gpt2",
        "blocks.3.hook_resid_post",
        3,
    )
    assert json.loads((tmp_path / "cfg.json").read_text())["metadata"]["sae_lens_version"] >= "6"


def test_batchtopk_is_exported_as_jumprelu(tmp_path: Path) -> None:
    sae = _random_sae("batchtopk", k=4)
    with torch.no_grad():
        sae.threshold.fill_(0.25)
    sae.save_pretrained(tmp_path, format="saelens")
    assert json.loads((tmp_path / "cfg.json").read_text())["architecture"] == "jumprelu"
    again = SAE.from_pretrained(tmp_path)
    x = inputs(16).float()
    assert torch.equal(again.encode(x), sae.encode(x))


def test_constant_scales_are_folded_on_write(tmp_path: Path) -> None:
    sae = _random_sae("relu", apply_b_dec_to_input=True, input_scale=2.5, output_scale=0.5)
    sae.save_pretrained(tmp_path, format="saelens")
    again = SAE.from_pretrained(tmp_path)
    assert (again.cfg.input_scale, again.cfg.output_scale) == (1.0, 1.0)
    x = inputs(16).float()
    torch.testing.assert_close(again(x), sae(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "kw", "field"),
    [
        ("topk", {"k": 4, "d_out": 24}, "architecture"),
        ("gated", {"d_out": 24}, "architecture"),
    ],
)
def test_unrepresentable_transcoders_are_refused(tmp_path: Path, arch: str, kw: dict, field: str) -> None:
    with pytest.raises(ConfigError, match="cannot represent") as err:
        SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw)).save_pretrained(tmp_path, format="saelens")
    assert err.value.field == field


def test_transcoder_with_normalisation_is_refused(tmp_path: Path) -> None:
    cfg = SAEConfig(d_in=16, d_sae=64, normalization="layer_norm").with_provenance(
        hook_out="blocks.0.hook_mlp_out"
    )
    with pytest.raises(ConfigError, match="normalisation"):
        SAE(cfg).save_pretrained(tmp_path, format="saelens")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"normalize_activations": "covariance_whitening"}, "normalize_activations"),
        ({"architecture": "matching_pursuit"}, "architecture"),
        ({"d_in": "sixteen"}, "d_in"),
        ({"architecture": "topk", "k": None}, "k"),
    ],
)
def test_bad_config_fields_name_file_and_field(tmp_path: Path, patch: dict, field: str) -> None:
    raw = build_saelens(tmp_path)
    cfg_path = raw.path / "cfg.json"
    cfg_path.write_text(json.dumps({**raw.config, **patch}))
    with pytest.raises(ConfigError, match=r"cfg\.json") as err:
        read(raw.path)
    assert err.value.field == field


def test_shape_mismatch_names_the_weights_file(tmp_path: Path) -> None:
    raw = build_saelens(tmp_path)
    (raw.path / "cfg.json").write_text(json.dumps({**raw.config, "d_in": 32}))
    with pytest.raises(FormatError, match=r"sae_weights\.safetensors"):
        read(raw.path)


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    raw = build_saelens(tmp_path)
    st = raw.path / "sae_weights.safetensors"
    st.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(FormatError, match="truncated"):
        read(raw.path)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    raw = build_saelens(tmp_path)
    (raw.path / "cfg.json").write_text("{not json")
    with pytest.raises(FormatError, match=r"cfg\.json"):
        read(raw.path)


def test_detection_and_files() -> None:
    assert (
        detect(["blocks.8.hook_resid_pre/cfg.json", "blocks.8.hook_resid_pre/sae_weights.safetensors"])
        is saelens
    )
    assert saelens.files_for("v5_32k_layer_0.pt") == [
        "v5_32k_layer_0.pt/cfg.json",
        "v5_32k_layer_0.pt/sae_weights.safetensors",
    ]
    assert saelens.files_for(None) == ["cfg.json", "sae_weights.safetensors"]
