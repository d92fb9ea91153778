"""`sae-hub demo`: serve the Gradio Space (spaces/app.py) locally and print its URL.

With no options it runs offline on the embedded SmolLM2-135M-Instruct and the starter SAE shipped in
sae_hub/assets/starter; `--model` and `--sae` (or SAE_HUB_MODEL / SAE_HUB_SAE) pick others. The Space
lives in the source tree, next to the package (`pip install -e .` keeps it there).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from sae_hub.errors import ConfigError

SPACE_APP = Path(__file__).resolve().parents[2] / "spaces" / "app.py"


@cache
def space_app() -> ModuleType:
    """Import spaces/app.py from the source tree (once)."""
    if not SPACE_APP.is_file():
        raise ConfigError(
            f"`sae-hub demo` runs the Space in {SPACE_APP}, which this installation lacks; "
            "install sae_hub from a source checkout (pip install -e '.[space]') or run spaces/app.py there"
        )
    spec = importlib.util.spec_from_file_location("sae_hub_space_app", SPACE_APP)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{SPACE_APP} cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    if SPACE_APP.is_file():  # the Space owns its options; without it `run` explains what is missing
        space_app().add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return int(space_app().launch(args))
