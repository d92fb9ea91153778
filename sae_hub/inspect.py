"""Look inside an SAE on real text: which features fire on which tokens, and what a feature writes.

`logit_lens` projects a feature's decoder row straight through the unembedding (`W_U @ W_dec[f]`, no
final norm), as Neuronpedia does: a direct, input-independent read of which next tokens the feature
promotes or suppresses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from sae_hub.errors import ConfigError, HookPointError
from sae_hub.hooks import capture_activations
from sae_hub.splice import check_width, resolve_sae_hook

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from sae_hub.sae import SAE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenFeatures:
    """One token of the text and its strongest features, largest activation first."""

    position: int
    token_id: int
    token: str
    features: list[tuple[int, float]]
    """(feature index, activation) pairs."""


@dataclass(frozen=True)
class LogitLens:
    """Tokens a feature's decoder row promotes and suppresses, as (token id, token, logit) triples."""

    feature: int
    promoted: list[tuple[int, str, float]]
    suppressed: list[tuple[int, str, float]]


def _feature_matrix(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, sae: SAE, text: str, hook: str | None
) -> tuple[Tensor, list[int]]:
    """Encode `text` at the SAE's hook: dense features `[pos, d_sae]` and the token ids."""
    point = resolve_sae_hook(model, sae, hook)
    device = next(model.parameters()).device
    ids = tokenizer(text, return_tensors="pt")["input_ids"].to(device)
    x = capture_activations(model, [point.name], ids)[point.name]
    check_width(point, x.shape[-1], sae.cfg.d_in, "d_in")
    with torch.no_grad():
        f = sae.encode(x.to(sae.device))[0]
    return f, ids[0].tolist()


def top_features(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sae: SAE,
    text: str,
    k: int = 5,
    *,
    hook: str | None = None,
) -> list[TokenFeatures]:
    """Return, for every token of `text`, its `k` most active features (zero activations left out).

    Example: `top_features(model, tokenizer, sae, "The Eiffel Tower", k=3)[1].features`.
    """
    if k <= 0:
        raise ConfigError(f"k must be positive, got {k}", field="k")
    f, ids = _feature_matrix(model, tokenizer, sae, text, hook)
    values, indices = torch.topk(f, min(k, f.shape[-1]), dim=-1)
    out = []
    for pos, tid in enumerate(ids):
        pairs = [(int(i), float(v)) for v, i in zip(values[pos], indices[pos], strict=True) if v != 0]
        out.append(TokenFeatures(pos, tid, tokenizer.decode([tid]), pairs))
    return out


def feature_activations(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sae: SAE,
    text: str,
    feature: int,
    *,
    hook: str | None = None,
) -> list[tuple[str, float]]:
    """Return (token, activation of `feature`) for every token of `text`."""
    _check_feature(sae, feature)
    f, ids = _feature_matrix(model, tokenizer, sae, text, hook)
    return [(tokenizer.decode([tid]), float(v)) for tid, v in zip(ids, f[:, feature], strict=True)]


def logit_lens(
    model: nn.Module,
    sae: SAE,
    feature: int,
    k: int = 10,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> LogitLens:
    """Return the `k` tokens whose logits `W_U @ W_dec[feature]` are highest and lowest.

    Raises:
        HookPointError: the model has no output embedding, or its width is not the SAE's d_out.
    """
    _check_feature(sae, feature)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise HookPointError(f"{type(model).__name__} has no output embedding (unembedding) to project onto")
    W_U = head.weight.detach()
    if W_U.shape[-1] != sae.cfg.out_dim:
        raise HookPointError(
            f"the unembedding has width {W_U.shape[-1]} but the SAE's decoder rows have width {sae.cfg.out_dim}"
        )
    logits = W_U.float() @ sae.W_dec.detach()[feature].float().to(W_U.device)
    k = min(k, logits.numel())
    top, bottom = torch.topk(logits, k), torch.topk(-logits, k)

    def rows(ids: Tensor, vals: Tensor) -> list[tuple[int, str, float]]:
        return [
            (int(i), tokenizer.decode([int(i)]) if tokenizer is not None else "", float(v))
            for i, v in zip(ids, vals, strict=True)
        ]

    return LogitLens(feature, rows(top.indices, top.values), rows(bottom.indices, -bottom.values))


def _check_feature(sae: SAE, feature: int) -> None:
    if not 0 <= feature < sae.cfg.d_sae:
        raise ConfigError(f"feature {feature} is out of range 0..{sae.cfg.d_sae - 1}", field="feature")
