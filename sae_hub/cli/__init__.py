"""`sae-hub` command line: one module per subcommand, each with `add_arguments(parser)` and `run(args)`.

Subcommand modules are imported only when their command runs, so `sae-hub list` never imports torch
models or gradio.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# name -> (module under sae_hub.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("download", "fetch one SAE into the HF cache (and convert it once) for offline use"),
    "list": ("list", "list registry releases (release, repo, model, format, number of SAEs)"),
    "convert": (
        "convert",
        "rewrite an SAE in another on-disk format (native, saelens, sparsify, gemma-scope, ...)",
    ),
    "info": (
        "info",
        "show a release's SAEs, or one SAE's config and tensor shapes without downloading weights",
    ),
    "demo": ("demo", "serve the Space locally: inspect and steer SAE features in the browser"),
    "train": (
        "train",
        "train SAEs from a YAML/JSON config (accelerate launch -m sae_hub.train for several processes)",
    ),
    "eval": (
        "eval",
        "splice an SAE into its model: FVU, L0, dead latents, CE loss recovered, KL; table + JSON",
    ),
    "push": (
        "push",
        "upload a trained SAE folder (or a run's folders) to the Hub with a model card, in one commit",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand registered in COMMANDS."""
    parser = argparse.ArgumentParser(prog="sae-hub", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"sae_hub.cli.{module_name}")
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sae-hub`; returns the process exit code."""
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled

    from sae_hub.errors import SaeHubError

    try:
        return int(args._module.run(args) or 0)
    except (SaeHubError, HfHubHTTPError, EntryNotFoundError, OfflineModeIsEnabled) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
