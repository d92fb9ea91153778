"""`python -m sae_hub.train CONFIG [--resume]`, the entry point for `accelerate launch -m sae_hub.train`."""

from __future__ import annotations

import sys

from sae_hub.cli import main

raise SystemExit(main(["train", *sys.argv[1:]]))
