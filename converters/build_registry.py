"""Generate `sae_hub/registry/data/*.yaml` from SAELens's published registry plus our pattern rules.

Release names, SAE ids and (repo, path) pairs are copied from the `pretrained_saes.yaml` that the
installed `sae-lens` package ships, so code moves over unchanged. Everything the runtime needs beyond
that (HF model id, site, layer, width, hook names, format) is worked out here, once, and written as
explicit fields; the runtime never parses names. Families SAELens lists only partly (Llama Scope
transcoders) or not at all (OpenAI's original `.pt` files, sparsify) come from pattern rules. The
facts live in `registry_facts.py`, one builder per family in `registry_families.py`, and the compact
table form (templates, products, list cells) in `registry_tables.py`.

Usage:
    python converters/build_registry.py [--saelens-yaml PATH] [--out sae_hub/registry/data] [--check]

With `--check` nothing is written: the script exits 1 if the files on disk differ from what it would
write. Every generated release that SAELens also lists is re-expanded with sae_hub's own loader and
compared id by id (repo and path) against SAELens before anything is written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "converters"))

from registry_families import FAMILIES  # noqa: E402
from registry_tables import render  # noqa: E402

from sae_hub.registry.loader import parse_file  # noqa: E402


def check_against_saelens(text: str, source: str, sl: dict[str, Any]) -> list[str]:
    """Expand a rendered file with sae_hub's loader; list every (release, id) whose repo/path differs."""
    problems = []
    for rel in parse_file(text, source=source):
        if not rel.in_saelens:
            continue
        theirs = {s["id"]: (sl[rel.name]["repo_id"], str(s["path"])) for s in sl[rel.name]["saes"]}
        ours = {i: (s.repo_id, s.path) for i, s in rel.saes.items()}
        if theirs != ours:
            diff = sorted(set(theirs.items()) ^ set(ours.items()))[:3]
            problems.append(f"{rel.name}: {diff}")
    return problems


def saelens_yaml_path() -> Path:
    """The registry file of the installed sae-lens, found without importing it (its import is slow)."""
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or spec.origin is None:
        raise SystemExit("sae-lens is not installed; pass --saelens-yaml PATH")
    return Path(os.path.dirname(spec.origin)) / "pretrained_saes.yaml"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saelens-yaml", type=Path, default=None, help="SAELens pretrained_saes.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "sae_hub" / "registry" / "data")
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = parser.parse_args(list(argv) if argv is not None else None)
    src = args.saelens_yaml or saelens_yaml_path()
    sl = yaml.load(src.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    source = f"sae-lens {importlib.metadata.version('sae-lens')} pretrained_saes.yaml"
    covered: set[str] = set()
    failed = False
    for family, build in FAMILIES.items():
        releases = build(sl)
        covered |= {r["name"] for r in releases if r.get("in_saelens")}
        text = render(family, releases, source)
        problems = check_against_saelens(text, f"{family}.yaml", sl)
        if problems:
            print(f"{family}: ids/paths differ from SAELens:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        target = args.out / f"{family}.yaml"
        n = sum(r.n_saes for r in parse_file(text, source=target.name))
        if args.check:
            if not target.exists() or target.read_text() != text:
                print(f"{target} is out of date", file=sys.stderr)
                failed = True
        else:
            target.write_text(text)
        print(f"{family:20s} {len(releases):4d} releases {n:6d} SAEs")
    missing = sorted(set(sl) - covered)
    if missing:
        print(f"SAELens releases not covered: {missing}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
