"""Model cards for SAEs and multi-SAE releases, rendered from the `model_cards/` templates.

Templates ship inside the wheel (`sae_hub/model_cards/`, the top-level `model_cards/` folder) and are
read with `importlib.resources`; `huggingface_hub.ModelCard.from_template` renders them with YAML
metadata from `ModelCardData` (library_name, tags, base_model, datasets, license).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from typing import Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

from sae_hub.sae import SAE

LIBRARY_NAME = "sae_hub"
DEFAULT_LICENSE = "apache-2.0"
_METRIC_LABELS = {
    "l0": "L0 (mean active latents per token)",
    "fvu": "FVU (fraction of variance unexplained)",
    "explained_variance": "explained variance",
    "mse": "MSE (summed over d_in, per token)",
    "dead_pct": "dead latents (%)",
    "ce_loss_recovered": "CE loss recovered",
    "delta_lm_loss": "LM loss increase when spliced (nats)",
    "kl_div": "KL divergence when spliced",
}


def template(name: str) -> str:
    """Return the text of a card template (`sae.md` or `release.md`)."""
    return (importlib.resources.files("sae_hub") / "model_cards" / name).read_text(encoding="utf-8")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value) if value is not None else "n/a"


def _tags(saes: list[SAE]) -> list[str]:
    tags = ["sparse-autoencoder", "sae", "interpretability", LIBRARY_NAME]
    for sae in saes:
        arch = sae.cfg.provenance.extra.get("training_config", {}).get("architecture", sae.cfg.architecture)
        for tag in (sae.cfg.architecture, arch):
            if tag not in tags:
                tags.append(tag)
    return tags


def _card_data(saes: list[SAE], *, license: str | None) -> ModelCardData:
    models = sorted({s.cfg.provenance.model for s in saes if s.cfg.provenance.model})
    datasets = sorted({
        str(d) for s in saes if (d := s.cfg.provenance.extra.get("training_config", {}).get("dataset"))
        and "/" in str(d) and not str(d).startswith(("/", "."))  # Hub dataset ids only, not local paths
    })  # fmt: skip
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=license or DEFAULT_LICENSE,
        tags=_tags(saes),
        base_model=models or None,
        datasets=datasets or None,
    )


def _metrics(sae: SAE, metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(metrics if metrics is not None else sae.cfg.provenance.extra.get("metrics", {}))


def sae_card(sae: SAE, repo_id: str, *, sae_id: str | None = None, metrics: Mapping[str, Any] | None = None,
             training_config: Mapping[str, Any] | None = None, license: str | None = None) -> ModelCard:  # fmt: skip
    """Render the card of one SAE stored at `repo_id` (in folder `sae_id`, if any)."""
    cfg, prov = sae.cfg, sae.cfg.provenance
    m = _metrics(sae, metrics)
    tcfg = dict(training_config if training_config is not None else prov.extra.get("training_config", {}))
    if cfg.architecture in ("topk", "abstopk"):
        label, value = "k (active latents per token)", str(cfg.k)
    elif cfg.architecture in ("jumprelu", "batchtopk"):
        theta = sae.threshold.detach().float()
        label = "threshold (min / mean / max)"
        value = f"{theta.min():.4g} / {theta.mean():.4g} / {theta.max():.4g}"
        if cfg.k is not None:
            value += f" (trained with k={cfg.k})"
    else:
        label, value = "sparsity", "ReLU (L1 penalty)"
    rows = [(_METRIC_LABELS[k], _fmt(m[k])) for k in _METRIC_LABELS if k in m]
    tokens = m.get("training_tokens") or tcfg.get("total_tokens")
    return ModelCard.from_template(
        _card_data([sae], license=license),
        template_str=template("sae.md"),
        title=f"{cfg.architecture} SAE on {prov.hook or 'an activation'}"
        + (f" ({prov.model})" if prov.model else ""),
        architecture=cfg.architecture,
        training_architecture=tcfg.get("architecture"),
        hook=prov.hook or "unknown",
        model=prov.model,
        layer=prov.layer,
        d_in=cfg.d_in,
        d_sae=cfg.d_sae,
        sparsity_label=label,
        sparsity_value=value,
        training_tokens=_fmt(tokens),
        dataset=tcfg.get("dataset"),
        context_size=tcfg.get("context_size"),
        metrics_rows=rows,
        eval_tokens=m.get("eval_tokens"),
        repo_id=repo_id,
        sae_id=sae_id,
        training_config=yaml.safe_dump(tcfg, sort_keys=True) if tcfg else "",
    )


def release_card(saes: Mapping[str, SAE], repo_id: str, *, license: str | None = None,
                 summaries: Mapping[str, Mapping[str, Any]] | None = None) -> ModelCard:  # fmt: skip
    """Render the top-level card of a repo holding several SAEs, one folder (`sae_id`) each.

    `summaries` describes SAEs already in the repo that are not being uploaded now (from its config.json).
    """
    rows = dict(summaries or {})
    rows.update({sae_id: summary(sae) for sae_id, sae in saes.items()})
    models = sorted({r["model"] for r in rows.values() if r.get("model")})
    table = [
        {"sae_id": sid, "hook": r.get("hook"), "architecture": r.get("architecture"), "d_in": r.get("d_in"),
         "d_sae": r.get("d_sae"), "l0": _fmt(r.get("l0")), "fvu": _fmt(r.get("fvu")),
         "dead": _fmt(r.get("dead_pct")), "tokens": _fmt(r.get("training_tokens"))}
        for sid, r in sorted(rows.items())
    ]  # fmt: skip
    data = _card_data(list(saes.values()), license=license)
    if models:
        data.base_model = models
    return ModelCard.from_template(
        data,
        template_str=template("release.md"),
        title=f"SAEs for {models[0]}" if len(models) == 1 else "Sparse autoencoders",
        n_saes=len(table),
        model=models[0] if len(models) == 1 else None,
        rows=table,
        repo_id=repo_id,
        first_id=table[0]["sae_id"],
    )


def summary(sae: SAE) -> dict[str, Any]:
    """The per-SAE entry of a repo's top-level `config.json` and release card."""
    cfg, m = sae.cfg, sae.cfg.provenance.extra.get("metrics", {})
    return {
        "hook": cfg.provenance.hook, "model": cfg.provenance.model, "architecture": cfg.architecture,
        "d_in": cfg.d_in, "d_sae": cfg.d_sae, "k": cfg.k, "l0": m.get("l0"), "fvu": m.get("fvu"),
        "dead_pct": m.get("dead_pct"), "training_tokens": m.get("training_tokens"),
    }  # fmt: skip
