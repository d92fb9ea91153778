"""`sae-hub demo`: a short real session: build or load an SAE, encode, decode, report the numbers."""

from __future__ import annotations

import argparse
import tempfile

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sae", default=None, help="release/repo/folder to load (default: a fresh TopK SAE)")
    parser.add_argument("--sae-id", default=None, help="SAE id inside the release or repo")


def run(args: argparse.Namespace) -> int:
    from sae_hub import SAE, SAEConfig

    if args.sae:
        sae = SAE.from_pretrained(args.sae, args.sae_id)
    else:
        sae = SAE(SAEConfig(d_in=576, d_sae=4096, architecture="topk", k=32))
    x = torch.randn(8, sae.cfg.d_in)
    code = sae.encode_sparse(x)
    recon = sae.decode_sparse(code.values, code.indices)
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_pretrained(tmp)
        again = SAE.from_pretrained(tmp)
    same = torch.equal(again(x), sae(x))
    print(f"SAE: {sae.extra_repr()}")
    print(f"encoded {tuple(x.shape)} -> {tuple(code.values.shape)} active values per token")
    print(f"reconstruction {tuple(recon.shape)}, save/load round trip identical: {same}")
    return 0
