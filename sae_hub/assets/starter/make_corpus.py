"""Write the starter SAE's training corpus: Python's own documentation, as JSON lines.

Two offline sources from the Python standard library (English prose with some grammar and code):

1. `pydoc_data.topics`, the language reference pages behind `help("class")` (~460,000 characters).
   Lines wrapped at 70 columns are joined back into paragraphs; each topic becomes one line
   `{"source": "topic", "name": ..., "text": ...}`, in sorted topic order.
2. Docstrings of the public standard-library modules (`sys.stdlib_module_names`, sorted, minus private,
   GUI, test and platform-specific ones that fail to import): per module, one line holding the module
   docstring followed by the docstrings of its public classes, their public methods and its public
   functions (`inspect.getdoc`, in sorted name order), `{"source": "docstrings", "name": module, ...}`.

The text depends on the Python version (the starter was trained on the corpus from CPython 3.11).

    python sae_hub/assets/starter/make_corpus.py starter_corpus.jsonl
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

_UNDERLINE = re.compile(r"^[*=\-^~]{3,}$")  # reST section underlines
_SKIP_MODULES = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3", "pydoc_data",
    "ensurepip", "venv", "msilib", "winreg", "winsound", "nt", "msvcrt",
}  # fmt: skip


def unwrap(text: str) -> str:
    """Join hard-wrapped prose lines into paragraphs; keep indented (code/grammar) lines as they are."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.splitlines() if not _UNDERLINE.match(ln)]
        if lines and all(not ln.startswith(" ") for ln in lines):
            paragraphs.append(" ".join(ln.strip() for ln in lines))
        else:
            paragraphs.append(block.rstrip())
    return "\n\n".join(p for p in paragraphs if p.strip())


def _public(namespace: dict[str, object], owner: str) -> Iterator[tuple[str, object]]:
    """Public classes and functions defined in module `owner`, in sorted name order."""
    kinds = (inspect.isclass, inspect.isfunction, inspect.isbuiltin)
    for name, obj in sorted(namespace.items()):
        mine = not name.startswith("_") and getattr(obj, "__module__", None) == owner
        if mine and any(kind(obj) for kind in kinds):
            yield name, obj


def module_docstrings(name: str) -> str:
    """The module docstring of `name` followed by those of its public classes, methods and functions."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        module = importlib.import_module(name)
    parts = [inspect.getdoc(module) or ""]
    for _, obj in _public(vars(module), name):
        parts.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_") and (
                    inspect.isfunction(member) or inspect.ismethoddescriptor(member)
                ):
                    parts.append(inspect.getdoc(member) or "")
    return "\n\n".join(unwrap(p) for p in parts if p.strip())


def documents() -> Iterator[dict[str, str]]:
    """The corpus rows: reference topics first, then module docstrings."""
    for name in sorted(topics):
        yield {"source": "topic", "name": name, "text": unwrap(topics[name])}
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIP_MODULES:
            continue
        try:
            text = module_docstrings(name)
        except Exception:  # modules missing on this platform or build are skipped
            continue
        if text:
            yield {"source": "docstrings", "name": name, "text": text}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)  # noqa: T201  (a script)
        return 2
    out = Path(argv[0])
    rows = chars = 0
    with out.open("w", encoding="utf-8") as f:
        for row in documents():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            rows += 1
            chars += len(row["text"])
    print(f"wrote {rows} documents ({chars} characters) to {out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
