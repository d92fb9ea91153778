"""`sae-hub info RELEASE [SAE_ID]`: a release's SAEs, or one SAE's config and tensor shapes, no weights.

Weight files are described from their headers only (safetensors header, `.npz` central directory and
`.npy` headers), fetched with byte-range requests; config files are small and read whole.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("release", help="registry release name or Hub repo id")
    parser.add_argument("sae_id", nargs="?", help="SAE id in the release (or folder in the repo)")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _print_release(name: str, as_json: bool) -> int:
    from sae_hub import registry

    rel = registry.get_release(name)
    ids = rel.sae_ids
    facts = {
        "release": rel.name,
        "repo_id": rel.repo_id,
        "model": rel.model,
        "format": rel.format,
        "saes": len(ids),
        "links": dict(rel.links),
    }
    if as_json:
        print(json.dumps({**facts, "sae_ids": ids}, indent=2))
        return 0
    for key, value in facts.items():
        if value not in (None, {}):
            print(f"{key}: {value}")
    shown = ids[:20]
    print(
        "sae_ids:"
        + "".join(f"\n  {i}" for i in shown)
        + (f"\n  ... ({len(ids) - 20} more)" if len(ids) > 20 else "")
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from sae_hub import registry
    from sae_hub.hub import inspect_remote

    if args.sae_id is None and (registry.is_release(args.release) or "/" not in args.release):
        return _print_release(args.release, args.json)  # unknown names fail with the closest releases
    info = inspect_remote(args.release, args.sae_id, revision=args.revision)
    t = info.target
    facts = {
        "release": t.release,
        "sae_id": t.sae_id,
        "repo_id": t.repo_id,
        "url": t.url,
        "path": t.path or None,
        "revision": info.commit,
        "format": info.format,
        **{k: v for k, v in t.provenance.items() if k not in {"release", "sae_id", "repo_id"}},
        "config_overrides": t.config_overrides or None,
    }
    facts = {k: v for k, v in facts.items() if v is not None}
    if args.json:
        files = [
            {
                "path": f.path,
                "size": f.size,
                "config": f.config,
                "tensors": {x.name: {"dtype": x.dtype, "shape": list(x.shape)} for x in f.tensors},
            }
            for f in info.files
        ]
        print(json.dumps({**facts, "files": files, "bytes_read": info.bytes_read}, indent=2, default=str))
        return 0
    for key, value in facts.items():
        print(f"{key}: {value}")
    for f in info.files:
        print(f"\n{f.path} ({_size(f.size)})")
        if f.config is not None:
            text = json.dumps(f.config, indent=2, default=str) if not isinstance(f.config, str) else f.config
            print("  " + text.replace("\n", "\n  "))
        width = max((len(x.name) for x in f.tensors), default=0)
        for x in f.tensors:
            print(f"  {x.name:<{width}}  {x.dtype:<8}  {list(x.shape)}")
    if t.url is not None:
        print("\n(a torch pickle served by URL: its shapes are known only after `sae-hub download`)")
        return 0
    print(f"\n(read {_size(info.bytes_read)} of headers and configs; weights not downloaded)")
    return 0
