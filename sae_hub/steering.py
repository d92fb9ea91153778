"""Steer generation with SAE feature edits (add, clamp, ablate) and save the edits as a recipe file.

Formulas (x the activation at the SAE's hook, a = encode(x), d_f = W_dec[f]):
- add:    x' = x + value * d_f (d_f / |d_f| with `normalize=True`), Neuronpedia's SIMPLE_ADDITIVE;
- clamp:  x' = dec(a with a_f := value) + (x - dec(a)) = x + (value - a_f) * d_f, the error term kept, so
          only that feature changes (per-token normalisation of the SAE is undone on the change);
- ablate: clamp to 0.
Positions: "all" (every position of every pass), "prompt" (the first pass of a generation),
"generated" (tokens produced after it); with `skip_special_tokens` BOS/EOS/pad/chat tokens are left alone.
Under a KV cache generate runs the prompt once and then one token per pass; without a cache a pass whose
input_ids extend the previous pass's is treated as the same generation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from torch import Tensor, nn

from sae_hub._io import write_text_atomic
from sae_hub.errors import ConfigError
from sae_hub.normalization import NormStats, denormalize
from sae_hub.splice import resolve_sae_hook

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from sae_hub.sae import SAE

logger = logging.getLogger(__name__)

Mode = Literal["add", "clamp", "ablate"]
Positions = Literal["all", "prompt", "generated"]
RECIPE_FORMAT = "sae_hub.steering"
RECIPE_VERSION = 1
RECIPE_FILENAME = "steering.json"


@dataclass(frozen=True)
class Edit:
    """One feature edit: add `value * W_dec[feature]`, clamp the feature to `value`, or ablate it."""

    feature: int
    """Latent index in the SAE."""
    mode: Mode = "add"
    """add | clamp | ablate."""
    value: float = 0.0
    """Strength for add, target activation for clamp; must be 0 for ablate."""
    normalize: bool = False
    """add only: use the unit-norm decoder row instead of the raw one."""

    def __post_init__(self) -> None:
        if not isinstance(self.feature, int) or isinstance(self.feature, bool) or self.feature < 0:
            raise ConfigError(
                f"edit feature must be a non-negative int, got {self.feature!r}", field="feature"
            )
        if self.mode not in get_args(Mode):
            raise ConfigError(
                f"edit mode must be one of {list(get_args(Mode))}, got {self.mode!r}", field="mode"
            )
        if not isinstance(self.value, int | float) or isinstance(self.value, bool):
            raise ConfigError(f"edit value must be a number, got {self.value!r}", field="value")
        if self.mode == "ablate" and self.value != 0:
            raise ConfigError(
                "ablate sets the feature to 0; use mode='clamp' for another value", field="value"
            )
        if self.normalize and self.mode != "add":
            raise ConfigError("normalize applies to mode='add' only", field="normalize")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used in recipe files."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Edit:
        """Build an edit from its JSON form, refusing unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown edit keys {unknown}; expected {sorted(known)}", field=unknown[0])
        return cls(**data)


@dataclass
class _PassState:
    """What the current forward pass is: its steering mask and the prompt length of its generation."""

    prompt_len: int = 0
    prev_ids: Tensor | None = None
    mask: Tensor | None = None


def _past_length(kwargs: dict[str, Any], new_tokens: int) -> int:
    """Tokens already in the KV cache (`cache=` in transformers 5.x, `past_key_values=` in 4.x)."""
    past = kwargs.get("cache", kwargs.get("past_key_values"))
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    if isinstance(past, tuple | list) and past:
        return int(past[0][0].shape[-2])  # legacy tuple cache
    mask = kwargs.get("attention_mask")
    return max(int(mask.shape[-1]) - new_tokens, 0) if isinstance(mask, Tensor) and mask.ndim == 2 else 0


def _special_ids(model: nn.Module, tokenizer: PreTrainedTokenizerBase | None) -> list[int]:
    if tokenizer is not None:
        return list(tokenizer.all_special_ids)
    ids: set[int] = set()
    for cfg in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(cfg, name, None)
            ids.update([value] if isinstance(value, int) else list(value or []))
    return sorted(ids)


class Steering:
    """A set of feature edits on one SAE, applied at its hook point during forward and generate.

    Example:
        steer = Steering(sae, [Edit(123, "add", 8.0)], positions="all")
        with steer.apply(model):
            model.generate(**inputs)
    """

    def __init__(
        self,
        sae: SAE,
        edits: Sequence[Edit],
        *,
        positions: Positions = "all",
        skip_special_tokens: bool = False,
        hook: str | None = None,
        model_id: str | None = None,
    ) -> None:
        if positions not in get_args(Positions):
            raise ConfigError(
                f"positions must be one of {list(get_args(Positions))}, got {positions!r}", field="positions"
            )
        if sae.cfg.is_transcoder:
            raise ConfigError(
                "steering edits are defined for SAEs that reconstruct their own input, not transcoders",
                field="sae",
            )
        for e in edits:
            if not isinstance(e, Edit):
                raise ConfigError(f"edits must be Edit objects, got {type(e).__name__}", field="edits")
            if e.feature >= sae.cfg.d_sae:
                raise ConfigError(
                    f"edit feature {e.feature} is out of range for an SAE with d_sae={sae.cfg.d_sae}",
                    field="feature",
                )
        self.sae = sae
        self.edits = list(edits)
        self.positions: Positions = positions
        self.skip_special_tokens = skip_special_tokens
        self.hook = hook
        self.model_id = model_id if model_id is not None else sae.provenance.model

    # ---- the math --------------------------------------------------------------------------

    def _add_vector(self) -> Tensor | None:
        adds = [e for e in self.edits if e.mode == "add"]
        if not adds:
            return None
        W = self.sae.W_dec.detach()
        total = torch.zeros(W.shape[1], dtype=W.dtype, device=W.device)
        for e in adds:
            row = W[e.feature]
            total = total + e.value * (row / row.norm() if e.normalize else row)
        return total

    def steer(self, x: Tensor) -> Tensor:
        """Return `x` (activations at the hook, `[..., d_in]`) with every edit applied at every position."""
        out = x
        add = self._add_vector()
        if add is not None:
            out = out + add.to(x.dtype)
        clamps = [e for e in self.edits if e.mode != "add"]
        if clamps:
            sae = self.sae
            feats = torch.tensor([e.feature for e in clamps], device=sae.device)
            targets = torch.tensor([float(e.value) for e in clamps], dtype=sae.dtype, device=sae.device)
            _, stats = sae.normalize(x)
            current = sae.encode(x)[..., feats]
            # the error term cancels everything but the change of the clamped features
            change = (targets - current) @ sae.W_dec[feats]
            change = denormalize(change, NormStats(None, stats.scale), sae.cfg.output_scale)
            out = out + change.to(x.dtype)
        return out

    # ---- running -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def apply(self, model: nn.Module, *, tokenizer: PreTrainedTokenizerBase | None = None) -> Iterator[None]:
        """Apply the edits to every forward pass of `model` inside the `with` block (generate included).

        `tokenizer` supplies the special-token ids for `skip_special_tokens` (default: the model
        config's bos/eos/pad ids).
        """
        point = resolve_sae_hook(model, self.sae, self.hook)
        special = torch.tensor(_special_ids(model, tokenizer) if self.skip_special_tokens else [])
        state = _PassState()

        def on_forward(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], Tensor) else None)
            embeds = kwargs.get("inputs_embeds")
            shape = ids.shape if ids is not None else embeds.shape[:2] if embeds is not None else None
            if shape is None:
                state.mask = None
                return
            past = _past_length(kwargs, shape[1])
            if past == 0:
                prev = state.prev_ids
                continues = (
                    ids is not None
                    and prev is not None
                    and prev.shape[0] == ids.shape[0]
                    and prev.shape[1] < ids.shape[1]
                    and torch.equal(ids[:, : prev.shape[1]], prev)
                )
                if not continues:
                    state.prompt_len = shape[1]
                state.prev_ids = ids
            positions = torch.arange(past, past + shape[1])
            if self.positions == "all":
                mask = torch.ones(shape[1], dtype=torch.bool)
            elif self.positions == "prompt":
                mask = positions < state.prompt_len
            else:
                mask = positions >= state.prompt_len
            mask = mask.expand(shape[0], -1)
            if ids is not None and special.numel():
                mask = mask & ~torch.isin(ids.cpu(), special)
            state.mask = mask

        def on_activation(x: Tensor) -> Tensor | None:
            mask = state.mask
            if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
                mask = None  # a forward we did not see start: steer everywhere
            if mask is not None and not bool(mask.any()):
                return None
            steered = self.steer(x)
            if mask is None or bool(mask.all()):
                return steered
            return torch.where(mask.to(x.device)[..., None], steered, x)

        handles = [
            model.register_forward_pre_hook(on_forward, with_kwargs=True),
            point.register(on_activation),
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    # ---- recipe files --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the recipe: model, SAE source, hook, position policy and edits (JSON-ready)."""
        prov = self.sae.provenance
        source = {
            k: getattr(prov, k) for k in ("release", "sae_id", "repo_id", "revision") if getattr(prov, k)
        }
        return {
            "format": RECIPE_FORMAT,
            "version": RECIPE_VERSION,
            "model": self.model_id,
            "sae": source,
            "hook": self.hook or prov.hook or prov.hf_hook,
            "positions": self.positions,
            "skip_special_tokens": self.skip_special_tokens,
            "edits": [e.to_dict() for e in self.edits],
        }

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        sae: SAE | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> Steering:
        """Build a Steering from a recipe, loading its SAE (release/id or repo) unless `sae` is given."""
        if data.get("format") != RECIPE_FORMAT:
            raise ConfigError(
                f"not a steering recipe: format is {data.get('format')!r}, expected {RECIPE_FORMAT!r}",
                field="format",
            )
        version = data.get("version")
        if not isinstance(version, int) or version > RECIPE_VERSION:
            raise ConfigError(
                f"recipe version {version!r} is not supported (this sae_hub reads up to {RECIPE_VERSION})",
                field="version",
            )
        known = {"format", "version", "model", "sae", "hook", "positions", "skip_special_tokens", "edits"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown recipe keys {unknown}; expected {sorted(known)}", field=unknown[0])
        if not isinstance(data.get("edits"), list):
            raise ConfigError("recipe `edits` must be a list", field="edits")
        if sae is None:
            sae = _load_recipe_sae(data.get("sae") or {}, device=device, dtype=dtype)
        return cls(
            sae,
            [Edit.from_dict(e) for e in data["edits"]],
            positions=data.get("positions", "all"),
            skip_special_tokens=bool(data.get("skip_special_tokens", False)),
            hook=data.get("hook"),
            model_id=data.get("model"),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the recipe as JSON (atomically) and return its path."""
        target = Path(path)
        write_text_atomic(target, json.dumps(self.to_dict(), indent=2) + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, sae: SAE | None = None, **kwargs: Any) -> Steering:
        """Read a recipe file written by `save` (see `from_dict` for `sae`, `device`, `dtype`)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"steering recipe {path} is not valid JSON: {exc}", field="format") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"steering recipe {path} must hold a JSON object", field="format")
        return cls.from_dict(data, sae=sae, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        path_in_repo: str = RECIPE_FILENAME,
        revision: str | None = None,
        token: str | bool | None = None,
        private: bool | None = None,
        commit_message: str | None = None,
    ) -> str:
        """Upload the recipe to a Hub repo (created if missing) in one commit; return the commit URL."""
        from huggingface_hub import create_repo, upload_file

        create_repo(repo_id, token=token, private=private, exist_ok=True)
        info = upload_file(
            path_or_fileobj=(json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8"),
            path_in_repo=path_in_repo,
            repo_id=repo_id,
            revision=revision,
            token=token,
            commit_message=commit_message or f"Add steering recipe {path_in_repo}",
        )
        return str(info)

    @classmethod
    def from_hub(
        cls,
        repo_id: str,
        filename: str = RECIPE_FILENAME,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        sae: SAE | None = None,
        **kwargs: Any,
    ) -> Steering:
        """Download a recipe from a Hub repo and load it (and its SAE, unless `sae` is given)."""
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo_id, filename, revision=revision, token=token, cache_dir=cache_dir)
        return cls.load(path, sae=sae, **kwargs)


def _load_recipe_sae(source: dict[str, Any], **kwargs: Any) -> SAE:
    from sae_hub.sae import SAE

    where = source.get("release") or source.get("repo_id")
    if not where:
        raise ConfigError(
            "the recipe names no SAE (sae.release or sae.repo_id); pass sae= to load it", field="sae"
        )
    return SAE.from_pretrained(where, source.get("sae_id"), revision=source.get("revision"), **kwargs)
