"""Folds (decoder norm, constant scales, pre-bias) change the parameters but never the forward pass."""

from __future__ import annotations

import pytest
import torch

from sae_hub import SAE, SAEConfig
from sae_hub.errors import ConfigError

D_IN, D_SAE = 16, 64


def _sae(**cfg_kw) -> SAE:
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, **cfg_kw)
    sae = SAE(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=gen) * 3 + 0.2)  # far from unit norm
        if hasattr(sae, "threshold"):
            sae.threshold.abs_()
    return sae


def _x() -> torch.Tensor:
    return torch.randn(32, D_IN, generator=torch.Generator().manual_seed(1)) * 2 + 0.3


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    rel = (a - b).norm() / b.norm()
    assert rel <= 1e-5, rel


FOLDABLE_NORM = [
    {"architecture": "relu", "apply_b_dec_to_input": True},
    {"architecture": "jumprelu"},
    {"architecture": "batchtopk"},
    {"architecture": "gated", "apply_b_dec_to_input": True},
    {"architecture": "jumprelu", "d_out": 8, "skip_connection": True},
]


@pytest.mark.parametrize("kw", FOLDABLE_NORM, ids=lambda kw: "-".join(map(str, kw.values())))
def test_fold_W_dec_norm_keeps_forward(kw: dict) -> None:
    sae = _sae(**kw)
    x = _x()
    before = sae(x)
    f_before = sae.encode(x)
    norms = sae.W_dec.norm(dim=-1).detach()
    sae.fold_W_dec_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE), rtol=1e-5, atol=1e-5)
    _assert_same(sae(x), before)
    # Latent magnitudes are rescaled by the old decoder norms, the set of active latents is unchanged.
    torch.testing.assert_close(sae.encode(x), f_before * norms, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["topk", "abstopk"])
def test_fold_W_dec_norm_refuses_topk(arch: str) -> None:
    with pytest.raises(ConfigError, match="top-k"):
        _sae(architecture=arch, k=4).fold_W_dec_norm()


SCALED = [
    {"architecture": "relu", "input_scale": 2.5, "output_scale": 2.5},
    {"architecture": "jumprelu", "input_scale": 3.0, "output_scale": 0.5},
    {"architecture": "topk", "k": 6, "input_scale": 0.1, "output_scale": 0.1, "apply_b_dec_to_input": True},
    {"architecture": "jumprelu", "input_scale": 4.0, "output_scale": 2.0, "apply_b_dec_to_input": True},
    {"architecture": "gated", "input_scale": 1.7, "output_scale": 0.9, "apply_b_dec_to_input": True},
    {"architecture": "relu", "d_out": 8, "skip_connection": True, "input_scale": 2.0, "output_scale": 5.0},
]


@pytest.mark.parametrize("kw", SCALED, ids=lambda kw: "-".join(map(str, kw.values())))
def test_fold_normalization_keeps_forward(kw: dict) -> None:
    sae = _sae(**kw)
    x = _x()
    before = sae(x)
    sae.fold_normalization()
    assert sae.cfg.input_scale == sae.cfg.output_scale == 1.0
    _assert_same(sae(x), before)


def test_fold_normalization_refuses_per_token_normalisation() -> None:
    sae = _sae(architecture="relu", normalization="layer_norm", input_scale=2.0, output_scale=2.0)
    with pytest.raises(ConfigError, match="layer_norm"):
        sae.fold_normalization()


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "gated"])
def test_fold_pre_bias_keeps_forward(arch: str) -> None:
    sae = _sae(architecture=arch, apply_b_dec_to_input=True)
    x = _x()
    before = sae(x)
    sae.fold_pre_bias()
    assert not sae.cfg.apply_b_dec_to_input
    _assert_same(sae(x), before)


def test_folds_compose_and_are_idempotent() -> None:
    sae = _sae(architecture="jumprelu", input_scale=2.0, output_scale=3.0, apply_b_dec_to_input=True)
    x = _x()
    before = sae(x)
    sae.fold_normalization().fold_W_dec_norm().fold_pre_bias().fold_normalization()
    _assert_same(sae(x), before)
