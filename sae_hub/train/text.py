"""Text to token windows: read documents (a `datasets` dataset, streamed, or local .txt / .jsonl files),
tokenise them, and cut the token stream into fixed-size context windows under a BOS policy.

Local `.txt` files hold documents separated by blank lines; `.jsonl` files hold one JSON object per line
with the text under `text_field`. The window stream is deterministic, so a block of windows can be found
again by its index (resume, cache rebuild) by re-tokenising without running the model.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sae_hub.errors import ConfigError
from sae_hub.train.config import TrainConfig

logger = logging.getLogger(__name__)


def _local_files(spec: str) -> list[Path] | None:
    """Files named by a path, folder or glob; None when `spec` names no local file (a dataset id)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl") and p.is_file())
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not files:
        return None if not any(ch in spec for ch in "*?[") and not path.suffix else []
    return files


def iter_documents(cfg: TrainConfig) -> Iterator[str]:
    """Yield the documents of the configured text source once, in a fixed order."""
    if not cfg.dataset:
        raise ConfigError("dataset must name a `datasets` dataset or local text files", field="dataset")
    files = _local_files(cfg.dataset)
    if files == []:
        raise ConfigError(f"dataset {cfg.dataset!r} matches no .txt or .jsonl file", field="dataset")
    if files is None:
        yield from _dataset_documents(cfg)
        return
    for path in files:
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        yield _field(json.loads(line), cfg.text_field, f"{path}:{lineno}")
        else:
            for doc in path.read_text(encoding="utf-8").split("\n\n"):
                if doc.strip():
                    yield doc.strip()


def _field(row: Any, name: str, where: str) -> str:
    if not isinstance(row, dict) or not isinstance(row.get(name), str):
        raise ConfigError(f"{where}: expected an object with a string field {name!r}", field="text_field")
    return row[name]


def _dataset_documents(cfg: TrainConfig) -> Iterator[str]:
    import datasets

    ds = datasets.load_dataset(cfg.dataset, cfg.dataset_config, split=cfg.dataset_split, streaming=True)
    for i, row in enumerate(ds):
        yield _field(row, cfg.text_field, f"{cfg.dataset}[{i}]")


def iter_windows(
    cfg: TrainConfig, tokenizer: Any, *, cycle: bool = True, skip: int = 0
) -> Iterator[list[int]]:
    """Yield token windows of exactly `context_size` ids; with `cycle`, restart the text when it ends.

    `skip` windows are left out at the start of every pass (the held-out ones), so that a run longer than
    its text never trains on its evaluation windows in a later epoch.
    """
    bos = tokenizer.bos_token_id
    if bos is None and cfg.bos_policy != "none":
        bos = tokenizer.eos_token_id  # documents still need a separator
    body = cfg.context_size - (1 if cfg.bos_policy == "window" and bos is not None else 0)
    if body < 1:
        raise ConfigError("context_size must leave room for tokens after BOS", field="context_size")
    epoch = 0
    while True:
        stream: list[int] = []
        produced = 0
        for doc in iter_documents(cfg):
            ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
            if cfg.bos_policy != "none" and bos is not None:
                stream.append(bos)
            stream.extend(ids)
            while len(stream) >= body:
                window, stream = stream[:body], stream[body:]
                produced += 1
                if produced > skip:
                    yield [bos, *window] if body < cfg.context_size else window
        if produced <= skip:
            raise ConfigError(
                f"dataset {cfg.dataset!r} holds {produced} windows of {cfg.context_size} tokens; none is left "
                f"for training after the {skip} held out for evaluation (eval_tokens)",
                field="dataset",
            )
        if not cycle:
            return
        epoch += 1
        logger.warning("text source exhausted; starting epoch %d over the same documents", epoch)
