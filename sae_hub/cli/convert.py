"""`sae-hub convert SRC DST --to FORMAT`: rewrite one SAE in another on-disk format.

SRC is a local folder or weights file in any readable format (detected from the file names), or
anything `SAE.from_pretrained` accepts (a registry release or Hub repo, with `--sae-id`). Formats
that cannot represent the SAE refuse with the reason; lossless folds (constant scales, pre-bias)
are applied when the target format has no field for them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# every format with a writer (kept literal so building the parser does not import torch)
WRITABLE = (
    "native",
    "saelens",
    "sparsify",
    "gemma-scope",
    "gemma-scope-2",
    "dictionary-learning",
    "openai",
    "goodfire",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="local SAE folder/file, registry release or Hub repo id")
    parser.add_argument("dst", help="output folder")
    parser.add_argument("--to", required=True, choices=WRITABLE, help="target format")
    parser.add_argument("--sae-id", default=None, help="SAE id inside the release or repo (remote SRC)")
    parser.add_argument("--revision", default=None, help="Hub revision of a remote SRC")
    parser.add_argument(
        "--dtype", default=None, help="cast the weights (float32, bfloat16, ...) before writing"
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty DST folder")


def run(args: argparse.Namespace) -> int:
    from sae_hub import SAE
    from sae_hub.errors import ConfigError
    from sae_hub.formats import read

    dst = Path(args.dst)
    if dst.is_dir() and any(dst.iterdir()) and not args.force:
        raise ConfigError(f"{dst} is not empty; pass --force to write into it", field="dst")
    src = Path(args.src)
    local = src / args.sae_id if args.sae_id and src.is_dir() else src
    if local.exists():
        cfg, tensors, fmt = read(local)
        sae = SAE.from_tensors(cfg, tensors, dtype=args.dtype, source=str(local))
    else:
        sae = SAE.from_pretrained(args.src, args.sae_id, revision=args.revision, dtype=args.dtype)
        fmt = sae.provenance.source_format or "?"
    sae.save_pretrained(dst, format=args.to)
    c = sae.cfg
    print(f"read  {args.src} ({fmt}): {c.architecture}, d_in={c.d_in}, d_sae={c.d_sae}, dtype={c.dtype}")
    print(f"wrote {dst} ({args.to}): {', '.join(sorted(p.name for p in dst.iterdir()))}")
    return 0
