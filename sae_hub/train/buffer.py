"""Shuffling buffer: turns numbered activation blocks into training batches with a resumable position.

Each block (tokens of many windows, hence many documents) is permuted with a generator seeded by
`(seed, block)`, then cut into global batches; the remainder that does not fill a batch is dropped.
Rank r of w processes takes rows `r*B/w .. (r+1)*B/w` of every global batch, so w processes see
exactly the batches of one process, split. The position `(block, batch)` is all a checkpoint needs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sae_hub.errors import ConfigError
from sae_hub.train.activations import ActivationSource


class ShuffleBuffer:
    """Global batches of shuffled rows from an activation source; this rank's share of each."""

    def __init__(self, source: ActivationSource, *, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1) -> None:  # fmt: skip
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world} processes")
        self.source = source
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.block, self.batch = 0, 0
        self._rows: list[Tensor] | None = None
        self._perm: Tensor | None = None

    def state(self) -> dict[str, int]:
        """Position of the next batch."""
        return {"block": self.block, "batch": self.batch}

    def load_state(self, state: dict[str, int]) -> None:
        """Continue from a saved position."""
        self.block, self.batch = int(state["block"]), int(state["batch"])
        self._rows = self._perm = None

    def _load(self) -> None:
        self._rows = self.source.block(self.block)
        # only the first block must fill a batch: a shorter later one (a text's tail) is skipped by `next`
        if self._rows[0].shape[0] < self.batch_size and self.block == 0:
            raise ConfigError(
                f"activation block {self.block} has {self._rows[0].shape[0]} usable tokens, fewer than one batch "
                f"({self.batch_size}); raise buffer_tokens",
                field="buffer_tokens",
            )
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.block)
        self._perm = torch.randperm(self._rows[0].shape[0], generator=gen)

    def next(self) -> list[Tensor]:
        """This rank's rows of the next global batch, one tensor per hook."""
        while True:
            if self._rows is None:
                self._load()
            assert self._perm is not None
            assert self._rows is not None
            if (self.batch + 1) * self.batch_size <= self._perm.numel():
                share = self.batch_size // self.world
                start = self.batch * self.batch_size + self.rank * share
                idx = self._perm[start : start + share]
                self.batch += 1
                return [rows[idx] for rows in self._rows]
            self.block, self.batch = self.block + 1, 0
            self._rows = self._perm = None
