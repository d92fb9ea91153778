"""dictionary_learning: every dict_class (and the nested backup ae.pt) equals its own encode/decode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixtures.layouts import build_dictionary_learning
from fixtures.reference import assert_matches, d, inputs, relu

from sae_hub import SAE, SAEConfig
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats import detect, dictionary_learning, read


def dl_ref(dict_class: str, s: dict[str, torch.Tensor], x: torch.Tensor):
    """dictionary.py / trainers/*.py `encode` and `decode` of each class, in float64."""
    t = {n: d(v) for n, v in s.items() if v.is_floating_point()}
    if dict_class in ("AutoEncoder", "AutoEncoderNew"):
        bias = t["bias"] if dict_class == "AutoEncoder" else torch.zeros_like(x[0])
        f = relu((x - bias) @ t["encoder.weight"].T + t["encoder.bias"])
        out_bias = t["bias"] if dict_class == "AutoEncoder" else t["decoder.bias"]
        return f, f @ t["decoder.weight"].T + out_bias
    if dict_class == "GatedAutoEncoder":
        x_enc = (x - t["decoder_bias"]) @ t["encoder.weight"].T
        f = (x_enc + t["gate_bias"] > 0).double() * relu(t["r_mag"].exp() * x_enc + t["mag_bias"])
        return f, f @ t["decoder.weight"].T + t["decoder_bias"]
    if dict_class == "JumpReluAutoEncoder":
        pre = x @ t["W_enc"] + t["b_enc"]
        f = relu(pre * (pre > t["threshold"]).double())
        return f, f @ t["W_dec"] + t["b_dec"]
    if dict_class == "MatryoshkaBatchTopKSAE":
        f = relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
        f = f * (f > t["threshold"]).double()
        return f, f @ t["W_dec"] + t["b_dec"]
    post = relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    if dict_class == "BatchTopKSAE":
        f = post * (post > t["threshold"]).double()
    else:  # AutoEncoderTopK: per-row top-k of the post-ReLU activations
        k = int(s["k"])
        idx = post.topk(k, dim=-1).indices
        f = torch.zeros_like(post).scatter(-1, idx, post.gather(-1, idx))
    return f, f @ t["decoder.weight"].T + t["b_dec"]


CLASSES = [
    ("AutoEncoder", "relu"),
    ("AutoEncoderNew", "relu"),
    ("GatedAutoEncoder", "gated"),
    ("JumpReluAutoEncoder", "jumprelu"),
    ("AutoEncoderTopK", "topk"),
    ("BatchTopKSAE", "batchtopk"),
    ("MatryoshkaBatchTopKSAE", "batchtopk"),
]


@pytest.mark.parametrize(("dict_class", "arch"), CLASSES)
@pytest.mark.parametrize("backup", [False, True])
def test_matches_dictionary_learning_math(tmp_path: Path, dict_class: str, arch: str, backup: bool) -> None:
    raw = build_dictionary_learning(tmp_path, dict_class=dict_class, backup=backup)
    cfg, tensors, fmt = read(raw.path)
    assert fmt == "dictionary-learning"
    assert cfg.architecture == arch
    assert cfg.provenance.model == "EleutherAI/pythia-70m-deduped"
    assert cfg.provenance.layer == 3
    assert cfg.provenance.hook == "blocks.3.hook_resid_post"
    if arch == "batchtopk":
        assert cfg.batchtopk_mode == "threshold"
        assert cfg.k == 8
        assert torch.equal(tensors["threshold"], torch.full((64,), 0.15))
    if dict_class == "MatryoshkaBatchTopKSAE":
        assert cfg.provenance.extra["group_sizes"] == [16, 16, 32]
    sae = SAE.from_tensors(cfg, tensors)
    x = inputs(cfg.d_in)
    f_ref, y_ref = dl_ref(dict_class, raw.tensors, x)
    assert 0 < (f_ref != 0).sum() < f_ref.numel()
    assert_matches(sae.encode(x.float()), f_ref, what="encode")
    assert_matches(sae(x.float()), y_ref, what="forward")


def _random(arch: str, **kw) -> SAE:
    sae = SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw))
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        if hasattr(sae, "threshold"):
            sae.threshold.fill_(0.2) if arch == "batchtopk" else sae.threshold.abs_()
    return sae


@pytest.mark.parametrize(
    ("arch", "kw", "dict_class"),
    [
        ("relu", {"apply_b_dec_to_input": True}, "AutoEncoder"),
        ("relu", {}, "AutoEncoderNew"),
        ("gated", {"apply_b_dec_to_input": True}, "GatedAutoEncoder"),
        ("jumprelu", {}, "JumpReluAutoEncoder"),
        ("topk", {"k": 5, "relu_before_topk": True, "apply_b_dec_to_input": True}, "AutoEncoderTopK"),
        ("batchtopk", {"k": 5, "apply_b_dec_to_input": True}, "BatchTopKSAE"),
    ],
)
def test_round_trip_is_bitwise(tmp_path: Path, arch: str, kw: dict, dict_class: str) -> None:
    sae = _random(arch, **kw)
    sae.save_pretrained(tmp_path, format="dictionary-learning")
    assert json.loads((tmp_path / "config.json").read_text())["trainer"]["dict_class"] == dict_class
    cfg, tensors, fmt = read(tmp_path)
    assert fmt == "dictionary-learning"
    assert cfg.architecture == arch
    for name, value in sae.state_tensors().items():
        assert torch.equal(tensors[name], value), name


@pytest.mark.parametrize(
    ("arch", "kw"), [("topk", {"k": 5}), ("gated", {}), ("jumprelu", {"apply_b_dec_to_input": True})]
)
def test_pre_bias_is_added_or_folded_to_fit_the_class(tmp_path: Path, arch: str, kw: dict) -> None:
    sae = _random(arch, **kw)
    sae.save_pretrained(tmp_path, format="dictionary-learning")
    again = SAE.from_pretrained(tmp_path)
    x = inputs(16).float()
    torch.testing.assert_close(again.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again(x), sae(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "kw"), [("abstopk", {"k": 3}), ("relu", {"normalization": "layer_norm"}), ("relu", {"d_out": 8})]
)
def test_refusals(tmp_path: Path, arch: str, kw: dict) -> None:
    with pytest.raises(ConfigError, match="cannot represent"):
        SAE(SAEConfig(d_in=16, d_sae=64, architecture=arch, **kw)).save_pretrained(
            tmp_path, format="dictionary-learning"
        )


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"dict_class": "CrossCoder"}, "trainer.dict_class"),
        ({"activation_dim": "16"}, "activation_dim"),
        ({"dict_size": None}, "dict_size"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, patch: dict, field: str) -> None:
    raw = build_dictionary_learning(tmp_path)
    raw.config["trainer"].update(patch)
    (raw.path / "config.json").write_text(json.dumps(raw.config))
    with pytest.raises(ConfigError, match=r"config\.json") as err:
        read(raw.path)
    assert err.value.field == field


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    raw = build_dictionary_learning(tmp_path, dict_class="GatedAutoEncoder")
    state = torch.load(raw.path / "ae.pt", weights_only=True)
    del state["mag_bias"]
    torch.save(state, raw.path / "ae.pt")
    with pytest.raises(FormatError, match="mag_bias"):
        read(raw.path)


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    raw = build_dictionary_learning(tmp_path)
    torch.save(
        {
            "ae": {"bias": torch.zeros(3)},
            "optimizer": torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1),
        },
        raw.path / "ae.pt",
    )
    with pytest.raises(FormatError, match=r"ae\.pt"):
        read(raw.path)


def test_detection_and_files() -> None:
    assert detect(["trainer_0/ae.pt", "trainer_0/config.json"]) is dictionary_learning
    assert dictionary_learning.files_for("resid_post_layer_3/trainer_0") == [
        "resid_post_layer_3/trainer_0/ae.pt",
        "resid_post_layer_3/trainer_0/config.json",
    ]
