"""The Space's UI: the gradio Blocks with its Inspect, Feature and Steer tabs around one `Session`.

Every handler turns the session's plain values into gradio values and reports any failure as a message
(`gr.Error`), never as a traceback. gradio is imported only when the UI is built, after `app.build_app`
has pointed its upload folder into the cache.
"""

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from space_engine import MODES, POSITIONS, EditSpec, LimitError, Session

logger = logging.getLogger("sae_hub.space")

EXAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog. Python raises an exception when a key is missing."
)
EXAMPLE_PROMPT = "Write a short story about a lighthouse keeper."


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


def _edit_specs(values: tuple[Any, ...]) -> list[EditSpec]:
    """The Steer tab's rows (feature, mode, strength per row) that ask for an edit."""
    rows = []
    for i in range(0, len(values), 3):
        feature, mode, strength = values[i : i + 3]
        no_op = mode == "add" and not strength  # also what an untouched row holds
        if feature is not None and str(feature).strip() != "" and not no_op:
            rows.append(EditSpec(int(feature), mode, float(strength or 0.0)))
    return rows


def build_blocks(session: Session) -> Any:
    """Build the Space's `gr.Blocks` around a loaded session, its events queued one at a time."""
    import gradio as gr
    import pandas as pd
    import torch

    import sae_hub

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

    def steering_of(positions: str, normalize: bool, skip_special: bool, rows: tuple[Any, ...]) -> Any:
        return session.steering(
            _edit_specs(rows),
            positions=positions,
            normalize=bool(normalize),
            skip_special_tokens=bool(skip_special),
        )

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
        steering = steering_of(positions, normalize, skip_special, rows)
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
        steering = steering_of(positions, normalize, skip_special, rows)
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
