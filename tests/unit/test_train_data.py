"""Training config validation and the text -> token window stream (BOS policies, sources)."""

from __future__ import annotations

import json

import pytest

from sae_hub.errors import ConfigError
from sae_hub.train.config import TrainConfig
from sae_hub.train.text import iter_documents, iter_windows

tokenizers = pytest.importorskip("tokenizers")
from fixtures.tiny_models import byte_tokenizer  # noqa: E402

BASE = dict(model=None, hooks=["blocks.0.hook_resid_post"], d_sae=64, batch_size=64, total_tokens=640,
            buffer_tokens=256)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"architecture": "gated_l1"}, "architecture"),
        ({"hooks": []}, "hooks"),
        ({"hooks": ["a", "a"]}, "hooks"),
        ({"d_sae": None}, "d_sae"),
        ({"expansion_factor": 4}, "d_sae"),
        ({"k": 0}, "k"),
        ({"k": 65}, "k"),
        ({"batch_size": 512}, "buffer_tokens"),
        ({"total_tokens": 10}, "total_tokens"),
        ({"lr": -1.0}, "lr"),
        ({"threshold_ema": 1.0}, "threshold_ema"),
        ({"bos_policy": "always"}, "bos_policy"),
        ({"mixed_precision": "fp16"}, "mixed_precision"),
        ({"log_with": ["mlflow"]}, "log_with"),
        ({"matryoshka_groups": [0, 64]}, "matryoshka_groups"),
        ({"adam_betas": [0.9, 1.5]}, "adam_betas"),
        ({"target_l0": 0}, "target_l0"),
        ({"model_dtype": "int8"}, "model_dtype"),
    ],
)
def test_bad_values_name_the_field(change, field):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**(BASE | change))
    assert err.value.field == field
    assert field.split("_")[0] in str(err.value)


def test_file_forms_round_trip_and_refuse_typos(tmp_path):
    cfg = TrainConfig(**(BASE | {"architecture": "matryoshka", "matryoshka_groups": [16, 48]}))
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    (tmp_path / "c.yaml").write_text("hook: blocks.1.hook_resid_post\nd_sae: 64\nbatch_size: 64\n"
                                     "total_tokens: 640\nbuffer_tokens: 256\n")  # fmt: skip
    assert TrainConfig.load(tmp_path / "c.yaml").hooks == ["blocks.1.hook_resid_post"]
    (tmp_path / "typo.yaml").write_text("hooks: [a]\nd_sae: 64\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate") as err:
        TrainConfig.load(tmp_path / "typo.yaml")
    assert err.value.field == "learning_rate"
    assert "typo.yaml" in str(err.value)
    (tmp_path / "bad.yaml").write_text("hooks: [a\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.load(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="matryoshka_groups sum to 64"):
        cfg.replace(d_sae=None, expansion_factor=2).groups(128)


def _cfg(tmp_path, policy: str, **kw) -> TrainConfig:
    return TrainConfig(**(BASE | {"dataset": str(tmp_path), "context_size": 8, "bos_policy": policy} | kw))


def test_window_policies(tmp_path):
    (tmp_path / "a.txt").write_text("abcdef\n\nghij")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "klmnopqrstu"}) + "\n\n")
    tok = byte_tokenizer()
    bos = tok.bos_token_id
    assert list(iter_documents(_cfg(tmp_path, "window"))) == ["abcdef", "ghij", "klmnopqrstu"]
    ids = {c: tok(c, add_special_tokens=False)["input_ids"][0] for c in "abcdefghijklmnopqrstu"}
    stream = [
        bos,
        *[ids[c] for c in "abcdef"],
        bos,
        *[ids[c] for c in "ghij"],
        bos,
        *[ids[c] for c in "klmnopqrstu"],
    ]
    windows = list(iter_windows(_cfg(tmp_path, "window"), tok, cycle=False))
    assert all(len(w) == 8 and w[0] == bos for w in windows)
    assert [t for w in windows for t in w[1:]] == stream[: 7 * len(windows)]
    packed = list(iter_windows(_cfg(tmp_path, "document"), tok, cycle=False))
    assert [t for w in packed for t in w] == stream[: 8 * len(packed)]
    assert len(packed) == 3
    plain = list(iter_windows(_cfg(tmp_path, "none"), tok, cycle=False))
    assert bos not in [t for w in plain for t in w]
    assert len(plain) == 2
    cycled = iter_windows(_cfg(tmp_path, "none"), tok)
    assert [next(cycled) for _ in range(4)] == plain * 2
    # the held-out head is left out of every epoch, not just the first
    training = iter_windows(_cfg(tmp_path, "document"), tok, skip=1)
    assert [next(training) for _ in range(4)] == packed[1:] * 2


def test_text_source_errors(tmp_path):
    with pytest.raises(ConfigError, match="matches no"):
        list(iter_documents(_cfg(tmp_path, "window", dataset=str(tmp_path / "missing.txt"))))
    (tmp_path / "x.jsonl").write_text(json.dumps({"body": "no text field"}) + "\n")
    with pytest.raises(ConfigError, match="'text'") as err:
        list(iter_documents(_cfg(tmp_path, "window")))
    assert err.value.field == "text_field"
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "ab"}) + "\n")
    with pytest.raises(ConfigError, match="holds 0 windows of 8 tokens; none is left"):
        next(iter_windows(_cfg(tmp_path, "window"), byte_tokenizer()))
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "abcdefghijklmn"}) + "\n")
    with pytest.raises(
        ConfigError, match="holds 2 windows of 8 tokens; none is left for training after the 2 held out"
    ) as err:
        next(iter_windows(_cfg(tmp_path, "window"), byte_tokenizer(), skip=2))
    assert err.value.field == "dataset"


def test_shipped_example_config_is_valid():
    import importlib.resources

    path = importlib.resources.files("sae_hub") / "train" / "examples" / "smollm2-135m-topk.yaml"
    cfg = TrainConfig.load(str(path))
    assert cfg.model == "embedded"
    assert cfg.hooks == ["blocks.15.hook_resid_post"]
    assert cfg.width(576) == 9216
    assert cfg.learning_rate(9216) == pytest.approx(2e-4 / (9216 / 2**14) ** 0.5)
