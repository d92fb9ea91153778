"""Training math against float64 references written from the formulas: fused TopK, STEs, AuxK, init."""

from __future__ import annotations

import pytest
import torch

from sae_hub import SAE, SAEConfig
from sae_hub._fused import fused_topk
from sae_hub.train.config import TrainConfig
from sae_hub.train.mechanics import (
    geometric_median,
    lr_factor,
    normalize_decoder,
    project_decoder_grad,
    update_state,
)
from sae_hub.train.objectives import TrainingSAE

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fused_topk_matches_naive_values_and_all_gradients():
    g = torch.Generator().manual_seed(0)
    n, d, m, k = 64, 12, 40, 5
    x = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(d, m, generator=g, dtype=torch.float64, requires_grad=True)
    b = (torch.randn(m, generator=g, dtype=torch.float64) - 6.0).requires_grad_()  # some rows < k positive
    up = torch.randn(n, k, generator=g, dtype=torch.float64)

    values, indices = fused_topk(x, W, b, k)
    dense = torch.relu(x @ W + b)
    ref_vals, _ref_idx = torch.topk(dense, k, dim=-1)
    order = values.argsort(-1, descending=True)
    torch.testing.assert_close(values.gather(-1, order), ref_vals, rtol=0, atol=1e-12)
    torch.testing.assert_close(dense.gather(-1, indices), values, rtol=0, atol=1e-12)
    # gradient of sum(up * values) through the naive computation, matched slot by slot
    (values * up).sum().backward()
    fused_grads = [t.grad.clone() for t in (x, W, b)]
    for t in (x, W, b):
        t.grad = None
    torch.relu(x @ W + b).gather(-1, indices).mul(up).sum().backward()
    for got, ref in zip(fused_grads, (x.grad, W.grad, b.grad), strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    assert (values == 0).any(), "the test must cover rows with fewer than k positive pre-activations"


def _training_sae(arch: str, **cfg_kwargs) -> TrainingSAE:
    export = {"topk": "topk", "batchtopk": "batchtopk", "matryoshka": "batchtopk", "jumprelu": "jumprelu",
              "relu_l1": "relu"}[arch]  # fmt: skip
    cfg = TrainConfig(model=None, hooks=["h"], architecture=arch, d_sae=24, k=3, batch_size=16, total_tokens=16,
                      buffer_tokens=16, **cfg_kwargs)  # fmt: skip
    sae = SAE(SAEConfig(d_in=8, d_sae=24, architecture=export, k=3 if export in ("topk", "batchtopk") else None,
                        apply_b_dec_to_input=True, dtype=torch.float64))  # fmt: skip
    sae.reset_parameters(seed=3)
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.1, generator=torch.Generator().manual_seed(4))
        sae.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(5))
    return TrainingSAE(sae, cfg)


def test_topk_loss_and_auxk_follow_the_formula():
    m = _training_sae("topk", auxk_alpha=0.5, auxk_k=2)
    x = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    dead = torch.zeros(24, dtype=torch.bool)
    dead[[1, 5, 7, 11, 20]] = True
    out = m(x, dead=dead)
    s = m.sae
    pre = (x - s.b_dec) @ s.W_enc + s.b_enc
    v, i = torch.topk(torch.relu(pre), 3, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, i, v)
    recon = f @ s.W_dec + s.b_dec
    mse = ((x - recon) ** 2).sum(-1).mean()
    e = (x - recon).detach()
    pd = torch.relu(pre[:, dead])
    va, ia = torch.topk(pd, 2, dim=-1)
    e_hat = torch.zeros_like(pd).scatter(-1, ia, va) @ s.W_dec[dead]  # no b_dec
    aux = ((e - e_hat) ** 2).sum(-1).mean() / ((e - e.mean(0)) ** 2).sum(-1).mean()
    torch.testing.assert_close(out.loss, mse + 0.5 * aux, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.aux, aux.detach(), rtol=1e-10, atol=1e-12)
    # the residual is detached: the aux term sends no gradient to the live path's b_dec through e
    out.loss.backward()
    grad_ref = torch.autograd.grad(mse + 0.5 * aux, s.b_dec)[0]
    torch.testing.assert_close(s.b_dec.grad, grad_ref, rtol=1e-9, atol=1e-12)


def test_dead_counters_and_batchtopk_threshold_ema():
    """Counters add the step's global tokens and reset where a latent fired; the EMA starts at the first
    batch minimum and then moves by (1 - ema) toward each new one."""
    m = _training_sae("batchtopk")
    cfg = TrainConfig(model=None, hooks=["h"], architecture="batchtopk", d_sae=24, k=3, batch_size=16,
                      total_tokens=16, buffer_tokens=16, threshold_ema=0.9)  # fmt: skip
    gen = torch.Generator().manual_seed(11)
    first = m(torch.randn(16, 8, dtype=torch.float64, generator=gen))
    update_state(m, first, 16, cfg)
    assert torch.equal(m.tokens_since_fired, torch.where(first.fired, 0, 16))
    assert float(m.sae.threshold[0]) == pytest.approx(float(first.min_active))
    second = m(torch.randn(16, 8, dtype=torch.float64, generator=gen))
    update_state(m, second, 16, cfg)
    want = torch.where(second.fired, 0, torch.where(first.fired, 16, 32))
    assert torch.equal(m.tokens_since_fired, want)
    ema = 0.9 * float(first.min_active) + 0.1 * float(second.min_active)
    assert torch.allclose(m.sae.threshold, torch.full((24,), ema, dtype=torch.float64))
    assert torch.equal(m.dead_mask(32), want >= 32)


def test_batchtopk_keeps_the_batch_top_k_times_n():
    m = _training_sae("batchtopk")
    x = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    out = m(x)
    s = m.sae
    acts = torch.relu((x - s.b_dec) @ s.W_enc + s.b_enc)
    cut = acts.flatten().topk(3 * 16).values.min()
    f = acts * (acts >= cut)
    recon = f @ s.W_dec + s.b_dec
    torch.testing.assert_close(out.loss, ((x - recon) ** 2).sum(-1).mean(), rtol=1e-10, atol=1e-12)
    assert float(out.l0) == pytest.approx(3.0)
    assert float(out.min_active) == pytest.approx(float(cut.detach()))


def test_matryoshka_loss_is_the_mean_of_prefix_losses():
    m = _training_sae("matryoshka", matryoshka_groups=[4, 8, 12])
    x = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    out = m(x)
    s = m.sae
    acts = torch.relu((x - s.b_dec) @ s.W_enc + s.b_enc)
    f = acts * (acts >= acts.flatten().topk(48).values.min())
    losses = [((x - (f[:, :end] @ s.W_dec[:end] + s.b_dec)) ** 2).sum(-1).mean() for end in (4, 12, 24)]
    torch.testing.assert_close(out.loss, torch.stack(losses).mean(), rtol=1e-10, atol=1e-12)


def test_jumprelu_straight_through_gradients():
    eps, target = 0.05, 2.0
    m = _training_sae("jumprelu", jumprelu_bandwidth=eps, target_l0=target, l0_coefficient=0.7)
    s = m.sae
    with torch.no_grad():
        s.threshold.uniform_(0.0, 0.3, generator=torch.Generator().manual_seed(9))
    x = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    out = m(x)
    out.loss.backward()
    theta = s.threshold.detach()
    z = ((x - s.b_dec) @ s.W_enc + s.b_enc).detach()
    active = (z > theta).double()
    recon = (z * active) @ s.W_dec.detach() + s.b_dec.detach()
    l0 = active.sum(-1).mean()
    torch.testing.assert_close(
        out.loss.detach(), ((x - recon) ** 2).sum(-1).mean() + 0.7 * (l0 / target - 1) ** 2
    )
    kernel = (((z - theta) / eps).abs() < 0.5).double()
    d_recon_df = -2 * (x - recon) @ s.W_dec.detach().T / x.shape[0]  # d mse / d f
    grad_recon = (d_recon_df * (-(theta / eps) * kernel)).sum(0)
    d_pen_dl0 = 0.7 * 2 * (l0 / target - 1) / target
    grad_l0 = d_pen_dl0 * (-(1 / eps) * kernel).sum(0) / x.shape[0]
    torch.testing.assert_close(s.threshold.grad, grad_recon + grad_l0, rtol=1e-9, atol=1e-12)
    assert kernel.sum() > 0, "some pre-activations must fall inside the bandwidth"


def test_relu_l1_penalty_weights_by_decoder_norm():
    m = _training_sae("relu_l1", l1_coefficient=0.3)
    s = m.sae
    with torch.no_grad():
        s.W_dec.mul_(torch.linspace(0.5, 2.0, 24, dtype=torch.float64)[:, None])
    x = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    out = m(x, sparsity_scale=0.5)
    f = torch.relu((x - s.b_dec) @ s.W_enc + s.b_enc)
    recon = f @ s.W_dec + s.b_dec
    ref = ((x - recon) ** 2).sum(-1).mean() + 0.5 * 0.3 * (f * s.W_dec.norm(dim=-1)).sum(-1).mean()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-12)


def test_decoder_projection_keeps_unit_norm_and_removes_parallel_part():
    m = _training_sae("topk")
    s = m.sae
    s.W_dec.grad = torch.randn_like(s.W_dec)
    project_decoder_grad(m)
    torch.testing.assert_close(
        (s.W_dec.grad * s.W_dec).sum(-1), torch.zeros(24, dtype=torch.float64), atol=1e-12, rtol=0
    )
    with torch.no_grad():
        s.W_dec.mul_(3.0)
    normalize_decoder(m)
    torch.testing.assert_close(s.W_dec.norm(dim=-1), torch.ones(24, dtype=torch.float64))


def test_geometric_median_beats_nearby_points():
    g = torch.Generator().manual_seed(12)
    pts = torch.cat([torch.randn(200, 3, generator=g), torch.full((20, 3), 50.0)])  # outliers pull the mean
    med = geometric_median(pts).double()
    cost = lambda c: (pts.double() - c).norm(dim=-1).sum()  # noqa: E731
    for _ in range(20):
        assert cost(med) <= cost(med + 0.05 * torch.randn(3, generator=g, dtype=torch.float64)) + 1e-9
    assert med.norm() < pts.mean(0).norm()


def test_learning_rate_schedule_and_width_scaling():
    cfg = TrainConfig(model=None, hooks=["h"], d_sae=2**16, batch_size=10, total_tokens=1000, buffer_tokens=10,
                      warmup_steps=10, decay_start=0.5)  # fmt: skip
    assert cfg.learning_rate(2**16) == pytest.approx(2e-4 / 2)
    assert [lr_factor(s, cfg) for s in (0, 9, 49, 50, 75, 99)] == pytest.approx([0.1, 1, 1, 1, 0.5, 0.02])
