"""Evaluate an SAE spliced into its model: reconstruction, sparsity, and what splicing does to the LM loss.

Definitions (tokens = non-padding positions, special tokens excluded from activation metrics by default):
- mse: mean over tokens and dimensions of (x - x̂)²; fvu: Σ‖x - x̂‖² / Σ‖x - x̄‖² with x̄ the mean over
  all tokens; explained_variance = 1 - fvu; cosine_similarity: mean over tokens of cos(x, x̂);
- l0: active latents per token (mean and histogram); feature density: fraction of tokens on which a latent
  is active; dead latents never fire, dense latents fire on more than `dense_threshold` of tokens;
- ce_loss_clean / spliced / zero_ablated: next-token cross-entropy with the model untouched, with the
  activation replaced by the reconstruction (no error term), and replaced by zeros;
  ce_loss_recovered = (zero - spliced) / (zero - clean); delta_lm_loss = spliced - clean;
  kl_div: mean over predicted positions of KL(clean ‖ spliced) of the next-token distributions.
For transcoders x̂ is compared with the activation at the output hook, where the replacement happens.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from huggingface_hub.utils import tqdm
from torch import Tensor, nn

from sae_hub.errors import ConfigError
from sae_hub.splice import _output_point, check_width, resolve_sae_hook, splice

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from sae_hub.sae import SAE

logger = logging.getLogger(__name__)

L0_BINS = 20
DENSITY_LOG10_EDGES = [float(e) for e in range(-8, 1)]  # 1e-8 .. 1, plus a bin for dead latents


@dataclass(kw_only=True)
class EvalResult:
    """Metrics of one SAE on one model and text set (see the module docstring for definitions)."""

    hook: str
    n_sequences: int
    n_tokens: int
    """Tokens used for the activation metrics."""
    n_predictions: int
    """Next-token predictions used for the CE and KL metrics."""
    mse: float
    fvu: float
    explained_variance: float
    cosine_similarity: float
    l0_mean: float
    l0_histogram: list[int]
    l0_bin_edges: list[float]
    dead_latents: int
    dense_latents: int
    dense_threshold: float
    ce_loss_clean: float
    ce_loss_spliced: float
    ce_loss_zero_ablated: float
    ce_loss_recovered: float
    delta_lm_loss: float
    kl_div: float
    feature_density: Tensor = field(repr=False)
    """Per-latent firing frequency `[d_sae]` (kept out of `to_dict`; summarised by the histogram)."""

    def density_histogram(self) -> dict[str, list[float] | int]:
        """Counts of latents per log10-density bin (edges 1e-8 .. 1) and the dead-latent count."""
        live = self.feature_density[self.feature_density > 0].double().log10().clamp(min=-8)
        counts = torch.histc(live, bins=len(DENSITY_LOG10_EDGES) - 1, min=-8, max=0) if live.numel() else None
        return {
            "log10_edges": DENSITY_LOG10_EDGES,
            "counts": [int(c) for c in counts]
            if counts is not None
            else [0] * (len(DENSITY_LOG10_EDGES) - 1),
            "dead": self.dead_latents,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return every metric as plain JSON values (NaN stays NaN)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "feature_density"}
        out["feature_density_histogram"] = self.density_histogram()
        return out


@dataclass
class _Sums:
    """Streaming float64 sums over batches."""

    n_tok: int = 0
    sq_err: float = 0.0
    x_sum: Tensor | None = None
    x_sq: float = 0.0
    cos: float = 0.0
    l0: list[Tensor] = field(default_factory=list)
    fired: Tensor | None = None
    n_pred: int = 0
    ce: dict[str, float] = field(default_factory=lambda: {"clean": 0.0, "spliced": 0.0, "zero": 0.0})
    kl: float = 0.0


def _recorder(store: dict[str, Tensor], key: str) -> Callable[[Tensor], None]:
    def record(x: Tensor) -> None:
        store[key] = x.detach()

    return record


def _next_token_terms(logits: Tensor, ids: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Per valid prediction: cross-entropy and log-probabilities (float32), for positions 0..T-2."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)[valid]
    ce = -logp.gather(-1, ids[:, 1:][valid][:, None])[:, 0]
    return ce, logp


@torch.no_grad()
def evaluate(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sae: SAE,
    texts: Sequence[str],
    *,
    hook: str | None = None,
    batch_size: int = 8,
    max_length: int = 128,
    exclude_special_tokens: bool = True,
    dense_threshold: float = 0.1,
) -> EvalResult:
    """Evaluate `sae` at its hook on `model` over `texts`; see the module docstring for the metrics.

    Example: `evaluate(model, tokenizer, sae, ["The cat sat on the mat."]).fvu`.
    """
    if not texts:
        raise ConfigError("evaluate needs at least one text", field="texts")
    if batch_size <= 0 or max_length <= 1:
        raise ConfigError("batch_size must be > 0 and max_length > 1", field="batch_size")
    point = resolve_sae_hook(model, sae, hook)
    out_point = _output_point(model, sae) or point
    device = next(model.parameters()).device
    special = torch.tensor(tokenizer.all_special_ids if exclude_special_tokens else [], dtype=torch.long)
    sums = _Sums()
    batches = range(0, len(texts), batch_size)
    for start in tqdm(batches, desc="evaluate", unit="batch", total=len(batches), disable=len(batches) < 4):
        enc = tokenizer(
            list(texts[start : start + batch_size]),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()
        store: dict[str, Tensor] = {}
        handles = [point.register(_recorder(store, "x"))]
        if out_point is not point:
            handles.append(out_point.register(_recorder(store, "y")))
        try:
            logits = model(input_ids=ids, attention_mask=mask.long()).logits
        finally:
            for h in handles:
                h.remove()
        valid = mask[:, :-1] & mask[:, 1:]
        ce_clean, logp_clean = _next_token_terms(logits, ids, valid)
        with splice(model, {point.name: sae}, error_term=False, cache_features=False):
            logits = model(input_ids=ids, attention_mask=mask.long()).logits
        ce_spliced, logp_spliced = _next_token_terms(logits, ids, valid)
        sums.kl += float((logp_clean.exp() * (logp_clean - logp_spliced)).double().sum())
        del logp_clean, logp_spliced
        zero = out_point.register(torch.zeros_like)
        try:
            logits = model(input_ids=ids, attention_mask=mask.long()).logits
        finally:
            zero.remove()
        ce_zero, _ = _next_token_terms(logits, ids, valid)
        del logits
        sums.n_pred += int(valid.sum())
        sums.ce["clean"] += float(ce_clean.double().sum())
        sums.ce["spliced"] += float(ce_spliced.double().sum())
        sums.ce["zero"] += float(ce_zero.double().sum())

        keep = mask & ~torch.isin(ids.cpu(), special).to(device)
        x = store["x"][keep]
        check_width(point, x.shape[-1], sae.cfg.d_in, "d_in")
        _accumulate_activations(sums, sae, x, store.get("y", store["x"])[keep])
    return _result(sums, point.name, len(texts), dense_threshold)


def _accumulate_activations(sums: _Sums, sae: SAE, x: Tensor, target: Tensor) -> None:
    f = sae.encode(x.to(sae.device))
    recon = sae(x.to(sae.device)).double()
    t = target.to(sae.device).double()
    sums.n_tok += t.shape[0]
    sums.sq_err += float((t - recon).pow(2).sum())
    sums.x_sum = t.sum(0) if sums.x_sum is None else sums.x_sum + t.sum(0)
    sums.x_sq += float(t.pow(2).sum())
    sums.cos += float(F.cosine_similarity(t, recon, dim=-1).sum())
    active = f != 0
    sums.l0.append(active.sum(-1).cpu())
    fired = active.sum(0).cpu().double()
    sums.fired = fired if sums.fired is None else sums.fired + fired


def _result(sums: _Sums, hook: str, n_sequences: int, dense_threshold: float) -> EvalResult:
    if sums.n_tok == 0 or sums.n_pred == 0 or sums.x_sum is None or sums.fired is None:
        raise ConfigError("the texts gave no (non-special) tokens to evaluate on", field="texts")
    n, d = sums.n_tok, sums.x_sum.numel()
    total_var = sums.x_sq - float(sums.x_sum.pow(2).sum()) / n
    fvu = sums.sq_err / total_var if total_var > 0 else math.nan
    l0 = torch.cat(sums.l0).double()
    top = max(float(l0.max()), 1.0)
    counts = torch.histc(l0, bins=L0_BINS, min=0, max=top)
    edges = torch.linspace(0, top, L0_BINS + 1)
    density = sums.fired / n
    ce = {k: v / sums.n_pred for k, v in sums.ce.items()}
    gap = ce["zero"] - ce["clean"]
    return EvalResult(
        hook=hook,
        n_sequences=n_sequences,
        n_tokens=n,
        n_predictions=sums.n_pred,
        mse=sums.sq_err / (n * d),
        fvu=fvu,
        explained_variance=1.0 - fvu,
        cosine_similarity=sums.cos / n,
        l0_mean=float(l0.mean()),
        l0_histogram=[int(c) for c in counts],
        l0_bin_edges=[float(e) for e in edges],
        dead_latents=int((sums.fired == 0).sum()),
        dense_latents=int((density > dense_threshold).sum()),
        dense_threshold=dense_threshold,
        ce_loss_clean=ce["clean"],
        ce_loss_spliced=ce["spliced"],
        ce_loss_zero_ablated=ce["zero"],
        ce_loss_recovered=(ce["zero"] - ce["spliced"]) / gap if gap != 0 else math.nan,
        delta_lm_loss=ce["spliced"] - ce["clean"],
        kl_div=sums.kl / sums.n_pred,
        feature_density=density.float(),
    )


def plot_feature_density(
    result: EvalResult, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Write a PNG histogram of log10 feature density (dead latents noted in the title); needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sae_hub._io import atomic_path

    density = result.feature_density
    live = density[density > 0].double().log10().numpy()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(live, bins=50, range=(min(-8.0, float(live.min()) if live.size else -8.0), 0.0), color="#4c72b0")
    ax.set_xlabel("log10 feature density (fraction of tokens a latent fires on)")
    ax.set_ylabel("latents")
    ax.set_title(title or f"{result.hook}: {result.dead_latents} dead, {result.dense_latents} dense")
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return target
