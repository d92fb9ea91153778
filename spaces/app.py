"""sae_hub Space: see which SAE features fire on which tokens, read one feature, steer generation with it.

Run it locally with `sae-hub demo` (or `python spaces/app.py`); on a Hugging Face Space this file is the
`app_file`. Start-up options (or the environment variables in brackets) pick the model and the SAE:

    --model   any transformers id or local folder; `embedded` = SmolLM2-135M-Instruct     [SAE_HUB_MODEL]
    --sae     registry release, Hub repo or local folder; default: the bundled starter SAE [SAE_HUB_SAE]
    --sae-id  SAE id inside the release or repo                                          [SAE_HUB_SAE_ID]
    --hook    hook point, when the SAE's config does not name one                        [SAE_HUB_HOOK]

The UI calls only sae_hub's public API (through `space_engine.Session`), never writes outside
`SAE_HUB_CACHE`, bounds every input (`space_engine.Limits`) and reports errors as messages.
"""

import argparse
import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # space_engine sits beside this file (and, on a Space, the sae_hub folder)
    sys.path.insert(0, _HERE)

import space_engine  # noqa: E402
from space_engine import MODES, POSITIONS, EditSpec, LimitError, Limits, Session  # noqa: E402

logger = logging.getLogger("sae_hub.space")

ENVIRONMENT = {
    "model": "SAE_HUB_MODEL",
    "sae": "SAE_HUB_SAE",
    "sae_id": "SAE_HUB_SAE_ID",
    "hook": "SAE_HUB_HOOK",
}
EXAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog. Python raises an exception when a key is missing."
)
EXAMPLE_PROMPT = "Write a short story about a lighthouse keeper."


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


# ---- error reporting --------------------------------------------------------------------------------


def _message(exc: BaseException) -> str:
    from sae_hub.errors import SaeHubError

    if isinstance(exc, LimitError | SaeHubError | FileNotFoundError):
        return str(exc)
    logger.exception("request failed")
    return f"the request failed ({type(exc).__name__}: {exc})"


def _ui_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show any failure of a handler as a message in the UI (gr.Error), never as a traceback."""
    import gradio as gr

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise gr.Error(_message(exc), print_exception=False) from None

        return stream

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise gr.Error(_message(exc), print_exception=False) from None

    return call


# ---- the UI -------------------------------------------------------------------------------------------


def _highlight(tokens: list[str], acts: list[float]) -> list[tuple[str, float | None]]:
    """HighlightedText pairs: the score is the colour's alpha, so scale by the largest activation."""
    peak = max((abs(a) for a in acts), default=0.0) or 1.0
    return [(t, round(a / peak, 3) if a else None) for t, a in zip(tokens, acts, strict=True)]


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
    import gradio as gr
    import pandas as pd
    import torch

    import sae_hub

    session = load_session(model, sae, sae_id=sae_id, hook=hook, tokenizer=tokenizer, limits=limits)
    lim = session.limits
    try:
        releases = session.compatible_releases()
    except Exception:  # the registry is an aid here; the Space works without it
        logger.warning("could not list registry releases", exc_info=True)
        releases = []

    @_ui_errors
    def inspect_text(text: str, feature: float | None) -> tuple[Any, ...]:
        result = session.inspect(text, None if feature is None else int(feature))
        table = [
            [t.position, t.token, ", ".join(f"{f} ({v:.2f})" for f, v in t.features)]
            for t in result.per_token
        ]
        bars = pd.DataFrame(
            {
                "feature": [f"#{f}" for f, _, _ in result.top_features],
                "max activation": [v for _, v, _ in result.top_features],
            }
        )
        top = [[f, round(v, 3), n] for f, v, n in result.top_features]
        return (
            _highlight(result.tokens, result.feature_acts),
            gr.update(value=result.feature),
            bars,
            top,
            table,
            f"{len(result.tokens)} tokens · highlighting feature {result.feature}",
        )

    def pick_feature(evt: gr.SelectData) -> tuple[int, int]:
        row = evt.row_value or []
        if not row:
            raise gr.Error("that row has no feature")
        return int(row[0]), int(row[0])

    @_ui_errors
    def describe_feature(feature: float | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        card = session.feature_card(feature, progress=progress)
        spaced: list[tuple[str, float | None]] = []
        for snippet in card.snippets:
            spaced.extend((t, round(a, 3) if a > 0 else None) for t, a in snippet)
            spaced.append(("\n\n", None))
        summary = (
            f"**Feature {card.feature}** fires on {card.density:.3%} of the bundled corpus's tokens; "
            f"strongest activation there {card.max_activation:.3g}; decoder-row norm {card.decoder_norm:.3g} "
            "(an unnormalised add of strength 1 moves the residual by that much; clamp values are activations)."
        )
        return (
            summary,
            [[t, round(v, 3)] for t, v in card.promoted],
            [[t, round(v, 3)] for t, v in card.suppressed],
            spaced,
        )

    def steer_rows(values: tuple[Any, ...]) -> list[EditSpec]:
        rows = []
        for i in range(0, len(values), 3):
            feature, mode, strength = values[i : i + 3]
            no_op = mode == "add" and not strength  # also what an untouched row holds
            if feature is not None and str(feature).strip() != "" and not no_op:
                rows.append(EditSpec(int(feature), mode, float(strength or 0.0)))
        return rows

    @_ui_errors
    def steer(
        prompt: str,
        chat: bool,
        positions: str,
        temperature: float,
        seed: float,
        max_new_tokens: float,
        normalize: bool,
        skip_special: bool,
        *rows: Any,
    ) -> Iterator[tuple[str, str]]:
        steering = session.steering(
            steer_rows(rows),
            positions=positions,
            normalize=bool(normalize),
            skip_special_tokens=bool(skip_special),
        )
        yield from session.generate(
            prompt,
            steering,
            temperature=float(temperature),
            seed=int(seed),
            max_new_tokens=int(max_new_tokens),
            chat=bool(chat),
        )

    @_ui_errors
    def save_recipe(positions: str, normalize: bool, skip_special: bool, *rows: Any) -> str:
        steering = session.steering(
            steer_rows(rows),
            positions=positions,
            normalize=bool(normalize),
            skip_special_tokens=bool(skip_special),
        )
        # gradio serves files from its upload folder, which build_app keeps inside the cache
        return str(session.save_recipe(steering, Path(os.environ["GRADIO_TEMP_DIR"]) / "recipes"))

    @_ui_errors
    def load_recipe(path: str | None) -> list[Any]:
        if not path:
            raise LimitError("choose a recipe file")
        steering = session.load_recipe(path)
        edits = steering.edits
        normalize = any(e.normalize for e in edits)
        values: list[Any] = [steering.positions, normalize, steering.skip_special_tokens]
        for i in range(lim.max_edits):
            e = edits[i] if i < len(edits) else None
            values += [e.feature if e else None, e.mode if e else "add", float(e.value) if e else 0.0]
        return values

    @_ui_errors
    def load_sae(release: str, sae_id_: str, hook_: str) -> str:
        if not release:
            raise LimitError("choose a release, Hub repo or folder")
        new = sae_hub.SAE.from_pretrained(release, sae_id_ or None, dtype=torch.float32)
        session.set_sae(new, hook=hook_ or None, name=f"{release} / {sae_id_}" if sae_id_ else release)
        return session.describe()

    with gr.Blocks(title="sae_hub: inspect and steer SAE features") as demo:
        gr.Markdown("# sae_hub: inspect and steer SAE features")
        info = gr.Markdown(session.describe())
        with gr.Accordion("Change the SAE", open=False):
            gr.Markdown(
                "Registry releases for this model are listed; a Hub repo id or a local folder works too."
                if releases
                else "No registry release lists this model; type a Hub repo id or a local SAE folder."
            )
            with gr.Row():
                release = gr.Dropdown(releases, label="Release, repo or folder", allow_custom_value=True)
                release_id = gr.Dropdown([], label="SAE id", allow_custom_value=True)
                release_hook = gr.Textbox(label="Hook (optional)", placeholder="blocks.12.hook_resid_post")
            release.change(
                lambda r: gr.Dropdown(choices=session.release_ids(r) if r else []),
                release,
                release_id,
                api_visibility="private",
            )
            gr.Button("Load SAE").click(
                load_sae, [release, release_id, release_hook], info, api_name="load_sae"
            )

        with gr.Tabs() as tabs:
            with gr.Tab("Inspect", id="inspect"):
                with gr.Row():
                    text = gr.Textbox(EXAMPLE_TEXT, label="Text", lines=3, scale=4)
                    with gr.Column(scale=1):
                        feature = gr.Number(
                            None, label="Feature to highlight (empty: strongest)", precision=0
                        )
                        go = gr.Button("Inspect", variant="primary")
                status = gr.Markdown()
                highlight = gr.HighlightedText(
                    label="Activation of the feature per token", show_inline_category=False
                )
                with gr.Row():
                    bars = gr.BarPlot(
                        x="feature", y="max activation", sort="-y", label="Strongest features", height=280
                    )
                    top = gr.Dataframe(
                        headers=["feature", "max activation", "tokens"],
                        label="Strongest features (click one to select it)",
                        interactive=False,
                    )
                per_token = gr.Dataframe(
                    headers=["position", "token", "top features"],
                    label="Top features per token",
                    interactive=False,
                )
            with gr.Tab("Feature", id="feature"):
                with gr.Row():
                    card_feature = gr.Number(0, label="Feature", precision=0)
                    describe = gr.Button("Describe", variant="primary")
                    to_steer = gr.Button("Steer with this feature")
                summary = gr.Markdown()
                with gr.Row():
                    promoted = gr.Dataframe(headers=["token", "logit"], label="Promoted tokens (logit lens)")
                    suppressed = gr.Dataframe(
                        headers=["token", "logit"], label="Suppressed tokens (logit lens)"
                    )
                snippets = gr.HighlightedText(label="Top-activating snippets", show_inline_category=False)
            with gr.Tab("Steer", id="steer"):
                with gr.Row():
                    prompt = gr.Textbox(
                        EXAMPLE_PROMPT, label="Prompt", lines=2, scale=4, elem_id="steer-prompt"
                    )
                    chat = gr.Checkbox(True, label="Use the chat template", scale=1)
                row_inputs: list[Any] = []
                for i in range(lim.max_edits):
                    with gr.Row():
                        row_inputs += [
                            gr.Number(
                                None, label=f"Feature {i + 1}", precision=0, elem_id=f"steer-feature-{i}"
                            ),
                            gr.Dropdown(list(MODES), value="add", label="Mode", elem_id=f"steer-mode-{i}"),
                            gr.Slider(
                                -lim.max_strength,
                                lim.max_strength,
                                0,
                                step=0.01,
                                label="Strength",
                                elem_id=f"steer-strength-{i}",
                            ),
                        ]
                with gr.Row():
                    positions = gr.Radio(list(POSITIONS), value="all", label="Positions steered")
                    normalize = gr.Checkbox(True, label="Add the unit-norm decoder direction")
                    skip_special = gr.Checkbox(False, label="Leave special tokens unsteered")
                    temperature = gr.Slider(0, 2, 0.7, step=0.05, label="Temperature (0: greedy)")
                    seed = gr.Number(16, label="Seed", precision=0)
                    max_new = gr.Slider(
                        1, lim.max_new_tokens, min(48, lim.max_new_tokens), step=1, label="New tokens"
                    )
                run = gr.Button("Generate default and steered", variant="primary", elem_id="steer-run")
                with gr.Row():
                    default_out = gr.Textbox(label="Default", lines=8, elem_id="steer-default")
                    steered_out = gr.Textbox(label="Steered", lines=8, elem_id="steer-steered")
                with gr.Row():
                    save = gr.Button("Save recipe")
                    recipe_file = gr.File(label="Recipe (JSON)", interactive=False)
                    upload = gr.UploadButton("Load recipe", file_types=[".json"])

        inspect_outputs = [highlight, feature, bars, top, per_token, status]
        go.click(inspect_text, [text, feature], inspect_outputs, api_name="inspect")
        text.submit(inspect_text, [text, feature], inspect_outputs, api_visibility="private")
        top.select(pick_feature, None, [feature, card_feature]).then(
            inspect_text, [text, feature], inspect_outputs, api_visibility="private"
        )
        describe.click(
            describe_feature, card_feature, [summary, promoted, suppressed, snippets], api_name="feature"
        )
        to_steer.click(
            lambda f: (f, gr.Tabs(selected="steer")),
            card_feature,
            [row_inputs[0], tabs],
            api_visibility="private",
        )
        run.click(
            steer,
            [prompt, chat, positions, temperature, seed, max_new, normalize, skip_special, *row_inputs],
            [default_out, steered_out],
            api_name="steer",
        )
        recipe_controls = [positions, normalize, skip_special, *row_inputs]
        save.click(save_recipe, recipe_controls, recipe_file, api_name="save_recipe")
        upload.upload(load_recipe, upload, recipe_controls, api_name="load_recipe")
    demo.queue(default_concurrency_limit=1, max_size=32)
    return demo


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
