"""SAEConfig: validation with typed errors naming the field, and an exact dict round trip."""

from __future__ import annotations

import json

import pytest
import torch

from sae_hub import Provenance, SAEConfig
from sae_hub.config import CONFIG_SCHEMA_VERSION
from sae_hub.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "field", "pattern"),
    [
        ({"architecture": "swish"}, "architecture", r"unknown architecture 'swish'.*jumprelu"),
        ({"architecture": "topk"}, "k", "needs k"),
        ({"architecture": "abstopk"}, "k", "needs k"),
        ({"architecture": "batchtopk", "batchtopk_mode": "topk"}, "k", "needs k"),
        ({"architecture": "topk", "k": 65}, "k", r"1\.\.d_sae=64, got 65"),
        ({"architecture": "topk", "k": 0}, "k", "got 0"),
        ({"architecture": "topk", "k": True}, "k", "got True"),
        ({"batchtopk_mode": "global"}, "batchtopk_mode", "global"),
        ({"normalization": "batch_norm"}, "normalization", "batch_norm"),
        ({"normalization": "layer_norm", "d_out": 8}, "normalization", "d_out == d_in"),
        ({"apply_b_dec_to_input": True, "d_out": 8}, "apply_b_dec_to_input", "d_out == d_in"),
        ({"input_scale": 0.0}, "input_scale", "positive"),
        ({"output_scale": float("nan")}, "output_scale", "finite"),
        ({"dtype": "int8"}, "dtype", r"'int8' is not supported"),
        ({"dtype": torch.int32}, "dtype", "not supported"),
        ({"d_sae": 0}, "d_sae", "positive int"),
    ],
)
def test_invalid_config_raises_typed_error(kwargs: dict, field: str, pattern: str) -> None:
    args = {"d_in": 16, "d_sae": 64, **kwargs}
    with pytest.raises(ConfigError, match=pattern) as info:
        SAEConfig(**args)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_defaults_and_dtype_parsing() -> None:
    cfg = SAEConfig(d_in=8, d_sae=32, dtype="torch.bfloat16")
    assert cfg.d_out == 8
    assert cfg.dtype is torch.bfloat16
    assert cfg.architecture == "relu"
    assert not cfg.is_transcoder
    assert SAEConfig(d_in=8, d_sae=32, d_out=4).is_transcoder


def test_dict_round_trip_is_exact_through_json() -> None:
    cfg = SAEConfig(
        d_in=8,
        d_sae=32,
        d_out=6,
        architecture="topk",
        k=4,
        relu_before_topk=True,
        input_scale=2.5,
        output_scale=0.5,
        skip_connection=True,
        dtype=torch.float16,
        provenance=Provenance(
            model="google/gemma-2-2b", hook="blocks.3.hook_resid_post", layer=3, extra={"a": 1}
        ),
    )
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["format_version"] == CONFIG_SCHEMA_VERSION
    assert data["dtype"] == "float16"
    assert "device" not in data
    assert SAEConfig.from_dict(data) == cfg


def test_from_dict_refuses_unknown_and_mistyped_keys() -> None:
    data = SAEConfig(d_in=8, d_sae=32).to_dict()
    with pytest.raises(ConfigError, match="unknown config keys") as info:
        SAEConfig.from_dict({**data, "archtecture": "relu"})
    assert info.value.field == "archtecture"
    with pytest.raises(ConfigError, match="unknown provenance keys"):
        SAEConfig.from_dict({**data, "provenance": {"modle": "x"}})
    with pytest.raises(ConfigError, match="d_sae must be int") as info:
        SAEConfig.from_dict({**data, "d_sae": "32"})
    assert info.value.field == "d_sae"
    with pytest.raises(ConfigError, match="newer than this sae_hub"):
        SAEConfig.from_dict({**data, "format_version": CONFIG_SCHEMA_VERSION + 1})


def test_replace_validates_again() -> None:
    cfg = SAEConfig(d_in=8, d_sae=32, architecture="topk", k=4)
    assert cfg.replace(k=8).k == 8
    with pytest.raises(ConfigError):
        cfg.replace(k=None)
    assert cfg.with_provenance(hook="h").provenance.hook == "h"
