"""The Space's model session: inspect features, describe one feature, steer generation; no UI code.

`Session` holds one causal LM, its tokenizer and one SAE, and answers the three tabs of the Space with
plain Python values. It calls only sae_hub's public API. Every input is bounded by `Limits`
(`space_limits.py`); a request past a limit raises `LimitError`, whose message the UI shows as it is.
A lock serialises model use, because steering hooks are installed on the shared model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feature_index
import torch
from space_limits import MODES, POSITIONS, EditSpec, LimitError, Limits, Mode, Positions, check_feature
from space_stream import stream_generation
from torch import Tensor

import sae_hub
from sae_hub import SAE
from sae_hub.constants import SAE_HUB_CACHE

__all__ = [
    "MODES",
    "POSITIONS",
    "STARTER_SAE",
    "EditSpec",
    "FeatureCard",
    "Inspection",
    "LimitError",
    "Limits",
    "Mode",
    "Positions",
    "Session",
    "TokenTop",
]

logger = logging.getLogger(__name__)

STARTER_SAE = Path(sae_hub.__file__).parent / "assets" / "starter"
"""The SAE shipped with sae_hub for the embedded model (SmolLM2-135M-Instruct, layer 15 residual)."""


@dataclass(frozen=True)
class TokenTop:
    """The strongest features at one token."""

    position: int
    token: str
    features: list[tuple[int, float]]


@dataclass(frozen=True)
class Inspection:
    """What one text does to the SAE: per-token activations of the chosen feature and the top features."""

    tokens: list[str]
    feature: int
    feature_acts: list[float]
    """Activation of `feature` at each token (0 at special tokens, which are not ranked)."""
    per_token: list[TokenTop]
    top_features: list[tuple[int, float, int]]
    """(feature, max activation over the text, tokens where it fires), strongest first."""


@dataclass(frozen=True)
class FeatureCard:
    """One feature: decoder logit lens, how often it fires on the corpus, and where it fires most."""

    feature: int
    promoted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]
    density: float
    max_activation: float
    decoder_norm: float
    """Norm of the feature's decoder row: what strength 1 adds without the unit-norm option."""
    snippets: list[list[tuple[str, float]]]


class Session:
    """One model, tokenizer and SAE, with the computations behind each tab of the Space."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        sae: SAE,
        *,
        hook: str | None = None,
        model_name: str | None = None,
        sae_name: str = "",
        limits: Limits | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.limits = limits or Limits()
        self.cache_dir = Path(cache_dir or SAE_HUB_CACHE / "space")
        self.model_name = model_name or str(getattr(model.config, "name_or_path", "") or type(model).__name__)
        self.lock = threading.Lock()
        self._index: dict[str, Tensor] | None = None
        self.set_sae(sae, hook=hook, name=sae_name)

    # ---- SAE --------------------------------------------------------------------------------

    def set_sae(self, sae: SAE, *, hook: str | None = None, name: str = "") -> None:
        """Use `sae` from now on; its hook point must resolve on the model and match its width."""
        hook = hook or sae.cfg.provenance.hook or sae.cfg.provenance.hf_hook
        if not hook:
            raise LimitError(
                "the SAE does not say which hook point it reads; pass --hook (e.g. model.layers.15)"
            )
        width = self.model.config.get_text_config().hidden_size
        if sae.cfg.d_in != width and "resid" in hook:
            raise LimitError(
                f"the SAE reads {sae.cfg.d_in}-wide activations but the model's residual is {width}"
            )
        self.sae = sae.to(device=self.model.device).eval()
        self.hook = hook
        self.sae_name = name or sae.cfg.provenance.release or sae.cfg.provenance.repo_id or "SAE"
        self._index = None

    def describe(self) -> str:
        """A one-paragraph Markdown description of what is loaded."""
        cfg = self.sae.cfg
        k = f", k={cfg.k}" if cfg.k else ""
        return (
            f"**Model** `{self.model_name}` · **SAE** `{self.sae_name}` at `{self.hook}`: "
            f"{cfg.architecture}{k}, {cfg.d_sae} features on {cfg.d_in} dimensions"
        )

    def compatible_releases(self) -> list[str]:
        """Registry releases whose SAEs were trained on the loaded model."""
        return [r.name for r in sae_hub.list_releases(model=self.model_name)]

    @staticmethod
    def release_ids(release: str) -> list[str]:
        """SAE ids of a registry release (empty for a Hub repo or a folder, which are not releases)."""
        try:
            return list(sae_hub.get_release(release).saes)
        except LookupError:
            return []

    # ---- tokens and activations ----------------------------------------------------------------

    def _ids(self, text: str, *, chat: bool = False) -> Tensor:
        """Token ids of `text` (through the chat template when asked and available), within the limit."""
        if not text or not text.strip():
            raise LimitError("enter some text first")
        if chat and getattr(self.tokenizer, "chat_template", None):
            enc = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True,
                return_dict=True,
                return_tensors="pt",
            )
            ids = enc["input_ids"]
        else:
            ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
            bos = self.tokenizer.bos_token_id
            if bos is not None and (ids.shape[1] == 0 or int(ids[0, 0]) != bos):
                # as in training: a text starts after BOS, so its first token is not the attention sink
                ids = torch.cat([torch.tensor([[bos]]), ids], dim=1)
        self.limits.check_input(ids.shape[1])
        return ids.to(self.model.device)

    def _pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([i]) for i in ids]

    def _features(self, ids: Tensor) -> Tensor:
        """Dense SAE feature activations `[batch, pos, d_sae]` for a batch of token ids."""
        # the base model: the hook sits inside it, and the unembedding is not needed here
        with sae_hub.splice(self.model, self.sae, hook=self.hook) as run:
            self.model.base_model(input_ids=ids, use_cache=False)
        return run.features[self.hook].float()

    def _check_feature(self, feature: Any) -> int:
        return check_feature(feature, self.sae.cfg.d_sae)

    # ---- Inspect -------------------------------------------------------------------------------

    def inspect(self, text: str, feature: int | None = None) -> Inspection:
        """Encode `text`; return per-token top features, the text's top features and one feature's trace."""
        ids = self._ids(text)
        with self.lock, torch.no_grad():
            acts = self._features(ids)[0]
        # special tokens (BOS, chat markers) carry outlier activations: shown, but not ranked or scaled
        special = torch.isin(ids[0].cpu(), torch.tensor(self.tokenizer.all_special_ids, dtype=torch.long))
        acts[special.to(acts.device)] = 0.0
        k = min(self.limits.top_k, acts.shape[-1])
        peak = acts.max(dim=0).values
        order = torch.topk(peak, k).indices.tolist()
        top = [(f, float(peak[f]), int((acts[:, f] > 0).sum())) for f in order if peak[f] > 0]
        chosen = self._check_feature(feature) if feature is not None else (top[0][0] if top else 0)
        tokens = self._pieces(ids[0].tolist())
        values, indices = torch.topk(acts, min(3, acts.shape[-1]), dim=-1)
        per_token = [
            TokenTop(
                i, tok, [(int(f), float(v)) for v, f in zip(values[i], indices[i], strict=True) if v > 0]
            )
            for i, tok in enumerate(tokens)
        ]
        return Inspection(tokens, chosen, acts[:, chosen].tolist(), per_token, top)

    # ---- Feature -------------------------------------------------------------------------------

    def feature_card(self, feature: int, *, progress: Any = None) -> FeatureCard:
        """Logit lens of one feature plus its density and top snippets on the bundled corpus."""
        f = self._check_feature(feature)
        lens = sae_hub.logit_lens(self.model, self.sae, f, k=10, tokenizer=self.tokenizer)
        promoted = [(token, value) for _, token, value in lens.promoted]
        suppressed = [(token, value) for _, token, value in lens.suppressed]
        index = self.feature_index(progress=progress)
        peak = float(index["top_values"][f, 0])
        snippets = []
        for w, pos, v in zip(
            index["top_windows"][f], index["top_positions"][f], index["top_values"][f], strict=True
        ):
            if v <= 0:
                break
            ids = index["windows"][w]
            lo, hi = max(0, int(pos) - 12), min(ids.shape[0], int(pos) + 6)
            with self.lock, torch.no_grad():
                acts = self._features(ids[None].to(self.model.device))[0, lo:hi, f]
            pieces = self._pieces(ids[lo:hi].tolist())
            snippets.append([(p, float(a) / peak) for p, a in zip(pieces, acts.tolist(), strict=True)])
        density = float(index["fire_counts"][f]) / float(index["windows"].numel())
        norm = float(self.sae.W_dec[f].float().norm())
        return FeatureCard(f, promoted, suppressed, density, peak, norm, snippets)

    def feature_index(self, *, progress: Any = None) -> dict[str, Tensor]:
        """Per-feature firing counts and top windows on the bundled corpus, computed once and cached."""
        if self._index is None:
            lim = self.limits
            key = [self.model_name, self.hook, lim.index_windows, lim.index_window_tokens]
            path = feature_index.index_path(
                self.cache_dir / "feature_index", key, [self.sae.W_enc, self.sae.W_dec]
            )

            def encode(ids: Tensor) -> Tensor:
                with self.lock, torch.no_grad():
                    return self._features(ids.to(self.model.device))

            def build() -> dict[str, Tensor]:
                windows = feature_index.corpus_windows(
                    self.tokenizer, lim.index_windows, lim.index_window_tokens
                )
                return feature_index.build_index(encode, windows, progress=progress)

            self._index = feature_index.load_or_build(path, build)
        return self._index

    # ---- Steer ---------------------------------------------------------------------------------

    def steering(
        self,
        edits: Sequence[EditSpec],
        *,
        positions: str = "all",
        normalize: bool = False,
        skip_special_tokens: bool = False,
    ) -> Any:
        """Build the `sae_hub.Steering` for these rows, checking every bound."""
        self.limits.check_steering(edits, positions)
        out = []
        for e in edits:
            f = self._check_feature(e.feature)
            self.limits.check_edit(e)
            value = 0.0 if e.mode == "ablate" else float(e.strength)
            out.append(
                sae_hub.Edit(feature=f, mode=e.mode, value=value, normalize=normalize and e.mode == "add")
            )
        return sae_hub.Steering(
            self.sae,
            out,
            positions=positions,
            skip_special_tokens=skip_special_tokens,
            hook=self.hook,
            model_id=self.model_name,
        )

    def generate(
        self,
        prompt: str,
        steering: Any,
        *,
        temperature: float = 0.7,
        seed: int = 16,
        max_new_tokens: int = 48,
        chat: bool = True,
    ) -> Iterator[tuple[str, str]]:
        """Stream (default, steered) completions of `prompt` with the same seed; default first."""
        self.limits.check_generation(max_new_tokens, temperature)
        ids = self._ids(prompt, chat=chat)
        settings = {
            "temperature": float(temperature),
            "seed": int(seed),
            "max_new_tokens": int(max_new_tokens),
        }
        with self.lock:
            default = ""
            for default in stream_generation(self.model, self.tokenizer, ids, None, **settings):
                yield default, ""
            for steered in stream_generation(self.model, self.tokenizer, ids, steering, **settings):
                yield default, steered

    # ---- recipes -------------------------------------------------------------------------------

    def save_recipe(self, steering: Any, folder: Path) -> Path:
        """Write the steering recipe JSON into `folder` and return its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "steering-recipe.json"
        steering.save(path)
        return path

    def load_recipe(self, path: str | Path) -> Any:
        """Read a recipe file for this SAE (its edits must fit the Steer tab)."""
        steering = sae_hub.Steering.load(path, sae=self.sae)
        self.limits.check_recipe(len(steering.edits))
        return steering
