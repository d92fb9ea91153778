"""Held-out evaluation of a trained SAE: FVU, explained variance, MSE, L0 and dead % on raw activations,
and, when the model is at hand, what splicing the SAE in does to the LM loss (`sae_hub.eval`)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from sae_hub.sae import SAE
from sae_hub.train.config import TrainConfig
from sae_hub.train.text import iter_documents

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


def spliced_metrics(model: Any, tokenizer: Any, sae: SAE, hook: str, cfg: TrainConfig) -> dict[str, float]:
    """CE loss recovered, LM-loss increase and KL with the SAE spliced in, on the first `eval_texts`
    documents of the text source (the stream's head, which training never sees)."""
    from sae_hub.eval import evaluate

    texts = list(itertools.islice(iter_documents(cfg), cfg.eval_texts))
    device = next(model.parameters()).device
    result = evaluate(model, tokenizer, sae.to(device), texts, hook=hook, max_length=cfg.context_size,
                      exclude_special_tokens=cfg.exclude_special_tokens)  # fmt: skip
    sae.to("cpu")
    return {"ce_loss_recovered": result.ce_loss_recovered, "delta_lm_loss": result.delta_lm_loss,
            "kl_div": result.kl_div, "ce_loss_clean": result.ce_loss_clean}  # fmt: skip
