"""Write the starter SAE's training corpus: Python's own language reference, as JSON lines.

The text is `pydoc_data.topics` from the Python standard library (the reference pages behind
`help("class")`, about 460,000 characters of English prose with some grammar and code), so it is
obtainable offline wherever Python is. Lines wrapped at 70 columns are joined back into paragraphs;
each topic becomes one JSON line `{"topic": ..., "text": ...}`, in sorted topic order.

    python sae_hub/assets/starter/make_corpus.py starter_corpus.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from pydoc_data.topics import topics

_UNDERLINE = re.compile(r"^[*=\-^~]{3,}$")  # reST section underlines


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


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)  # noqa: T201  (a script)
        return 2
    out = Path(argv[0])
    with out.open("w", encoding="utf-8") as f:
        for name in sorted(topics):
            f.write(json.dumps({"topic": name, "text": unwrap(topics[name])}, ensure_ascii=False) + "\n")
    print(f"wrote {len(topics)} topics to {out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
