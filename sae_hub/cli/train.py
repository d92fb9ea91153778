"""`sae-hub train CONFIG [--resume]`: train SAEs from a YAML/JSON training config.

Several processes: `accelerate launch --num_processes N -m sae_hub.train CONFIG`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training config file (.yaml, .yml or .json)")
    parser.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/latest")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="override a config field (VALUE parsed as YAML), e.g. --set total_tokens=200000",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import yaml

    from sae_hub.errors import ConfigError
    from sae_hub.train import TrainConfig, train

    cfg = TrainConfig.load(args.config)
    changes = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}", field=name)
        changes[name] = yaml.safe_load(value)
    if changes:
        cfg = TrainConfig.from_dict(cfg.to_dict() | changes)
    result = train(cfg, resume=args.resume)
    saes = result if isinstance(result, dict) else {cfg.hooks[0]: result}
    for hook, sae in saes.items():
        metrics = sae.cfg.provenance.extra.get("metrics", {})
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        print(f"{hook}: {sae.extra_repr()} | {shown}")
    return 0
