"""Disk cache of activations, so one expensive model pass feeds many SAE runs.

Layout of a cache folder: `manifest.json` (what produced the activations: model, hooks, text source,
context size, BOS policy, block size; and one entry per shard with its row count and byte size),
`eval.safetensors` (held-out rows) and `shard_00000.safetensors`, ... (training block i). Each shard
holds `acts.{j}` `[rows, d_in_j]` float32 for the j-th hook and `token_ids [rows]`. Shards and the
manifest are written atomically, the manifest after each shard, so an interrupted build resumes where it
stopped; on open every shard is checked against its recorded size and safetensors header, and a
truncated or missing shard is rebuilt from the text (the window stream is deterministic).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from sae_hub._io import write_json_atomic
from sae_hub.errors import ConfigError, FormatError
from sae_hub.formats._safetensors import read_header, read_safetensors, write_safetensors
from sae_hub.train.activations import ModelSource
from sae_hub.train.config import TrainConfig

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CACHE_FORMAT = "sae_hub.activation_cache"
# 2: a shard never holds windows of a second pass over the text (version 1 caches could, in their last
# shard, and then held the held-out windows too); the manifest records `epoch_blocks`.
CACHE_VERSION = 2
_KEY_FIELDS = (
    "model", "hooks", "dataset", "dataset_config", "dataset_split", "text_field", "context_size",
    "bos_policy", "exclude_special_tokens", "model_dtype", "buffer_tokens", "eval_tokens",
)  # fmt: skip


def cache_key(cfg: TrainConfig) -> dict[str, Any]:
    """The config fields that determine the cached activations."""
    return {name: getattr(cfg, name) for name in _KEY_FIELDS}


def _shard_ok(folder: Path, entry: dict[str, Any]) -> bool:
    """True when a shard file exists with the recorded size and a header that matches its rows."""
    path = folder / entry["file"]
    try:
        if os.path.getsize(path) != entry["bytes"]:
            return False
        header, _, _ = read_header(path)
    except (OSError, FormatError):
        return False
    return header.get("token_ids", {}).get("shape") == [entry["rows"]]


class CachedSource:
    """An activation source backed by a cache folder, building missing or damaged shards on demand."""

    def __init__(self, folder: str | os.PathLike[str], cfg: TrainConfig,
                 make_source: Callable[[], ModelSource] | None = None) -> None:  # fmt: skip
        self.folder = Path(folder)
        self.cfg = cfg
        self._make_source = make_source
        self._source: ModelSource | None = None
        path = self.folder / MANIFEST
        if path.is_file():
            self.manifest = json.loads(path.read_text(encoding="utf-8"))
            self._check_manifest()
        else:
            self.manifest = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": cache_key(cfg),
                             "hooks": list(cfg.hooks), "d_in": None, "eval": None, "shards": []}  # fmt: skip
        self.hooks: list[str] = list(cfg.hooks)
        self.damaged = {i for i, e in enumerate(self.manifest["shards"]) if not _shard_ok(self.folder, e)}
        eval_entry = self.manifest["eval"]
        self.eval_damaged = eval_entry is not None and not _shard_ok(self.folder, eval_entry)
        for i in sorted(self.damaged):
            logger.warning("activation cache shard %s is damaged or missing; it will be rebuilt",
                           self.manifest["shards"][i]["file"])  # fmt: skip

    def _check_manifest(self) -> None:
        m = self.manifest
        if m.get("format") != CACHE_FORMAT or m.get("version") != CACHE_VERSION:
            raise ConfigError(f"{self.folder} is not a version-{CACHE_VERSION} sae_hub activation cache; delete "
                              "it to build it again", field="activation_cache")  # fmt: skip
        want = cache_key(self.cfg)
        for name, value in want.items():
            if m["key"].get(name) != value:
                raise ConfigError(
                    f"activation cache {self.folder} was built with {name}={m['key'].get(name)!r}, but the "
                    f"config says {value!r}; use another activation_cache folder",
                    field=name,
                )

    @property
    def d_in(self) -> list[int]:
        if self.manifest["d_in"] is None:
            self.manifest["d_in"] = self._model_source().d_in
        return list(self.manifest["d_in"])

    def _model_source(self) -> ModelSource:
        if self._source is None:
            if self._make_source is None:
                raise ConfigError(f"activation cache {self.folder} is incomplete and no model was given "
                                  "to build it", field="activation_cache")  # fmt: skip
            self._source = self._make_source()
        return self._source

    def _write(self, name: str, acts: list[Tensor], ids: Tensor) -> dict[str, Any]:
        tensors = {f"acts.{j}": a.float() for j, a in enumerate(acts)} | {"token_ids": ids}
        write_safetensors(tensors, self.folder / name, metadata={"format": "pt"})
        return {"file": name, "rows": int(ids.shape[0]), "bytes": os.path.getsize(self.folder / name)}

    def _save_manifest(self) -> None:
        write_json_atomic(self.folder / MANIFEST, self.manifest)

    def build_eval(self) -> None:
        """Write the held-out shard if it is missing or damaged."""
        if self.manifest["eval"] is not None and not self.eval_damaged:
            return
        src = self._model_source()
        acts, ids = src.held_out_with_ids()
        self.manifest["d_in"] = src.d_in
        self.manifest["eval"] = self._write("eval.safetensors", acts, ids)
        self.eval_damaged = False
        self._save_manifest()

    def build_block(self, index: int) -> None:
        """Write training shard `index` (and any before it) if missing or damaged; stop where the text
        ends (the shard count becomes `epoch_blocks`: later blocks go round again)."""
        shards = self.manifest["shards"]
        for i in range(index + 1):
            if i < len(shards) and i not in self.damaged:
                continue
            src = self._model_source()
            if src.pass_index(i) != i:
                self.manifest["epoch_blocks"] = src.epoch_blocks
                self._save_manifest()
                return
            logger.info("caching activations block %d", i)
            acts, ids = src.block_with_ids(i)
            self.manifest["d_in"] = src.d_in
            entry = self._write(f"shard_{i:05d}.safetensors", acts, ids)
            if i < len(shards):
                shards[i] = entry
            else:
                shards.append(entry)
            self.damaged.discard(i)
            self._save_manifest()

    def ensure(self, total_tokens: int, batch_size: int) -> int:
        """Build the eval shard and enough training shards for `total_tokens` (one pass of the text at
        most); return the shard count."""
        self.build_eval()
        covered, index = 0, 0
        while covered < total_tokens:
            stored = self._stored_index(index)
            covered += self.manifest["shards"][stored]["rows"] // batch_size * batch_size
            index += 1
            if covered == 0 and index > len(self.manifest["shards"]):
                raise ConfigError(f"no activation block of {self.folder} fills one batch of {batch_size}; raise "
                                  "buffer_tokens", field="buffer_tokens")  # fmt: skip
        return len(self.manifest["shards"])

    def _stored_index(self, index: int) -> int:
        """The shard holding training block `index`, building it first if it is missing or damaged."""
        epoch = self.manifest.get("epoch_blocks")
        if epoch:
            index %= epoch
        n = len(self.manifest["shards"])
        if self._make_source is not None and (index >= n or index in self.damaged):
            self.build_block(index)
            epoch = self.manifest.get("epoch_blocks")
            return index % epoch if epoch else index
        return index % n if self._make_source is None and n else index  # read-only and short: go round

    def block(self, index: int) -> list[Tensor]:
        index = self._stored_index(index)
        entry = self.manifest["shards"][index]
        if index in self.damaged:  # never read a shard whose size or header disagrees with the manifest
            raise FormatError(
                "activation cache shard is damaged (truncated, missing or rewritten) and no model was given "
                "to rebuild it",
                path=str(self.folder / entry["file"]),
            )
        data = read_safetensors(self.folder / entry["file"])
        return [data[f"acts.{j}"] for j in range(len(self.hooks))]

    def eval_block(self) -> list[Tensor]:
        self.build_eval()
        data = read_safetensors(self.folder / self.manifest["eval"]["file"])
        return [data[f"acts.{j}"] for j in range(len(self.hooks))]
