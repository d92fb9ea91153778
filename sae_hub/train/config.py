"""`TrainConfig`: everything one training run needs, validated, and its YAML/JSON file form.

One dataclass drives `train(cfg)`, `sae-hub train CONFIG` and `accelerate launch -m sae_hub.train
CONFIG`; it is saved beside every checkpoint and in the trained SAE's provenance.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from sae_hub.errors import ConfigError

TrainArchitecture = Literal["topk", "batchtopk", "jumprelu", "relu_l1", "matryoshka"]
BosPolicy = Literal["window", "document", "none"]
MixedPrecision = Literal["no", "bf16"]
Logger = Literal["jsonl", "tensorboard", "wandb"]
BDecInit = Literal["geometric_median", "mean", "zeros"]
Parallelism = Literal["ddp", "fsdp"]

ARCHITECTURES: tuple[str, ...] = get_args(TrainArchitecture)
# Gao et al.: lr proportional to 1/sqrt(n latents), 2e-4 at n = 2**14.
BASE_LR, BASE_WIDTH = 2e-4, 2**14


@dataclass(kw_only=True)
class TrainConfig:
    """A training run: activation source, SAE architecture, optimisation, checkpoints, logging, eval."""

    # ---- activation source --------------------------------------------------------------
    model: str | None = "embedded"
    """Causal LM: `embedded` (SmolLM2-135M-Instruct shipped offline), a Hub id or a local folder."""
    hooks: list[str] = field(default_factory=list)
    """Hook points to train on, one SAE each, all from one model pass (e.g. `blocks.15.hook_resid_post`)."""
    dataset: str | None = None
    """Text: a `datasets` name (streamed), or local .txt / .jsonl files (a path, folder or glob)."""
    dataset_config: str | None = None
    """`datasets` configuration name."""
    dataset_split: str = "train"
    """`datasets` split."""
    text_field: str = "text"
    """Field holding the text in dataset rows and JSONL lines."""
    context_size: int = 128
    """Tokens per context window fed to the model."""
    bos_policy: BosPolicy = "window"
    """`window`: every window starts with BOS and documents are BOS-separated; `document`: BOS only
    before each document (windows pack across documents); `none`: no BOS added."""
    exclude_special_tokens: bool = True
    """Drop activations at special-token positions (BOS/EOS/PAD are outliers, not text)."""
    model_batch_size: int = 8
    """Windows per model forward."""
    model_dtype: str = "float32"
    """dtype the model runs in (activations are stored and trained in float32)."""
    activation_cache: str | None = None
    """Folder of cached activations (safetensors shards + manifest); built on first use, then reused."""

    # ---- SAE ----------------------------------------------------------------------------
    architecture: TrainArchitecture = "topk"
    """topk, batchtopk, jumprelu, relu_l1 or matryoshka (Matryoshka BatchTopK)."""
    d_sae: int | None = None
    """Number of latents; or give `expansion_factor`."""
    expansion_factor: int | None = None
    """`d_sae = expansion_factor * d_in` when `d_sae` is not given."""
    k: int = 32
    """Active latents per token (topk) or on average (batchtopk, matryoshka)."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK dead-latent loss (topk, batchtopk, matryoshka); 0 turns it off."""
    auxk_k: int | None = None
    """Dead latents the AuxK loss may use per token; None means `d_in // 2`."""
    dead_after_tokens: int = 10_000_000
    """A latent is dead when it has not fired for this many training tokens."""
    l1_coefficient: float = 0.1
    """relu_l1: weight of the decoder-norm-weighted L1 penalty (activations have unit mean squared norm)."""
    sparsity_warmup_steps: int = 0
    """Linear warm-up of the L1 / L0 penalty weight from 0."""
    jumprelu_bandwidth: float = 0.001
    """JumpReLU: width of the rectangle kernel in the straight-through estimator."""
    jumprelu_init_threshold: float = 0.001
    """JumpReLU: initial threshold of every latent."""
    target_l0: float | None = 32.0
    """JumpReLU: penalise `(L0/target - 1)^2`; None penalises L0 itself."""
    l0_coefficient: float = 1.0
    """JumpReLU: weight of the L0 penalty."""
    threshold_ema: float = 0.99
    """batchtopk / matryoshka: EMA factor of the inference threshold (min selected activation)."""
    matryoshka_groups: list[int] | None = None
    """matryoshka: nested group sizes summing to d_sae; None gives d_sae/32, /16, /8, /4 and the rest."""
    b_dec_init: BDecInit = "geometric_median"
    """Initial decoder bias, from a sample of the first block."""
    normalize_activations: bool = True
    """Scale activations to unit mean squared norm while training; folded into the weights at the end."""
    fused_topk: bool = True
    """topk: sparse fused encoder/decoder (backward touches only the k selected latents)."""

    # ---- optimisation -------------------------------------------------------------------
    lr: float | None = None
    """Adam learning rate; None means 2e-4 / sqrt(d_sae / 2**14) (Gao et al.)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up steps."""
    decay_start: float = 0.8
    """Fraction of training after which the learning rate decays linearly to zero."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm; None disables clipping."""
    batch_size: int = 4096
    """Tokens per optimiser step (global, across all processes)."""
    total_tokens: int = 10_000_000
    """Training tokens; the run takes `total_tokens // batch_size` steps."""
    buffer_tokens: int = 262_144
    """Tokens per shuffle block: tokens of many documents are mixed within a block."""
    seed: int = 0
    """Seed of initialisation, shuffling and dropout-free everything else."""
    mixed_precision: MixedPrecision = "no"
    """`bf16` autocast (fp32 master weights, no GradScaler) or `no`."""
    cpu: bool = False
    """Force the CPU even when an accelerator is present."""
    parallelism: Parallelism = "ddp"
    """Several processes: `ddp` replicates each SAE on every rank; `fsdp` shards its weights, gradients
    and Adam state across ranks (FSDP2), for SAEs too large to replicate. One process ignores it."""

    # ---- checkpoints, logging, evaluation -------------------------------------------------
    output_dir: str = "sae_run"
    """Where checkpoints, logs and the final SAE folders go."""
    checkpoint_every: int = 0
    """Write a full checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    log_every: int = 10
    """Log metrics every N steps."""
    log_with: list[Logger] = field(default_factory=lambda: ["jsonl"])
    """Trackers: jsonl (always available), tensorboard, wandb."""
    run_name: str = "sae"
    """Tracker project / run name."""
    eval_tokens: int = 16_384
    """Held-out tokens (the stream's first windows, never trained on) for the final evaluation."""
    eval_texts: int = 8
    """Texts for the spliced evaluation (CE loss recovered) when `sae_hub.eval` is available; 0 skips."""

    def __post_init__(self) -> None:
        if isinstance(self.hooks, str):
            self.hooks = [self.hooks]
        if isinstance(self.log_with, str):
            self.log_with = [self.log_with]
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        self._validate()

    # ---- derived values ---------------------------------------------------------------------

    def width(self, d_in: int) -> int:
        """Number of latents for inputs of width `d_in`."""
        return self.d_sae if self.d_sae is not None else int(self.expansion_factor or 0) * d_in

    def learning_rate(self, d_sae: int) -> float:
        """The configured lr, or the width-scaled default."""
        return self.lr if self.lr is not None else BASE_LR / math.sqrt(d_sae / BASE_WIDTH)

    def groups(self, d_sae: int) -> list[int]:
        """Matryoshka nested group sizes for `d_sae` latents."""
        if self.matryoshka_groups is not None:
            if sum(self.matryoshka_groups) != d_sae:
                raise ConfigError(
                    f"matryoshka_groups sum to {sum(self.matryoshka_groups)} but d_sae is {d_sae}",
                    field="matryoshka_groups",
                )
            return list(self.matryoshka_groups)
        sizes = [d_sae // 32, d_sae // 32, d_sae // 16, d_sae // 8, d_sae // 4]
        sizes = [s for s in sizes if s > 0]
        return [*sizes, d_sae - sum(sizes)]

    @property
    def steps(self) -> int:
        """Optimiser steps of the run."""
        return self.total_tokens // self.batch_size

    # ---- validation --------------------------------------------------------------------------

    def _validate(self) -> None:
        choices = {
            "architecture": ARCHITECTURES,
            "bos_policy": get_args(BosPolicy),
            "mixed_precision": get_args(MixedPrecision),
            "b_dec_init": get_args(BDecInit),
            "parallelism": get_args(Parallelism),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}", field=name
                )
        for value in self.log_with:
            if value not in get_args(Logger):
                raise ConfigError(
                    f"log_with entries must be in {list(get_args(Logger))}, got {value!r}", field="log_with"
                )
        if not self.hooks or not all(isinstance(h, str) and h for h in self.hooks):
            raise ConfigError("hooks must name at least one hook point", field="hooks")
        if len(set(self.hooks)) != len(self.hooks):
            raise ConfigError(f"hooks has duplicates: {self.hooks}", field="hooks")
        if (self.d_sae is None) == (self.expansion_factor is None):
            raise ConfigError("give exactly one of d_sae and expansion_factor", field="d_sae")
        positive = [
            "context_size", "model_batch_size", "k", "dead_after_tokens", "batch_size",
            "total_tokens", "buffer_tokens", "log_every", "keep_checkpoints",
        ]  # fmt: skip
        for name in [*positive, "d_sae", "expansion_factor", "auxk_k"]:
            value = getattr(self, name)
            if name not in positive and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive int, got {value!r}", field=name)
        for name in ["warmup_steps", "checkpoint_every", "sparsity_warmup_steps", "eval_tokens", "seed"]:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be an int >= 0, got {value!r}", field=name)
        nonneg = ["auxk_alpha", "l1_coefficient", "l0_coefficient"]
        for name in [*nonneg, "jumprelu_bandwidth", "jumprelu_init_threshold", "lr", "max_grad_norm"]:
            value = getattr(self, name)
            if value is None and name in ("lr", "max_grad_norm"):
                continue
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0 or (value == 0 and name not in nonneg):
                need = ">= 0" if name in nonneg else "> 0"
                raise ConfigError(f"{name} must be a finite number {need}, got {value!r}", field=name)
        if not 0 < self.threshold_ema < 1:
            raise ConfigError(
                f"threshold_ema must be in (0, 1), got {self.threshold_ema!r}", field="threshold_ema"
            )
        if not 0 <= self.decay_start <= 1:
            raise ConfigError(f"decay_start must be in [0, 1], got {self.decay_start!r}", field="decay_start")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(
                f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}", field="adam_betas"
            )
        if self.target_l0 is not None and not self.target_l0 > 0:
            raise ConfigError(f"target_l0 must be > 0 or null, got {self.target_l0!r}", field="target_l0")
        if self.batch_size > self.buffer_tokens:
            raise ConfigError(
                f"buffer_tokens ({self.buffer_tokens}) must hold at least one batch ({self.batch_size})",
                field="buffer_tokens",
            )
        if self.steps < 1:
            raise ConfigError(
                f"total_tokens ({self.total_tokens}) is less than one batch ({self.batch_size})",
                field="total_tokens",
            )
        if self.d_sae is not None and self.k > self.d_sae:
            raise ConfigError(f"k ({self.k}) must not exceed d_sae ({self.d_sae})", field="k")
        if self.matryoshka_groups is not None and (
            not self.matryoshka_groups
            or not all(isinstance(g, int) and g > 0 for g in self.matryoshka_groups)
        ):
            raise ConfigError(
                f"matryoshka_groups must be positive ints, got {self.matryoshka_groups!r}",
                field="matryoshka_groups",
            )
        if self.model_dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(
                f"model_dtype must be float32, bfloat16 or float16, got {self.model_dtype!r}",
                field="model_dtype",
            )

    # ---- dict and file forms ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (round-trips through `from_dict`)."""
        out = dataclasses.asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from a mapping; unknown keys are refused (a typo must not become a default)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        if "hook" in data and "hooks" not in data:
            data["hooks"] = data.pop("hook")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown training config keys {unknown}; expected a subset of {sorted(known)}",
                field=unknown[0],
            )
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. a list where a number belongs, caught by comparisons
            raise ConfigError(f"bad training config value: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a YAML (.yaml/.yml) or JSON training config file."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(data or {})
        except ConfigError as exc:
            raise ConfigError(f"{exc} [{path}]", field=exc.field) from exc

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
