"""OpenAI `.pt` (v1/v4/v5) and Goodfire `.pth`: torch pickles read with weights_only, math and round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures.layouts import build_goodfire, build_openai
from fixtures.reference import assert_matches, d, inputs, relu, standardize, topk_then_relu

from sae_hub import SAE, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats import detect, goodfire, openai, read


def openai_ref(t: dict[str, torch.Tensor], x: torch.Tensor, *, topk: int | None):
    """openai/sparse_autoencoder `Autoencoder`: (standardise) -> (x - pre_bias) Eᵀ + latent_bias -> act -> Dᵀ + pre_bias."""
    t = {n: d(v) for n, v in t.items()}
    if topk:
        x, mu, std = standardize(x)
    pre = (x - t["pre_bias"]) @ t["encoder.weight"].T + t["latent_bias"]
    f = topk_then_relu(pre, topk) if topk else relu(pre)
    y = f @ t["decoder.weight"].T + t["pre_bias"]
    if topk:
        y = y * std + mu
    return f, y


@pytest.mark.parametrize(
    ("version", "path", "hook"),
    [
        ("v5", "resid_post_mlp_v5_32k/autoencoders/5.pt", "blocks.5.hook_resid_post"),
        ("v4", "resid_delta_mlp_v4/autoencoders/3.pt", "blocks.3.hook_mlp_out"),
        ("v1", "mlp_post_act/autoencoders/0.pt", "blocks.0.mlp.hook_post"),
    ],
)
def test_openai_matches_reference(tmp_path: Path, version: str, path: str, hook: str) -> None:
    raw = build_openai(tmp_path, path, version=version)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "openai"
    assert cfg.provenance.hook == hook
    assert cfg.provenance.extra["version"] == {"v5": "v5_32k", "v4": "v4", "v1": "v1"}[version]
    sae = SAE.from_tensors(cfg, tensors)
    x = inputs(cfg.d_in, scale=3.0)
    f_ref, y_ref = openai_ref(raw.tensors, x, topk=8 if version == "v5" else None)
    assert_matches(sae.encode(x.float()), f_ref, what="encode")
    assert_matches(sae(x.float()), y_ref, what="forward")
    # the folder holding the single file reads the same
    assert read(raw.path.parent)[2] == "openai"


def _random(arch: str, **kw) -> SAE:
    sae = SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return sae


@pytest.mark.parametrize(
    ("arch", "kw"),
    [
        ("relu", {"apply_b_dec_to_input": True}),
        ("topk", {"k": 6, "normalization": "layer_norm", "apply_b_dec_to_input": True}),
    ],
)
def test_openai_round_trip_is_bitwise(tmp_path: Path, arch: str, kw: dict) -> None:
    sae = _random(arch, **kw)
    sae.cfg = sae.cfg.with_provenance(layer=7)
    sae.save_pretrained(tmp_path, format="openai")
    cfg, tensors, fmt = read(tmp_path / "7.pt")
    assert fmt == "openai"
    assert cfg.architecture == arch
    assert cfg.k == kw.get("k")
    for name, value in sae.state_tensors().items():
        assert torch.equal(tensors[name], value), name


def test_openai_write_adds_the_pre_bias(tmp_path: Path) -> None:
    sae = _random("relu")
    sae.save_pretrained(tmp_path, format="openai")
    again = SAE.from_pretrained(tmp_path)
    x = inputs(16).float()
    torch.testing.assert_close(again(x), sae(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "kw"),
    [("topk", {"k": 4}), ("relu", {"normalization": "layer_norm"}), ("jumprelu", {}), ("relu", {"d_out": 8})],
)
def test_openai_refusals(tmp_path: Path, arch: str, kw: dict) -> None:
    with pytest.raises(ConfigError, match="cannot represent"):
        SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw)).save_pretrained(tmp_path, format="openai")


class Payload:
    """Not a tensor: torch.load(weights_only=True) must refuse to build it."""


def test_arbitrary_object_in_pt_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "resid_post_mlp_v5_32k" / "autoencoders"
    folder.mkdir(parents=True)
    torch.save({"encoder.weight": torch.zeros(2, 2), "evil": Payload()}, folder / "3.pt")
    with pytest.raises(FormatError, match=r"3\.pt") as err:
        read(folder / "3.pt")
    assert "weights_only" in str(err.value)


def test_truncated_pt_is_refused(tmp_path: Path) -> None:
    raw = build_openai(tmp_path)
    raw.path.write_bytes(raw.path.read_bytes()[:300])
    with pytest.raises(FormatError, match=r"5\.pt"):
        read(raw.path)


def test_unknown_activation_is_refused(tmp_path: Path) -> None:
    raw = build_openai(tmp_path)
    state = torch.load(raw.path, weights_only=True)
    state["activation"] = "GELU"
    torch.save(state, raw.path)
    with pytest.raises(FormatError, match="GELU"):
        read(raw.path)


def test_goodfire_matches_reference(tmp_path: Path) -> None:
    raw = build_goodfire(tmp_path)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "goodfire"
    assert cfg.architecture == "relu"
    assert not cfg.apply_b_dec_to_input
    assert cfg.provenance.layer == 19
    assert cfg.provenance.hook == "model.layers.19"
    t = {n: d(v) for n, v in raw.tensors.items()}
    x = inputs(cfg.d_in)
    f_ref = relu(x @ t["encoder_linear.weight"].T + t["encoder_linear.bias"])
    sae = SAE.from_tensors(cfg, tensors)
    assert_matches(sae.encode(x.float()), f_ref, what="encode")
    assert_matches(
        sae(x.float()), f_ref @ t["decoder_linear.weight"].T + t["decoder_linear.bias"], what="forward"
    )
    assert read(tmp_path)[2] == "goodfire"


def test_goodfire_round_trip_is_bitwise(tmp_path: Path) -> None:
    sae = _random("relu")
    sae.save_pretrained(tmp_path, format="goodfire")
    _cfg, tensors, fmt = read(tmp_path)
    assert fmt == "goodfire"
    for name, value in sae.state_tensors().items():
        assert torch.equal(tensors[name], value), name


def test_goodfire_bad_yaml_names_the_file(tmp_path: Path) -> None:
    raw = build_goodfire(tmp_path)
    (tmp_path / "config.yaml").write_text("a: [unclosed")
    with pytest.raises(FormatError, match=r"config\.yaml"):
        read(raw.path)


def test_detection_and_files() -> None:
    assert detect(["gpt2-small/resid_post_mlp_v5_32k/autoencoders/5.pt"]) is openai
    assert detect(["Llama-3.3-70B-Instruct-SAE-l50.pt", "config.yaml", "README.md"]) is goodfire
    assert openai.files_for("resid_post_mlp_v5_32k/autoencoders/5.pt") == [
        "resid_post_mlp_v5_32k/autoencoders/5.pt"
    ]
    assert goodfire.files_for("Llama-3.1-8B-Instruct-SAE-l19.pth") == [
        "Llama-3.1-8B-Instruct-SAE-l19.pth",
        "config.yaml",
    ]


def test_location_is_found_below_extra_cache_folders(tmp_path: Path) -> None:
    raw = build_openai(tmp_path, "sparse-autoencoder/gpt2-small/resid_delta_attn_v5_128k/autoencoders/5/5.pt")
    prov = read(raw.path)[0].provenance
    assert (prov.hook, prov.layer, prov.model) == ("blocks.5.hook_attn_out", 5, "openai-community/gpt2")
    assert prov.extra == {"location": "resid_delta_attn", "version": "v5_128k"}


def test_from_pretrained_reads_a_local_weights_file(tmp_path: Path) -> None:
    raw = build_openai(tmp_path)
    from_file = SAE.from_pretrained(tmp_path / raw.files[0])
    from_folder_read, tensors, _ = read(tmp_path / raw.files[0])
    assert from_file.cfg.architecture == from_folder_read.architecture == "topk"
    for name, t in tensors.items():
        assert torch.equal(from_file.state_tensors()[name], t), name
