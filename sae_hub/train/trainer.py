"""`train(cfg)`: the accelerate-driven training loop, the same code on one CPU, one GPU or many processes.

Launch:
    sae-hub train config.yaml [--resume]
    accelerate launch --multi_gpu --num_processes 2 -m sae_hub.train config.yaml [--resume]
    (with `cpu: true` in the config, the same command runs two CPU processes over gloo)

Order follows accelerate's examples: `set_seed` before anything random, the activation source, the SAEs,
the optimizer, one `accelerator.prepare`, then the loop with `accelerator.backward`. Every rank runs the
same number of steps on an equal share of each global batch (no hang on uneven data). Checkpoints hold
the full state, so `--resume` continues exactly where the run stopped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hub.errors import ConfigError
from sae_hub.sae import SAE
from sae_hub.train import checkpoint as ckpt
from sae_hub.train import mechanics, sharding
from sae_hub.train.activations import ActivationSource, ModelSource
from sae_hub.train.buffer import ShuffleBuffer
from sae_hub.train.cache import CachedSource
from sae_hub.train.config import TrainConfig
from sae_hub.train.evaluation import activation_metrics, spliced_metrics
from sae_hub.train.export import export_sae, sae_config, write_run
from sae_hub.train.objectives import SAEGroup, TrainingSAE

logger = logging.getLogger(__name__)

_INIT_SAMPLE = 8192  # rows of the first block used for the activation scale and b_dec


def _accelerator(cfg: TrainConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from sae_hub.train.tracking import JSONLTracker

    # The state is a process-wide singleton; a second train() call in the same process may ask for another
    # precision. Only the accelerator-level settings are reset: the distributed setup (PartialState) stays.
    AcceleratorState._reset_state()

    trackers: list[Any] = [
        JSONLTracker(cfg.run_name, Path(cfg.output_dir) / "logs") if t == "jsonl" else t for t in cfg.log_with
    ]
    return Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision, log_with=trackers,
                       project_dir=str(Path(cfg.output_dir) / "logs"))  # fmt: skip


def _gather_rows(accelerator: Any) -> Any:
    """Concatenate each rank's rows in rank order (ranks may hold different row counts)."""

    def gather(t: Tensor) -> Tensor:
        if accelerator.num_processes == 1:
            return t
        sizes = accelerator.gather(torch.tensor([t.shape[0]], device=t.device)).tolist()
        padded = accelerator.pad_across_processes(t, dim=0)
        every = accelerator.gather(padded)
        width = padded.shape[0]
        return torch.cat([every[r * width : r * width + n] for r, n in enumerate(sizes)])

    return gather


def _source(cfg: TrainConfig, accelerator: Any, model: Any, tokenizer: Any) -> tuple[ActivationSource, Any]:
    """The activation source of the run (a disk cache when configured) and the model, if loaded."""
    loaded: dict[str, Any] = {"model": model, "tokenizer": tokenizer}

    def model_source(rank: int = 0, world: int = 1) -> ModelSource:
        model, tokenizer = _loaded_model(cfg, accelerator, loaded)
        gather = _gather_rows(accelerator) if world > 1 else None
        return ModelSource(model, tokenizer, cfg, rank=rank, world=world, gather=gather)

    if cfg.activation_cache is None:
        return model_source(accelerator.process_index, accelerator.num_processes), loaded
    if accelerator.is_main_process:
        CachedSource(cfg.activation_cache, cfg, model_source).ensure(cfg.total_tokens, cfg.batch_size)
    accelerator.wait_for_everyone()
    return CachedSource(cfg.activation_cache, cfg, None), loaded


def _loaded_model(cfg: TrainConfig, accelerator: Any, loaded: dict[str, Any]) -> tuple[Any, Any]:
    """The run's model and tokenizer, loading them now if the activations came from a complete cache."""
    if loaded.get("model") is None:
        from sae_hub.models import load_model

        loaded["model"], loaded["tokenizer"] = load_model(
            cfg.model, device=accelerator.device, dtype=getattr(torch, cfg.model_dtype)
        )
    return loaded["model"], loaded["tokenizer"]


def _initial_state(
    cfg: TrainConfig, source: ActivationSource, model_id: str | None
) -> tuple[list[TrainingSAE], list[float]]:
    """Build the SAEs (seeded), scale factors and b_dec from a sample of the first block."""
    first = source.block(0)
    members, scales = [], []
    for j, (hook, d_in) in enumerate(zip(source.hooks, source.d_in, strict=True)):
        sample = first[j][:_INIT_SAMPLE].float()
        scale = float(sample.pow(2).sum(-1).mean().rsqrt()) if cfg.normalize_activations else 1.0
        sae = SAE(sae_config(cfg, d_in, hook, model_id=model_id))
        sae.reset_parameters(seed=cfg.seed + j)
        member = TrainingSAE(sae, cfg)
        mechanics.initialize(member, sample * scale, cfg)
        members.append(member)
        scales.append(scale)
    return members, scales


def _model_id(cfg: TrainConfig, model: Any) -> str | None:
    if model is not None and getattr(getattr(model, "config", None), "name_or_path", None):
        return str(model.config.name_or_path)
    if cfg.model == "embedded":
        from sae_hub.models import EMBEDDED_MODEL_ID

        return EMBEDDED_MODEL_ID
    return cfg.model


def train(cfg: TrainConfig, *, resume: bool = False, source: ActivationSource | None = None,
          model: Any = None, tokenizer: Any = None) -> SAE | dict[str, SAE]:  # fmt: skip
    """Train one SAE per hook of `cfg`; return it (or `{hook: SAE}` for several hooks).

    `source` replaces the model pass with given activations (e.g. a `TensorSource`); `model` and
    `tokenizer` replace loading `cfg.model`. With `resume`, the run continues from
    `output_dir/checkpoints/latest`. Final SAEs go to `output_dir/saes/<hook>/` with their metrics.
    """
    from accelerate.utils import set_seed
    from huggingface_hub.utils import tqdm

    accelerator = _accelerator(cfg)
    set_seed(cfg.seed)  # before anything random: initialisation is reproducible
    if cfg.batch_size % accelerator.num_processes:
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the {accelerator.num_processes} "
                          "processes", field="batch_size")  # fmt: skip
    loaded: dict[str, Any] = {"model": model, "tokenizer": tokenizer}
    if source is None:
        source, loaded = _source(cfg, accelerator, model, tokenizer)
    model_id = _model_id(cfg, loaded["model"])
    members, scales = _initial_state(cfg, source, model_id)
    group = SAEGroup(members)
    sharded = cfg.parallelism == "fsdp" and accelerator.num_processes > 1
    if sharded:  # before the optimizer: sharding replaces the parameters with DTensors
        sharding.shard(group, members, accelerator.device)
        logger.info("FSDP: every SAE sharded across %d processes", accelerator.num_processes)
    params = [p for p in group.parameters() if p.requires_grad]
    lr = cfg.learning_rate(members[0].sae.cfg.d_sae)
    optimizer = torch.optim.Adam(params, lr=lr, betas=cfg.adam_betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: mechanics.lr_factor(s, cfg))
    if sharded:  # FSDP syncs the gradients itself; accelerate would add DDP on top
        optimizer = accelerator.prepare(optimizer)
    else:
        group, optimizer = accelerator.prepare(group, optimizer)
    raw = accelerator.unwrap_model(group)
    buffer = ShuffleBuffer(source, batch_size=cfg.batch_size, seed=cfg.seed,
                           rank=accelerator.process_index, world=accelerator.num_processes)  # fmt: skip
    ckpt_root = Path(cfg.output_dir) / "checkpoints"
    step = 0
    latest = ckpt.latest_checkpoint(ckpt_root) if resume else None
    if resume and latest is None:
        logger.warning("--resume: no checkpoint in %s; starting from scratch", ckpt_root)
    if latest is not None:
        step, scales = _restore(latest, cfg, raw, optimizer, scheduler, buffer)
    accelerator.init_trackers(cfg.run_name, config=_flat(cfg.to_dict()))

    bar = tqdm(total=cfg.steps, initial=step, desc="training", unit="step",
               disable=not accelerator.is_local_main_process)  # fmt: skip
    scale_t = [torch.tensor(s, device=accelerator.device) for s in scales]
    t0, tokens_done = time.perf_counter(), 0
    while step < cfg.steps:
        xs = [
            x.to(accelerator.device, non_blocking=True) * s
            for x, s in zip(buffer.next(), scale_t, strict=True)
        ]
        dead = [m.dead_mask(cfg.dead_after_tokens) for m in raw.members]
        with accelerator.autocast():
            outs = group(xs, sparsity_scale=mechanics.sparsity_factor(step, cfg), dead=dead)
        accelerator.backward(sum(o.loss for o in outs))
        for m in raw.members:
            mechanics.project_decoder_grad(m)
        if cfg.max_grad_norm is not None:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        for m, o in zip(raw.members, outs, strict=True):
            mechanics.normalize_decoder(m)
            mechanics.update_state(m, o, cfg.batch_size, cfg)
        step += 1
        tokens_done += cfg.batch_size
        if step % cfg.log_every == 0 or step == cfg.steps:
            metrics = _metrics(accelerator, raw, outs, cfg, scheduler.get_last_lr()[0])
            metrics["tokens_per_s"] = tokens_done / (time.perf_counter() - t0)
            accelerator.log(metrics, step=step)
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", l0=f"{metrics['l0']:.1f}",
                            dead=f"{metrics['dead_pct']:.1f}%", tok_s=f"{metrics['tokens_per_s']:.0f}")  # fmt: skip
        bar.update(1)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
            _save(accelerator, ckpt_root, step, cfg, raw, optimizer, scheduler, buffer, scales)
    bar.close()
    if cfg.checkpoint_every:
        _save(accelerator, ckpt_root, step, cfg, raw, optimizer, scheduler, buffer, scales)
    result = _finish(accelerator, cfg, raw, scales, source, loaded)
    accelerator.end_training()
    return result if len(result) > 1 else next(iter(result.values()))


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, bool | int | float | str) or v is None else str(v) for k, v in d.items()}


def _metrics(
    accelerator: Any, raw: SAEGroup, outs: list[Any], cfg: TrainConfig, lr: float
) -> dict[str, float]:
    """Averages over ranks of the last step's loss terms; dead % from the shared counters."""
    stacked = torch.stack([torch.stack([o.loss.detach().float(), o.mse, o.fvu, o.l0, o.aux]) for o in outs])
    mean = accelerator.reduce(stacked.to(accelerator.device), reduction="mean").cpu()
    dead = [float(m.dead_mask(cfg.dead_after_tokens).float().mean()) * 100 for m in raw.members]
    names = ["loss", "mse", "fvu", "l0", "aux"]
    out = {n: float(mean[:, i].mean()) for i, n in enumerate(names)}
    out |= {"dead_pct": sum(dead) / len(dead), "lr": lr}
    if len(outs) > 1:
        for j, hook in enumerate(cfg.hooks):
            out |= {f"{n}/{hook}": float(mean[j, i]) for i, n in enumerate(names)}
    return out


def _save(accelerator: Any, root: Path, step: int, cfg: TrainConfig, raw: SAEGroup, optimizer: Any,
          scheduler: Any, buffer: ShuffleBuffer, scales: list[float]) -> None:  # fmt: skip
    """Every rank gathers the full state (sharded under FSDP, identical under DDP); the main one writes."""
    accelerator.wait_for_everyone()
    opt_tensors, opt_meta = ckpt.optimizer_tensors(
        optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
    )
    tensors = sharding.full_tensors({f"model.{k}": v for k, v in raw.state_dict().items()} | opt_tensors)
    if accelerator.is_main_process:
        tensors["rng.torch"] = torch.get_rng_state()
        state = {"step": step, "buffer": buffer.state(), "optimizer": opt_meta, "scales": scales,
                 "scheduler": {"last_epoch": scheduler.last_epoch}, "config": cfg.to_dict()}  # fmt: skip
        ckpt.save_checkpoint(root, step, tensors, state, keep=cfg.keep_checkpoints)
    accelerator.wait_for_everyone()


def _restore(folder: Path, cfg: TrainConfig, raw: SAEGroup, optimizer: Any, scheduler: Any,
             buffer: ShuffleBuffer) -> tuple[int, list[float]]:  # fmt: skip
    """Load a checkpoint into the prepared objects; return (step, scales)."""
    tensors, state = ckpt.load_checkpoint(folder)
    ckpt.check_compatible(state["config"], cfg.to_dict())
    device = next(raw.parameters()).device
    model_state = {
        k.removeprefix("model."): v.to(device) for k, v in tensors.items() if k.startswith("model.")
    }
    raw.load_state_dict(sharding.as_model_state(model_state, raw))
    inner = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
    moments = sharding.as_optimizer_state({k: v.to(device) for k, v in tensors.items()}, inner)
    ckpt.restore_optimizer(inner, moments, state["optimizer"])
    scheduler.last_epoch = state["scheduler"]["last_epoch"]  # the optimizer state above restored each lr
    scheduler._last_lr = [g["lr"] for g in inner.param_groups]
    buffer.load_state(state["buffer"])
    torch.set_rng_state(tensors["rng.torch"])
    logger.info("resumed from %s at step %d", folder, state["step"])
    return int(state["step"]), [float(s) for s in state["scales"]]


def _finish(accelerator: Any, cfg: TrainConfig, raw: SAEGroup, scales: list[float],
            source: ActivationSource, loaded: dict[str, Any]) -> dict[str, SAE]:  # fmt: skip
    """Export the SAEs, evaluate them on held-out activations, and write them (main process)."""
    held_out = source.eval_block()
    saes: dict[str, SAE] = {}
    metrics: dict[str, dict[str, float]] = {}
    for j, (hook, member, scale) in enumerate(zip(source.hooks, raw.members, scales, strict=True)):
        sae = export_sae(member.sae, scale, cfg, {})
        metrics[hook] = activation_metrics(sae, held_out[j]) | {
            "training_tokens": cfg.steps * cfg.batch_size,
            # the training-side definition: silent for the last `dead_after_tokens` training tokens
            "dead_pct_train": 100.0 * float(member.dead_mask(cfg.dead_after_tokens).float().mean()),
        }
        if accelerator.is_main_process and cfg.model and cfg.dataset and cfg.eval_texts:
            model, tokenizer = _loaded_model(cfg, accelerator, loaded)
            metrics[hook] |= spliced_metrics(model, tokenizer, sae, hook, cfg)
        sae.cfg = sae.cfg.with_provenance(extra={**sae.cfg.provenance.extra, "metrics": metrics[hook]})
        saes[hook] = sae
    if accelerator.is_main_process:
        root = write_run(saes, cfg, metrics)
        logger.info("saved %d SAE(s) to %s", len(saes), root)
        for hook, m in metrics.items():
            logger.info("%s: %s", hook, m)
    accelerator.wait_for_everyone()
    return saes
