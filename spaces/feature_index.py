"""The Feature tab's corpus statistics: how often each SAE feature fires, and its top-activating windows.

The corpus is the prose of Python's language reference (`pydoc_data.topics`, in the standard library),
cut into fixed token windows. Encoding it once costs one model pass over a few thousand tokens, so the
result is saved as safetensors under the Space's cache folder, keyed by model, hook, window shape and
the SAE's weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

TOP = 5
"""Top-activating windows kept per feature."""


def corpus_paragraphs() -> list[str]:
    """Prose paragraphs of Python's language reference (`pydoc_data.topics`), the Space's bundled corpus."""
    from pydoc_data.topics import topics

    out = []
    for name in sorted(topics):
        for block in topics[name].split("\n\n"):
            lines = block.strip().splitlines()
            if len(lines) >= 2 and not any(ln.startswith(" ") for ln in block.splitlines()):
                out.append(" ".join(ln.strip() for ln in lines))
    return out


def corpus_windows(tokenizer: Any, n: int, width: int) -> Tensor:
    """Token windows of the bundled corpus, `[<= n, width]`."""
    ids: list[int] = []
    for paragraph in corpus_paragraphs():
        ids.extend(tokenizer(paragraph + "\n\n", add_special_tokens=False)["input_ids"])
        if len(ids) >= n * width:
            break
    usable = len(ids) // width * width
    return torch.tensor(ids[:usable], dtype=torch.long).view(-1, width)[:n]


def index_path(folder: Path, key: Sequence[Any], weights: Sequence[Tensor]) -> Path:
    """Cache file for one (model, hook, window shape, SAE weights) combination."""
    digest = hashlib.sha256(json.dumps(list(key)).encode())
    for w in weights:
        digest.update(w.detach().float().cpu().numpy().tobytes())
    return folder / f"{digest.hexdigest()[:24]}.safetensors"


def build_index(
    encode: Callable[[Tensor], Tensor], windows: Tensor, *, batch: int = 8, progress: Any = None
) -> dict[str, Tensor]:
    """Encode `windows` with `encode` (ids -> `[b, pos, d_sae]`); count firings, keep each feature's top windows."""
    fire: Tensor | None = None
    peaks, where = [], []
    starts = range(0, windows.shape[0], batch)
    for step, start in enumerate(starts):
        if progress is not None:
            progress((step, len(starts)), desc="encoding the bundled corpus (once)")
        acts = encode(windows[start : start + batch]).cpu()
        counts = (acts > 0).sum(dim=(0, 1))
        fire = counts if fire is None else fire + counts
        values, positions = acts.max(dim=1)
        peaks.append(values)
        where.append(positions)
    assert fire is not None, "the corpus gave no window"
    peak, pos = torch.cat(peaks), torch.cat(where)
    top_values, top_windows = torch.topk(peak.T, min(TOP, peak.shape[0]), dim=-1)
    return {
        "windows": windows.contiguous(),
        "fire_counts": fire,
        "top_values": top_values.contiguous(),
        "top_windows": top_windows.contiguous(),
        "top_positions": torch.gather(pos.T, 1, top_windows).contiguous(),
    }


def load_or_build(path: Path, build: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """Read the index at `path`, or build it and write it there atomically."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        return load_file(path)
    index = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(index, str(tmp))
    tmp.replace(path)
    return index
