"""Training forward passes and losses of every architecture, wrapped around the canonical `SAE`.

Inputs are normalised activations (unit mean squared norm); the reconstruction loss is the mean over
tokens of the summed squared error. TopK, BatchTopK and Matryoshka add the AuxK loss of Gao et al. on
dead latents (residual detached, decoded without `b_dec`, normalised by the residual's variance);
JumpReLU uses straight-through estimators with a rectangle kernel (Rajamanoharan et al.); ReLU + L1
penalises `sum_i f_i ||W_dec[i]||`. `TrainingSAE.forward` returns a `StepOutput`; the trainer applies
the stateful updates (dead counters, BatchTopK threshold) after the optimiser step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sae_hub import _sparse
from sae_hub._fused import fused_topk
from sae_hub.sae import SAE
from sae_hub.train.config import TrainConfig


class StepOutput(NamedTuple):
    """Loss and statistics of one training forward pass for one SAE."""

    loss: Tensor
    """Total loss (reconstruction + penalties), differentiable."""
    mse: Tensor
    """Mean over tokens of the summed squared reconstruction error (detached)."""
    fvu: Tensor
    """Fraction of variance unexplained on this batch (detached)."""
    l0: Tensor
    """Mean active latents per token (detached)."""
    aux: Tensor
    """Auxiliary loss (AuxK or sparsity penalty) before weighting (detached)."""
    fired: Tensor
    """Bool `[d_sae]`: latents that fired on this batch."""
    min_active: Tensor
    """Smallest selected activation (BatchTopK threshold statistic); +inf when none."""


def _rect(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """`z * H(z - theta)`; d/dtheta := -(theta / eps) K((z - theta) / eps), d/dz := H(z - theta)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        z, theta = ctx.saved_tensors
        grad_z = grad * (z > theta)
        grad_theta = -(theta / ctx.eps) * _rect((z - theta) / ctx.eps) * grad
        return grad_z, grad_theta.sum(0), None


class _Step(torch.autograd.Function):
    """`H(z - theta)`; d/dtheta := -(1 / eps) K((z - theta) / eps), no gradient to z."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        z, theta = ctx.saved_tensors
        grad_theta = -(1.0 / ctx.eps) * _rect((z - theta) / ctx.eps) * grad
        return None, grad_theta.sum(0), None


def _sum_sq(e: Tensor) -> Tensor:
    return e.pow(2).sum(-1).mean()


def _variance(x: Tensor) -> Tensor:
    return (x - x.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)


class TrainingSAE(nn.Module):
    """One SAE under training: the architecture's forward, loss and firing statistics."""

    def __init__(self, sae: SAE, cfg: TrainConfig) -> None:
        super().__init__()
        self.sae = sae
        self.arch = cfg.architecture
        self.k = cfg.k
        self.auxk_alpha = cfg.auxk_alpha
        self.auxk_k = cfg.auxk_k or max(sae.cfg.d_in // 2, 1)
        self.l1_coefficient = cfg.l1_coefficient
        self.l0_coefficient = cfg.l0_coefficient
        self.target_l0 = cfg.target_l0
        self.bandwidth = cfg.jumprelu_bandwidth
        self.fused = cfg.fused_topk
        self.groups = cfg.groups(sae.cfg.d_sae) if self.arch == "matryoshka" else []
        if hasattr(sae, "threshold") and self.arch != "jumprelu":
            sae.threshold.requires_grad_(False)  # an EMA statistic, not a learned parameter
        # Tokens since each latent last fired; the trainer updates it with globally reduced counts.
        self.register_buffer("tokens_since_fired", torch.zeros(sae.cfg.d_sae, dtype=torch.int64))

    def dead_mask(self, dead_after_tokens: int) -> Tensor:
        """Bool `[d_sae]`: latents silent for at least `dead_after_tokens` tokens."""
        return self.tokens_since_fired >= dead_after_tokens

    def forward(self, x: Tensor, *, sparsity_scale: float = 1.0, dead: Tensor | None = None) -> StepOutput:
        """Encode and decode the batch `x [N, d_in]`; return the loss and statistics."""
        sae = self.sae
        x = x.to(sae.W_enc.dtype)
        x_c = x - sae.b_dec
        inf = x.new_tensor(float("inf"))
        if self.arch == "topk":
            if self.fused:
                values, indices = fused_topk(x_c, sae.W_enc, sae.b_enc, self.k)
            else:
                values, indices = torch.topk(
                    torch.relu(torch.addmm(sae.b_enc, x_c, sae.W_enc)), self.k, dim=-1
                )
            recon = _sparse.gather_decode(values, indices, sae.W_dec) + sae.b_dec
            fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=x.device)
            fired[indices[values > 0]] = True
            return self._finish(x, x_c, recon, recon_loss=_sum_sq(x - recon), l0=(values > 0).sum(-1),
                                fired=fired, dead=dead, min_active=inf)  # fmt: skip
        pre = torch.addmm(sae.b_enc, x_c, sae.W_enc)
        if self.arch in ("batchtopk", "matryoshka"):
            return self._batchtopk(x, x_c, pre, dead)
        if self.arch == "jumprelu":
            f = _JumpReLU.apply(pre, sae.threshold, self.bandwidth)
            # dense decode: the threshold's estimator needs dL/df at inactive latents inside the window too
            recon = f @ sae.W_dec + sae.b_dec
            l0 = _Step.apply(pre, sae.threshold, self.bandwidth).sum(-1).mean()
            penalty = (l0 / self.target_l0 - 1).pow(2) if self.target_l0 is not None else l0
            mse = _sum_sq(x - recon)
            return self._stats(x, mse, mse + sparsity_scale * self.l0_coefficient * penalty, penalty,
                               (f > 0).sum(-1), f.detach() > 0, inf)  # fmt: skip
        f = torch.relu(pre)  # relu_l1
        recon = _sparse.decode_mostly_zero(f, sae.W_dec) + sae.b_dec
        l1 = (f * sae.W_dec.norm(dim=-1)).sum(-1).mean()
        mse = _sum_sq(x - recon)
        return self._stats(x, mse, mse + sparsity_scale * self.l1_coefficient * l1, l1,
                           (f > 0).sum(-1), f.detach() > 0, inf)  # fmt: skip

    def _batchtopk(self, x: Tensor, x_c: Tensor, pre: Tensor, dead: Tensor | None) -> StepOutput:
        """Keep the k*N largest activations of the whole batch (global, also for Matryoshka)."""
        sae, n_tok, d_sae = self.sae, x.shape[0], self.sae.cfg.d_sae
        acts = torch.relu(pre).reshape(-1)
        values, flat = torch.topk(acts, min(self.k * n_tok, acts.numel()), sorted=False)
        keep = values > 0
        values, flat = values[keep], flat[keep]
        rows, cols = flat // d_sae, flat % d_sae
        order = torch.argsort(rows, stable=True)
        rows, cols, values = rows[order], cols[order], values[order]
        counts = torch.bincount(rows, minlength=n_tok)
        offsets = torch.cumsum(counts, 0) - counts
        fired = torch.zeros(d_sae, dtype=torch.bool, device=x.device)
        fired[cols] = True
        min_active = values.detach().min() if values.numel() else x.new_tensor(float("inf"))
        if self.arch == "batchtopk":
            recon = (
                F.embedding_bag(cols, sae.W_dec, offsets, mode="sum", per_sample_weights=values) + sae.b_dec
            )
            recon_loss = _sum_sq(x - recon)
        else:  # Matryoshka: mean of the prefix losses, each prefix adding one group of latents
            recon = sae.b_dec.expand_as(x)
            losses, start = [], 0
            for size in self.groups:
                in_group = (cols >= start) & (cols < start + size)
                part = F.embedding_bag(
                    cols, sae.W_dec, offsets, mode="sum", per_sample_weights=values * in_group
                )
                recon = recon + part
                losses.append(_sum_sq(x - recon))
                start += size
            recon_loss = torch.stack(losses).mean()
        return self._finish(x, x_c, recon, recon_loss=recon_loss, l0=counts, fired=fired, dead=dead,
                            min_active=min_active)  # fmt: skip

    def _finish(self, x: Tensor, x_c: Tensor, recon: Tensor, *, recon_loss: Tensor, l0: Tensor,
                fired: Tensor, dead: Tensor | None, min_active: Tensor) -> StepOutput:  # fmt: skip
        """Add the AuxK loss: dead latents' top-k reconstructs the detached residual, without b_dec."""
        aux = x.new_zeros(())
        if dead is not None and self.auxk_alpha > 0 and bool(dead.any()):
            sae = self.sae
            dead_idx = dead.nonzero().squeeze(-1)
            k_aux = min(self.auxk_k, dead_idx.numel())
            pre_dead = torch.addmm(sae.b_enc[dead_idx], x_c, sae.W_enc[:, dead_idx])
            vals, j = torch.topk(torch.relu(pre_dead), k_aux, dim=-1)
            e_hat = _sparse.gather_decode(vals, j, sae.W_dec[dead_idx])
            residual = (x - recon).detach()
            aux = _sum_sq(residual - e_hat) / _variance(residual)
        mse = _sum_sq(x - recon).detach()
        return self._stats(x, mse, recon_loss + self.auxk_alpha * aux, aux, l0, fired, min_active)

    @staticmethod
    def _stats(x: Tensor, mse: Tensor, loss: Tensor, aux: Tensor, l0: Tensor, fired: Tensor,
               min_active: Tensor) -> StepOutput:  # fmt: skip
        if fired.ndim == 2:
            fired = fired.any(0)
        mse = mse.detach()
        return StepOutput(loss, mse, mse / _variance(x.detach()), l0.float().mean().detach(), aux.detach(),
                          fired, min_active)  # fmt: skip


class SAEGroup(nn.Module):
    """The SAEs of one run (one per hook) as one module, so one `prepare` and one backward serve all."""

    def __init__(self, saes: list[TrainingSAE]) -> None:
        super().__init__()
        self.members = nn.ModuleList(saes)

    def forward(self, xs: list[Tensor], *, sparsity_scale: float = 1.0,
                dead: list[Tensor] | None = None) -> list[StepOutput]:  # fmt: skip
        """Run every member on its own hook's batch."""
        dead = dead or [None] * len(self.members)  # type: ignore[list-item]
        return [
            m(x, sparsity_scale=sparsity_scale, dead=d)
            for m, x, d in zip(self.members, xs, dead, strict=True)
        ]
