"""Llama Scope and R1 Distill: the converted SAE reproduces lm_saes's own load-time math and L0."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from fixtures.layouts import build_llama_scope, build_llama_scope_r1
from fixtures.reference import assert_matches, d, inputs, jumprelu, l0

from sae_hub import SAE
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats import detect, llama_scope, llama_scope_r1, read


def lm_saes_loaded(raw: dict[str, torch.Tensor], hp: dict) -> dict[str, torch.Tensor]:
    """lm_saes `from_config`, step by step in float64: fold the dataset norm, then unit decoder norms."""
    E, b = d(raw["encoder.weight"]), d(raw["encoder.bias"])
    D, c = d(raw["decoder.weight"]), d(raw["decoder.bias"])
    s_in = math.sqrt(hp["d_model"]) / hp["dataset_average_activation_norm"]["in"]
    s_out = math.sqrt(hp["d_model"]) / hp["dataset_average_activation_norm"]["out"]
    # standardize_parameters_of_dataset_activation_scaling
    b = b / s_in
    c = c / s_out
    D = D * s_in / s_out
    # transform_to_unit_decoder_norm (sparsity_include_decoder_norm = true)
    norms = D.norm(dim=0)
    D = D / norms
    E = E * norms[:, None]
    b = b * norms
    return {"E": E, "b": b, "D": D, "c": c}


def lm_saes_forward(
    p: dict[str, torch.Tensor], theta: float, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """lm_saes JumpReLU inference on raw activations: h = x Eᵀ + b, f = h·1[h > θ], y = f Dᵀ + c."""
    h = x @ p["E"].T + p["b"]
    f = h * (h > theta).double()
    return f, f @ p["D"].T + p["c"]


def test_faithful_conversion_matches_lm_saes_and_its_l0(tmp_path: Path) -> None:
    raw = build_llama_scope(tmp_path)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "llama-scope"
    assert cfg.architecture == "jumprelu"
    assert cfg.dtype == torch.float32
    assert not cfg.apply_b_dec_to_input
    assert (cfg.input_scale, cfg.output_scale) == (1.0, 1.0)
    assert cfg.provenance.hook == "blocks.15.hook_resid_post"
    assert cfg.provenance.layer == 15
    sae = SAE.from_tensors(cfg, tensors)
    x = inputs(cfg.d_in, n=256, scale=8.0)
    f_ref, y_ref = lm_saes_forward(
        lm_saes_loaded(raw.tensors, raw.config), raw.config["jump_relu_threshold"], x
    )
    f = sae.encode(x.float())
    assert 0 < l0(f_ref) < cfg.d_sae
    assert l0(f) == l0(f_ref)
    assert torch.equal(f != 0, f_ref != 0)
    assert_matches(f, f_ref, what="encode")
    assert_matches(sae(x.float()), y_ref, what="forward")


def test_the_fixture_tells_the_conventions_apart(tmp_path: Path) -> None:
    """A conversion that skips either fold (as SAELens's does) gets a different SAE on this fixture."""
    raw = build_llama_scope(tmp_path)
    cfg, _, _ = read(raw.path)
    hp = raw.config
    x = inputs(cfg.d_in, n=256, scale=8.0)
    f_ref, _ = lm_saes_forward(lm_saes_loaded(raw.tensors, hp), hp["jump_relu_threshold"], x)
    s = math.sqrt(hp["d_model"]) / hp["dataset_average_activation_norm"]["in"]
    naive = (s * x) @ d(raw.tensors["encoder.weight"]).T + d(raw.tensors["encoder.bias"])
    f_naive = jumprelu(naive, hp["jump_relu_threshold"] * s)
    assert l0(f_naive) != l0(f_ref)


def test_without_decoder_norm_term_only_the_dataset_norm_is_folded(tmp_path: Path) -> None:
    raw = build_llama_scope(tmp_path)
    hp = {**raw.config, "sparsity_include_decoder_norm": False}
    (raw.path / "hyperparams.json").write_text(json.dumps(hp))
    cfg, tensors, _ = read(raw.path)
    s_in = math.sqrt(hp["d_model"]) / hp["dataset_average_activation_norm"]["in"]
    s_out = math.sqrt(hp["d_model"]) / hp["dataset_average_activation_norm"]["out"]
    x = inputs(cfg.d_in, scale=8.0)
    h = (x * s_in) @ d(raw.tensors["encoder.weight"]).T + d(raw.tensors["encoder.bias"])
    h = h / s_in
    y = jumprelu(h, hp["jump_relu_threshold"]) @ (d(raw.tensors["decoder.weight"]).T * s_in / s_out)
    y = y + d(raw.tensors["decoder.bias"]) / s_out
    assert_matches(SAE.from_tensors(cfg, tensors)(x.float()), y, what="forward")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"act_fn": "topk"}, "act_fn"),
        ({"norm_activation": "token-wise"}, "norm_activation"),
        ({"dataset_average_activation_norm": {"in": 0, "out": 3}}, "dataset_average_activation_norm.in"),
        ({"d_model": "4096"}, "d_model"),
        ({"apply_decoder_bias_to_pre_encoder": True}, "apply_decoder_bias_to_pre_encoder"),
    ],
)
def test_bad_hyperparams_name_file_and_field(tmp_path: Path, patch: dict, field: str) -> None:
    raw = build_llama_scope(tmp_path)
    (raw.path / "hyperparams.json").write_text(json.dumps({**raw.config, **patch}))
    with pytest.raises(ConfigError, match=r"hyperparams\.json") as err:
        read(raw.path)
    assert err.value.field == field


def test_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    raw = build_llama_scope(tmp_path)
    st = raw.path / "checkpoints" / "final.safetensors"
    st.write_bytes(st.read_bytes()[:-64])
    with pytest.raises(FormatError, match=r"final\.safetensors"):
        read(raw.path)


def test_r1_matches_reference_and_takes_the_registry_scale(tmp_path: Path) -> None:
    raw = build_llama_scope_r1(tmp_path)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "llama-scope-r1"
    assert (cfg.input_scale, cfg.output_scale) == (1.0, 1.0)
    assert cfg.provenance.extra["norm_activation"] == "dataset-wise"
    assert cfg.provenance.layer == 10
    t = {n: d(v) for n, v in raw.tensors.items()}
    theta = t["log_jumprelu_threshold"].exp()
    x = inputs(cfg.d_in)
    sae = SAE.from_tensors(cfg, tensors)
    f_ref = jumprelu(x @ t["encoder.weight"].T + t["encoder.bias"], theta)
    assert_matches(sae.encode(x.float()), f_ref, what="encode")
    assert_matches(sae(x.float()), f_ref @ t["decoder.weight"].T + t["decoder.bias"], what="forward")
    # the dataset-wise norm the registry supplies: x̃ = s·x in, ŷ = ỹ / s out
    s = 1.7
    scaled = SAE.from_tensors(cfg.replace(input_scale=s, output_scale=s), tensors)
    f_s = jumprelu((s * x) @ t["encoder.weight"].T + t["encoder.bias"], theta)
    assert_matches(
        scaled(x.float()), (f_s @ t["decoder.weight"].T + t["decoder.bias"]) / s, what="scaled forward"
    )


def test_r1_refuses_unknown_settings(tmp_path: Path) -> None:
    raw = build_llama_scope_r1(tmp_path)
    (raw.path / "config.json").write_text(json.dumps({**raw.config, "sparsity_include_decoder_norm": True}))
    with pytest.raises(ConfigError, match=r"config\.json") as err:
        read(raw.path)
    assert err.value.field == "sparsity_include_decoder_norm"


def test_detection_and_files() -> None:
    assert detect(["hyperparams.json", "checkpoints/final.safetensors"]) is llama_scope
    assert detect(["hyperparams.json", "checkpoints"]) is llama_scope
    assert detect(["config.json", "sae_weights.safetensors"]) is llama_scope_r1
    assert llama_scope.files_for("Llama3_1-8B-Base-L15R-8x") == [
        "Llama3_1-8B-Base-L15R-8x/hyperparams.json",
        "Llama3_1-8B-Base-L15R-8x/checkpoints/final.safetensors",
    ]
    assert llama_scope_r1.files_for("800M-Slimpajama-0-OpenR1-Math-220k/L10R")[1].endswith(
        "L10R/sae_weights.safetensors"
    )


def test_llama_scope_formats_are_read_only(tmp_path: Path) -> None:
    from sae_hub.formats import write

    cfg, tensors, _ = read(build_llama_scope(tmp_path / "src").path)
    for fmt in ("llama-scope", "llama-scope-r1"):
        with pytest.raises(ConfigError, match="read-only"):
            write(fmt, cfg, tensors, tmp_path / fmt)
