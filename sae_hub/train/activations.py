"""Activation sources: numbered blocks of token activations, from a model pass or from memory.

A source answers `block(i)` (training block i, `[n_i, d]` per hook) and `eval_block()` (held-out
tokens: the stream's first windows, never trained on in any pass), deterministically, so a run can
resume at any block and a disk cache can rebuild any shard. `ModelSource` runs the LM over token
windows with `capture_activations(..., stop_early=True)`, so layers above the deepest hook never run;
several hooks come from the same pass. A run longer than its text goes round again: block `i` repeats block
`i % epoch_blocks` once the end of the text has been seen, so a cache never stores a pass twice. Under
several processes each rank runs a contiguous slice of a block's windows and the slices are gathered, so
every rank holds the same block as a single process would.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch import Tensor

from sae_hub.errors import ConfigError
from sae_hub.train.config import TrainConfig
from sae_hub.train.text import iter_windows

logger = logging.getLogger(__name__)

Gather = Callable[[Tensor], Tensor]
"""Concatenate each rank's rows (dim 0) in rank order; the identity in a single process."""


class ActivationSource(Protocol):
    """Numbered blocks of activations for the hooks of a run."""

    hooks: list[str]
    d_in: list[int]

    def block(self, index: int) -> list[Tensor]:
        """Training block `index`: one `[n, d_in]` float tensor per hook, rows aligned across hooks."""
        ...

    def eval_block(self) -> list[Tensor]:
        """Held-out rows, one tensor per hook."""
        ...


class TensorSource:
    """Activations already in memory (tests, benchmarks): eval rows first, then training blocks, cycling."""

    def __init__(self, acts: Tensor | list[Tensor], *, block_tokens: int, eval_tokens: int = 0,
                 hooks: list[str] | None = None) -> None:  # fmt: skip
        self.acts = [acts] if isinstance(acts, Tensor) else list(acts)
        self.hooks = hooks or [f"acts.{i}" for i in range(len(self.acts))]
        self.d_in = [int(a.shape[-1]) for a in self.acts]
        self.block_tokens = block_tokens
        self.eval_tokens = eval_tokens
        n_train = self.acts[0].shape[0] - eval_tokens
        if n_train < block_tokens:
            raise ConfigError(
                f"{n_train} training rows cannot fill one block of {block_tokens}", field="buffer_tokens"
            )
        self.n_blocks = n_train // block_tokens

    def block(self, index: int) -> list[Tensor]:
        start = self.eval_tokens + (index % self.n_blocks) * self.block_tokens
        return [a[start : start + self.block_tokens].float() for a in self.acts]

    def eval_block(self) -> list[Tensor]:
        return [a[: self.eval_tokens].float() for a in self.acts]


class ModelSource:
    """Run a causal LM over the configured text and capture activations at the run's hooks."""

    def __init__(self, model: Any, tokenizer: Any, cfg: TrainConfig, *, rank: int = 0, world: int = 1,
                 gather: Gather | None = None) -> None:  # fmt: skip
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.hooks = list(cfg.hooks)
        self.rank, self.world = rank, world
        self.gather = gather or (lambda t: t)
        self.windows_per_block = math.ceil(cfg.buffer_tokens / cfg.context_size)
        self.eval_windows = math.ceil(cfg.eval_tokens / cfg.context_size)
        self.device = next(model.parameters()).device
        special = set(tokenizer.all_special_ids) if cfg.exclude_special_tokens else set()
        self.special = torch.tensor(sorted(special), dtype=torch.long)
        self._iter: Iterator[list[int]] | None = None
        self._pos = 0
        self._held_out: list[list[int]] | None = None
        self._last: tuple[tuple[int, int], list[list[int]]] | None = None
        self.epoch_blocks: int | None = None
        """Training blocks in one pass over the text; known once its end has been seen."""
        probe = self._activations([next(iter_windows(cfg, tokenizer))])
        self.d_in = [int(t.shape[-1]) for t in probe[0]]

    def _windows(self, start: int, count: int) -> list[list[int]]:
        """Training windows `start .. start+count` of one pass (re-tokenising from the start to seek back)."""
        if self._last is not None and self._last[0] == (start, count):
            return self._last[1]  # `pass_index` just read this block's windows
        if self._iter is None or start < self._pos:
            self._iter = iter_windows(self.cfg, self.tokenizer, cycle=False, skip=self.eval_windows)
            self._pos = 0
        skipped = list(itertools.islice(self._iter, start - self._pos))
        self._pos += len(skipped)
        out = list(itertools.islice(self._iter, count))
        self._pos += len(out)
        self._last = ((start, count), out)
        return out

    @torch.no_grad()
    def _activations(self, windows: list[list[int]]) -> tuple[list[Tensor], Tensor]:
        """Activations (one `[n, d]` per hook) and token ids of the non-excluded positions of `windows`."""
        from sae_hub.hooks import capture_activations

        if not windows:
            return [torch.empty(0, d) for d in self.d_in], torch.empty(0, dtype=torch.long)
        outs: list[list[Tensor]] = [[] for _ in self.hooks]
        ids_out: list[Tensor] = []
        for start in range(0, len(windows), self.cfg.model_batch_size):
            ids = torch.tensor(windows[start : start + self.cfg.model_batch_size], dtype=torch.long)
            keep = ~torch.isin(ids, self.special)
            acts = capture_activations(self.model, self.hooks, ids.to(self.device), stop_early=True)
            for out, hook in zip(outs, self.hooks, strict=True):
                out.append(acts[hook][keep.to(self.device)].float().cpu())
            ids_out.append(ids[keep])
        return [torch.cat(o) for o in outs], torch.cat(ids_out)

    def pass_index(self, index: int) -> int:
        """The block of the text's first pass that training block `index` is (tokenising only, no model)."""
        per_block = self.windows_per_block
        if self.epoch_blocks is None:
            if len(self._windows(index * per_block, per_block)) == per_block:
                return index
            self.epoch_blocks = max(math.ceil(self._pos / per_block), 1)  # the text ended
            logger.info("the text holds %d training blocks; later blocks go round again", self.epoch_blocks)
        return index % self.epoch_blocks

    def _gathered(self, windows: list[list[int]]) -> tuple[list[Tensor], Tensor]:
        """Rows of `windows`: this rank runs its contiguous share, then the shares are gathered."""
        share = math.ceil(len(windows) / self.world)
        acts, ids = self._activations(windows[self.rank * share : (self.rank + 1) * share])
        return [self.gather(a.to(self.device)).cpu() for a in acts], self.gather(ids.to(self.device)).cpu()

    def block_with_ids(self, index: int) -> tuple[list[Tensor], Tensor]:
        """Training block `index` and the token id of every row."""
        start = self.pass_index(index) * self.windows_per_block
        return self._gathered(self._windows(start, self.windows_per_block))

    def held_out_with_ids(self) -> tuple[list[Tensor], Tensor]:
        """The held-out rows (the text's first `eval_tokens`) and their token ids."""
        if self._held_out is None:
            self._held_out = list(itertools.islice(iter_windows(self.cfg, self.tokenizer, cycle=False),
                                                   self.eval_windows))  # fmt: skip
        return self._gathered(self._held_out)

    def block(self, index: int) -> list[Tensor]:
        return self.block_with_ids(index)[0]

    def eval_block(self) -> list[Tensor]:
        return self.held_out_with_ids()[0] if self.eval_windows else [torch.empty(0, d) for d in self.d_in]
