"""Training mechanics shared by every architecture: initialisation, the decoder-norm constraint, the
learning-rate schedule, and the stateful updates after each optimiser step (dead-latent counters,
the BatchTopK inference threshold), reduced across processes so every rank holds the same state.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from sae_hub.train import sharding
from sae_hub.train.config import TrainConfig
from sae_hub.train.objectives import StepOutput, TrainingSAE


@torch.no_grad()
def geometric_median(points: Tensor, *, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the summed Euclidean distance to `points [N, d]`."""
    points = points.double()
    median = points.mean(0)
    for _ in range(iters):
        dist_ = (points - median).norm(dim=-1).clamp_min(1e-12)
        weights = 1.0 / dist_
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - median).norm() <= tol * max(float(median.norm()), 1.0):
            median = new
            break
        median = new
    return median.float()


@torch.no_grad()
def initialize(member: TrainingSAE, sample: Tensor, cfg: TrainConfig) -> None:
    """Set `b_dec` from a data sample and the architecture's threshold; the decoder is already unit-norm
    and the encoder its transpose (`SAE.reset_parameters`)."""
    sae = member.sae
    if cfg.b_dec_init == "geometric_median":
        sae.b_dec.copy_(geometric_median(sample))
    elif cfg.b_dec_init == "mean":
        sae.b_dec.copy_(sample.float().mean(0))
    if cfg.architecture == "jumprelu":
        sae.threshold.fill_(cfg.jumprelu_init_threshold)


@torch.no_grad()
def project_decoder_grad(member: TrainingSAE) -> None:
    """Remove the gradient component parallel to each (unit) decoder row, so steps keep the norm."""
    w, g = member.sae.W_dec, member.sae.W_dec.grad
    if g is not None:
        g -= (g * w).sum(-1, keepdim=True) / (w * w).sum(-1, keepdim=True).clamp_min(1e-30) * w


@torch.no_grad()
def normalize_decoder(member: TrainingSAE) -> None:
    """Rescale every decoder row to unit norm."""
    w = member.sae.W_dec
    w /= w.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, constant, then linear decay to 0 over the last `1 - decay_start` of training."""
    total = cfg.steps
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    decay_from = int(cfg.decay_start * total)
    if step >= decay_from and total > decay_from:
        return warm * max(0.0, (total - step) / (total - decay_from))
    return warm


def sparsity_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up factor of the L1 / L0 penalty."""
    return min(1.0, (step + 1) / cfg.sparsity_warmup_steps) if cfg.sparsity_warmup_steps else 1.0


def _all_reduce(t: Tensor, op: dist.ReduceOp) -> Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=op)
    return t


@torch.no_grad()
def update_state(member: TrainingSAE, out: StepOutput, global_tokens: int, cfg: TrainConfig) -> None:
    """After a step: advance dead counters (fired anywhere counts) and the BatchTopK threshold EMA."""
    fired = _all_reduce(out.fired.to(torch.int32), dist.ReduceOp.MAX).bool()
    member.tokens_since_fired += global_tokens
    member.tokens_since_fired[fired] = 0
    if cfg.architecture in ("batchtopk", "matryoshka"):
        theta = member.sae.threshold
        batch_min = _all_reduce(out.min_active.detach().clone().float(), dist.ReduceOp.MIN)
        if torch.isfinite(batch_min):  # python floats below: theta may be sharded (FSDP), batch_min is not
            if bool((sharding.full(theta) == 0).all()):  # the first observation initialises the EMA
                theta.fill_(batch_min.item())
            else:
                theta.mul_(cfg.threshold_ema).add_((1 - cfg.threshold_ema) * batch_min.item())
