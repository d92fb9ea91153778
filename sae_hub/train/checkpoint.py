"""Training checkpoints: full state in one folder per step, published atomically.

`checkpoints/step_000100/` holds `state.safetensors` (SAE parameters and dead-latent counters under
`model.*`, Adam moments under `optim.<param>.<key>`, the torch RNG state) and `state.json` (step,
buffer position, optimizer hyper-parameters, normalisation scales, the training config). A checkpoint
is written into a hidden temporary folder, every file fsynced, and renamed into place; only then is the
`latest` pointer replaced (atomically). A crash at any moment leaves the previous checkpoint intact and
`latest` pointing at it; leftover temporary folders are ignored and removed by the next save.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hub._io import write_text_atomic
from sae_hub.errors import CheckpointMismatchError
from sae_hub.formats._safetensors import read_safetensors, write_safetensors

logger = logging.getLogger(__name__)

LATEST = "latest"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(root: str | os.PathLike[str], step: int, tensors: dict[str, Tensor],
                    state: dict[str, Any], *, keep: int = 2) -> Path:  # fmt: skip
    """Write one checkpoint under `root` atomically, point `latest` at it, keep the newest `keep`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".step_*.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:09d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp", dir=root))
    try:
        write_safetensors(tensors, tmp / STATE_TENSORS, metadata={"format": "pt"})
        (tmp / STATE_JSON).write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        _fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_text_atomic(root / LATEST, final.name + "\n")
    except OSError as exc:  # e.g. disk full: say which checkpoint failed and which one is still good
        previous = latest_checkpoint(root)
        raise OSError(exc.errno, f"could not write checkpoint {final} ({exc.strerror or exc}); the previous "
                      f"checkpoint {previous or '(none)'} is intact and `latest` still points at it") from exc  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("checkpoint written: %s", final)
    return final


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The folder `latest` points at, or None when the run has no checkpoint yet."""
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    folder = Path(root) / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / STATE_JSON).is_file() else None


def load_checkpoint(folder: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint folder: (tensors copied into memory, state dict)."""
    folder = Path(folder)
    state = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    tensors = {k: v.clone() for k, v in read_safetensors(folder / STATE_TENSORS).items()}
    return tensors, state


def check_compatible(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume when fields that shape the SAEs or the data differ from the checkpoint's."""
    fields = ("architecture", "hooks", "d_sae", "expansion_factor", "k", "batch_size", "total_tokens",
              "seed", "buffer_tokens", "matryoshka_groups")  # fmt: skip
    diffs = [f"{f}: checkpoint {saved.get(f)!r}, config {current.get(f)!r}" for f in fields
             if saved.get(f) != current.get(f)]  # fmt: skip
    if diffs:
        raise CheckpointMismatchError(
            "cannot resume: the config differs from the checkpoint in " + "; ".join(diffs)
        )


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of `optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, extra in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(extra)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
