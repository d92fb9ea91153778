"""Run the CLI as `python -m sae_hub.cli`."""

from sae_hub.cli import main

raise SystemExit(main())
