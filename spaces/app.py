"""sae_hub Space: see which SAE features fire on which tokens, read one feature, steer generation with it.

Run it locally with `sae-hub demo` (or `python spaces/app.py`); on a Hugging Face Space this file is the
`app_file`. Start-up options (or the environment variables in brackets) pick the model and the SAE:

    --model   any transformers id or local folder; `embedded` = SmolLM2-135M-Instruct     [SAE_HUB_MODEL]
    --sae     registry release, Hub repo or local folder; default: the bundled starter SAE [SAE_HUB_SAE]
    --sae-id  SAE id inside the release or repo                                          [SAE_HUB_SAE_ID]
    --hook    hook point, when the SAE's config does not name one                        [SAE_HUB_HOOK]

The UI (`space_ui.py`) calls only sae_hub's public API (through `space_engine.Session`), never writes
outside `SAE_HUB_CACHE`, bounds every input (`space_limits.Limits`) and reports errors as messages.
"""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the space_* modules sit beside this file (and, on a Space, the sae_hub folder)
    sys.path.insert(0, _HERE)

import space_engine  # noqa: E402
import space_ui  # noqa: E402
from space_engine import MODES, POSITIONS, EditSpec, LimitError, Limits, Session  # noqa: E402

__all__ = [
    "ENVIRONMENT",
    "MODES",
    "POSITIONS",
    "EditSpec",
    "LimitError",
    "Limits",
    "Session",
    "add_arguments",
    "build_app",
    "launch",
    "load_session",
    "main",
]

ENVIRONMENT = {
    "model": "SAE_HUB_MODEL",
    "sae": "SAE_HUB_SAE",
    "sae_id": "SAE_HUB_SAE_ID",
    "hook": "SAE_HUB_HOOK",
}


# ---- start-up -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the Space's start-up options (shared by `sae-hub demo` and `python spaces/app.py`)."""
    env = {key: os.environ.get(name) for key, name in ENVIRONMENT.items()}
    parser.add_argument("--model", default=env["model"] or "embedded", help="transformers id or local folder")
    parser.add_argument("--sae", default=env["sae"], help="registry release, Hub repo or local SAE folder")
    parser.add_argument("--sae-id", default=env["sae_id"], help="SAE id inside the release or repo")
    parser.add_argument("--hook", default=env["hook"], help="hook point, if the SAE config lacks one")
    parser.add_argument("--host", default=None, help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860 or the next free one)")


def load_session(
    model: Any = "embedded",
    sae: Any = None,
    *,
    sae_id: str | None = None,
    hook: str | None = None,
    tokenizer: Any = None,
    limits: Limits | None = None,
) -> Session:
    """Load the model (an id, a path or a loaded model with `tokenizer`) and the SAE (a source or an SAE)."""
    import torch

    import sae_hub

    if isinstance(model, str | os.PathLike):
        model, tokenizer = sae_hub.load_model(str(model))
    elif tokenizer is None:
        raise LimitError(
            "a loaded model needs its tokenizer: build_app(model=model, tokenizer=tokenizer, ...)"
        )
    sae_name = "" if sae is None else (f"{sae} / {sae_id}" if sae_id else str(sae))
    if sae is None:
        sae, sae_name = space_engine.STARTER_SAE, "sae_hub starter (SmolLM2-135M-Instruct, layer 15)"
    if not isinstance(sae, sae_hub.SAE):
        sae = sae_hub.SAE.from_pretrained(sae, sae_id, dtype=torch.float32)  # CPU-friendly, exact enough
    trained_on, loaded = sae.cfg.provenance.model, getattr(model.config, "name_or_path", "")
    if sae_name.startswith("sae_hub starter") and trained_on != loaded:
        raise LimitError(
            f"the bundled starter SAE fits only {trained_on}; pass --sae for {loaded or 'this model'}"
        )
    return Session(model, tokenizer, sae, hook=hook, sae_name=sae_name, limits=limits)


def build_app(
    model: Any = "embedded",
    sae: Any = None,
    *,
    sae_id: str | None = None,
    hook: str | None = None,
    tokenizer: Any = None,
    limits: Limits | None = None,
) -> Any:
    """Build the Space (a `gr.Blocks`) around a model and SAE: sources to load, or loaded objects."""
    from sae_hub.constants import SAE_HUB_CACHE

    # gradio reads these when imported: keep its uploads inside our cache and its analytics off
    os.environ.setdefault("GRADIO_TEMP_DIR", str(SAE_HUB_CACHE / "space" / "gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio  # noqa: F401  (imported here, after the settings above, and before the slow model load)

    session = load_session(model, sae, sae_id=sae_id, hook=hook, tokenizer=tokenizer, limits=limits)
    return space_ui.build_blocks(session)


def main(argv: list[str] | None = None) -> int:
    """Parse start-up options, build the Space and serve it until interrupted."""
    parser = argparse.ArgumentParser(prog="sae_hub-space", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return launch(parser.parse_args(argv))


def launch(args: argparse.Namespace) -> int:
    """Build the Space from parsed start-up options, print its local URL and serve until interrupted."""
    print(f"loading model {args.model!r} and SAE {args.sae or 'starter'!r} ...", flush=True)
    demo = build_app(args.model, args.sae, sae_id=args.sae_id, hook=args.hook)
    _, url, _ = demo.launch(
        server_name=args.host, server_port=args.port, prevent_thread_lock=True, quiet=True, ssr_mode=False
    )
    print(f"sae_hub Space running at {url} (Ctrl+C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
