"""Held-out evaluation of a trained SAE on raw activations: FVU, explained variance, MSE, L0, dead %."""

from __future__ import annotations

import torch
from torch import Tensor

from sae_hub.sae import SAE

_CHUNK = 4096


@torch.no_grad()
def activation_metrics(sae: SAE, x: Tensor) -> dict[str, float]:
    """Metrics of `sae` on held-out activations `x [N, d_in]` (raw, un-normalised).

    FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2; L0 = mean active latents per token; dead % =
    share of latents that never fire on these tokens.
    """
    if x.shape[0] == 0:
        return {}
    x = x.to(sae.device, torch.float32)
    mean = x.mean(0)
    err = var = l0 = 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=sae.device)
    for start in range(0, x.shape[0], _CHUNK):
        chunk = x[start : start + _CHUNK]
        f = sae.encode(chunk.to(sae.dtype))
        recon = sae.decode(f).float()
        err += float((chunk - recon).pow(2).sum())
        var += float((chunk - mean).pow(2).sum())
        active = f != 0
        l0 += float(active.sum())
        fired |= active.any(0)
    fvu = err / max(var, 1e-30)
    return {
        "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "mse": err / x.shape[0],
        "l0": l0 / x.shape[0],
        "dead_pct": 100.0 * float((~fired).float().mean()),
        "eval_tokens": int(x.shape[0]),
    }
