"""`sae-hub list`: the registry's releases as a table (release, repo, model, format, number of SAEs)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="HF model id or SAELens model name (e.g. google/gemma-2-2b)"
    )
    parser.add_argument(
        "--site", default=None, help="only SAEs at this site (res, mlp, att, transcoder, ...)"
    )
    parser.add_argument("--layer", type=int, default=None, help="only SAEs reading this layer")


def run(args: argparse.Namespace) -> int:
    from sae_hub import registry

    rows = []
    for rel in registry.list_releases(args.model):
        if args.site is None and args.layer is None:
            count = rel.n_saes
        else:
            count = sum(
                1
                for sae in rel.saes.values()
                if (args.site is None or sae.site == args.site)
                and (args.layer is None or sae.layer == args.layer)
            )
        if count:
            fmt = rel.format if rel.supported else f"{rel.format} (not loadable yet)"
            rows.append((rel.name, rel.repo_id or "(https URL)", rel.model, fmt, str(count)))
    if not rows:
        print("no releases match")
        return 1
    header = ("RELEASE", "REPO", "MODEL", "FORMAT", "SAES")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows)} releases, {sum(int(r[-1]) for r in rows)} SAEs")
    return 0
