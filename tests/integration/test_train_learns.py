"""Every architecture recovers known sparse ground-truth features from synthetic activations."""

from __future__ import annotations

import pytest
import torch

from sae_hub import SAE
from sae_hub.train import TrainConfig, train
from sae_hub.train.activations import TensorSource

D_IN, N_FEATURES, ACTIVE = 32, 48, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that are sums of ACTIVE random unit features with magnitudes in [0.5, 2.5], plus an offset."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(N_FEATURES, D_IN, generator=g)
    features /= features.norm(dim=-1, keepdim=True)
    which = torch.rand(n, N_FEATURES, generator=g).argsort(-1)[:, :ACTIVE]
    mags = torch.rand(n, ACTIVE, generator=g) * 2 + 0.5
    offset = 0.3 * torch.randn(D_IN, generator=g)
    return (mags[..., None] * features[which]).sum(1) + offset, features


def mean_max_cosine(sae: SAE, features: torch.Tensor) -> float:
    """For each true feature, the best cosine with a decoder row, averaged."""
    rows = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=-1, keepdim=True)
    return float((features @ rows.T).max(dim=1).values.mean())


ARCHS = {
    "topk": {},
    "batchtopk": {},
    "matryoshka": {"matryoshka_groups": [16, 32, 48]},
    "jumprelu": {"target_l0": float(ACTIVE)},
    "relu_l1": {"l1_coefficient": 0.05},
    "topk-bf16": {"mixed_precision": "bf16"},  # autocast, fp32 master weights, no GradScaler
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_architecture_recovers_ground_truth_features(arch, tmp_path):
    x, features = synthetic(40_000)
    source = TensorSource(x, block_tokens=8192, eval_tokens=4096, hooks=["synthetic"])
    cfg = TrainConfig(model=None, hooks=["synthetic"], architecture=arch.removesuffix("-bf16"), d_sae=96, k=ACTIVE, batch_size=256,
                      total_tokens=256 * 300, buffer_tokens=8192, eval_tokens=4096, warmup_steps=20,
                      dead_after_tokens=10_000, lr=3e-3, output_dir=str(tmp_path), log_every=50,
                      **ARCHS[arch])  # fmt: skip
    sae = train(cfg, source=source)
    assert mean_max_cosine(sae, features) >= 0.9
    metrics = sae.cfg.provenance.extra["metrics"]
    assert metrics["fvu"] < 0.2
    if arch != "relu_l1":  # L0 is set by k or target_l0
        assert metrics["l0"] == pytest.approx(ACTIVE, rel=0.35)
    # the exported SAE reads raw activations: its own forward reproduces the recorded FVU
    held_out = x[:4096]
    with torch.no_grad():
        recon = sae(held_out)
    fvu = float((held_out - recon).pow(2).sum() / (held_out - held_out.mean(0)).pow(2).sum())
    assert fvu == pytest.approx(metrics["fvu"], rel=1e-4)
    reloaded = SAE.from_pretrained(tmp_path / "saes" / "synthetic")
    assert torch.equal(reloaded.W_enc, sae.W_enc)
    assert reloaded.cfg.architecture == sae.cfg.architecture
