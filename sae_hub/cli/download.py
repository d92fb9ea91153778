"""`sae-hub download RELEASE SAE_ID`: fetch one SAE's files into the HF cache and convert it once.

Run it while online; afterwards `SAE.from_pretrained(RELEASE, SAE_ID)` works with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("release", help="registry release name or Hub repo id")
    parser.add_argument("sae_id", nargs="?", help="SAE id in the release (or folder in the repo)")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    parser.add_argument("--cache-dir", help="HF cache folder (default: the HF_HOME hub cache)")
    parser.add_argument("--force-download", action="store_true", help="download and convert again")


def run(args: argparse.Namespace) -> int:
    from sae_hub.hub import load_remote, locate

    cfg, _, source, _ = load_remote(
        args.release,
        args.sae_id,
        revision=args.revision,
        cache_dir=args.cache_dir,
        force_download=args.force_download,
    )
    located = locate(args.release, args.sae_id, revision=cfg.provenance.revision, cache_dir=args.cache_dir)
    print(f"cached {source}")
    print(f"format: {cfg.provenance.source_format}; d_in={cfg.d_in} d_sae={cfg.d_sae} {cfg.architecture}")
    if (located.converted / "model.safetensors").is_file():
        print(f"native copy: {located.converted}")
    return 0
