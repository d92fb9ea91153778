"""Turn a trained `TrainingSAE` into a plain canonical SAE, and write a run's final SAE folders.

Training runs on activations scaled to unit mean squared norm with `x - b_dec` fed to the encoder; the
export records that scale as the SAE's input/output scale and folds it into the weights, so the saved
SAE reads raw activations. BatchTopK and Matryoshka export as `batchtopk` in threshold mode (a
JumpReLU-compatible constant threshold, the EMA of the smallest selected activation).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from sae_hub._io import write_json_atomic
from sae_hub.config import Provenance, SAEConfig
from sae_hub.sae import SAE
from sae_hub.train.config import TrainConfig
from sae_hub.train.sharding import full

_EXPORT_ARCH = {"topk": "topk", "batchtopk": "batchtopk", "matryoshka": "batchtopk",
                "jumprelu": "jumprelu", "relu_l1": "relu"}  # fmt: skip


def sae_config(cfg: TrainConfig, d_in: int, hook: str, *, model_id: str | None) -> SAEConfig:
    """The canonical config of the SAE trained on `hook` (scales are added at export)."""
    arch = _EXPORT_ARCH[cfg.architecture]
    layer = re.search(r"(?:blocks|layers|h|layer)\.(\d+)", hook)
    return SAEConfig(
        d_in=d_in,
        d_sae=cfg.width(d_in),
        architecture=arch,  # type: ignore[arg-type]
        k=cfg.k if arch in ("topk", "batchtopk") else None,
        apply_b_dec_to_input=True,
        provenance=Provenance(model=model_id, hook=hook, layer=int(layer.group(1)) if layer else None),
    )


@torch.no_grad()
def export_sae(sae: SAE, scale: float, cfg: TrainConfig, extra: dict[str, Any]) -> SAE:
    """A detached float32 copy of `sae` reading raw activations (scale folded), with provenance extra.

    Under FSDP every rank must call this: sharded weights are gathered."""
    tensors = {n: full(t).detach().float().cpu().clone() for n, t in sae.state_tensors().items()}
    info: dict[str, Any] = {"training_config": cfg.to_dict(), **extra}
    if cfg.architecture == "matryoshka":
        info["matryoshka_groups"] = cfg.groups(sae.cfg.d_sae)
    new_cfg = sae.cfg.replace(dtype=torch.float32, input_scale=scale, output_scale=scale).with_provenance(
        extra={**sae.cfg.provenance.extra, **info}
    )
    out = SAE.from_tensors(new_cfg, tensors)
    return out.fold_normalization()


def folder_name(hook: str) -> str:
    """A folder name for one hook's SAE inside a run (`blocks.6.hook_resid_post` stays readable)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", hook)


def write_run(saes: dict[str, SAE], cfg: TrainConfig, metrics: dict[str, dict[str, float]]) -> Path:
    """Write `output_dir/saes/<hook>/` (native SAE + metrics.json + training_config.json) per hook."""
    root = Path(cfg.output_dir) / "saes"
    for hook, sae in saes.items():
        folder = root / folder_name(hook)
        sae.save_pretrained(folder)
        write_json_atomic(folder / "metrics.json", metrics.get(hook, {}))
        write_json_atomic(folder / "training_config.json", cfg.to_dict())
    return root
