"""The Space under load from a second process and under hostile inputs, on a tiny random Llama.

The load runs `bench/load_space.py` in its own process against the Space served by this one, so the
server's RSS can be read around it. A short run is in the default suite; the full 60 s run is `slow`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures.tiny_models import byte_tokenizer, tiny_model

from sae_hub import SAE, Provenance, SAEConfig
from sae_hub.cli.demo import space_app

gradio_client = pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parents[2]
MAX_INPUT, MAX_STRENGTH = 64, 500.0


def rss_mb() -> float:
    """Resident set size of this (the server's) process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The Space on a free port of 127.0.0.1: (url, client, an engine Session on the same model and SAE)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Space's single worker; more threads only contend on 2 shared cores
    torch.manual_seed(0)
    model, tokenizer = tiny_model("llama"), byte_tokenizer()
    cfg = SAEConfig(d_in=model.config.hidden_size, d_sae=64, architecture="topk", k=4,
                    provenance=Provenance(hook="blocks.1.hook_resid_post"))  # fmt: skip
    sae = SAE(cfg)
    sae.reset_parameters(seed=0)
    app = space_app()
    limits = app.Limits(
        max_input_tokens=MAX_INPUT, max_new_tokens=8, max_strength=MAX_STRENGTH, index_windows=8
    )
    old = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("space_cwd"))
    demo = app.build_app(model, sae, tokenizer=tokenizer, limits=limits)
    session = app.load_session(model, sae, tokenizer=tokenizer, limits=limits)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        yield url, gradio_client.Client(url, verbose=False), session
    finally:
        demo.close()
        os.chdir(old)
        torch.set_num_threads(threads)


def load(url: str, clients: int, seconds: float, connections: int) -> tuple[dict, float, float]:
    """Run the load script in a second process; return (its result, RSS before, RSS after) in MiB."""
    gc.collect()
    before = rss_mb()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "bench" / "load_space.py"), "--url", url, "--clients", str(clients),
           "--seconds", str(seconds), "--connections", str(connections), "--text", "Features fire on some tokens."]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 240)
    assert done.returncode == 0, done.stderr[-3000:]
    gc.collect()
    time.sleep(0.5)
    return json.loads(done.stdout.strip().splitlines()[-1]), before, rss_mb()


def check_load(result: dict, before: float, after: float, growth_mb: float) -> None:
    print(f"\nload: {json.dumps(result)}\nserver RSS: {before:.0f} MiB before, {after:.0f} MiB after")
    assert result["error"] == 0, result["errors"]
    assert result["ok"] > 0
    assert after - before < growth_mb, (before, after)


def test_short_load_50_clients(space):
    url, client, _ = space
    client.predict("warm up the model and the queue", None, api_name="/inspect")
    result, before, after = load(url, clients=50, seconds=3, connections=5)
    check_load(result, before, after, growth_mb=150)


@pytest.mark.slow
def test_full_load_50_clients(space):
    """50 users with their own Client; SAE_HUB_LOAD_SECONDS=60 for the run reported in RELIABILITY.md."""
    url, client, _ = space
    client.predict("warm up the model and the queue", None, api_name="/inspect")
    seconds = float(os.environ.get("SAE_HUB_LOAD_SECONDS", "10"))
    result, before, after = load(url, clients=50, seconds=seconds, connections=50)
    check_load(result, before, after, growth_mb=100)


# ---- hostile inputs ------------------------------------------------------------------------------


def refused(client, *args, api_name: str, match: str, within: float = 30.0) -> str:
    """Call an endpoint expecting a clear refusal (an AppError with `match` in it) within `within` s."""
    t0 = time.monotonic()
    with pytest.raises(Exception) as info:  # noqa: PT011 (gradio_client raises AppError or ValueError)
        client.predict(*args, api_name=api_name)
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert match in message, message
    assert "Traceback" not in message
    assert elapsed < within, elapsed
    return message


STEER_DEFAULTS = ("all", False, False)  # positions, normalize, skip_special


def steer_args(
    prompt: str, *, strength: float = 5.0, temperature: float = 0.0, new: float = 4, seed: float = 1
):
    rows = [3, "add", strength] + [None, "add", 0.0] * 3
    return (prompt, False, "all", temperature, seed, new, False, False, *rows)


def test_huge_text_is_refused_quickly(space):
    _, client, _ = space
    refused(
        client,
        "x" * 2_000_000,
        None,
        api_name="/inspect",
        match=f"the limit is {MAX_INPUT} tokens",
        within=60,
    )


def test_control_characters_are_inspected_not_crashed(space):
    _, client, _ = space
    text = "bell\x07 nul\x00 esc\x1b[31m red\x1b[0m \u202e rtl \ufeff bom \ud7ff"
    highlight, *_, status = client.predict(text, None, api_name="/inspect")
    assert "tokens" in status
    assert len(highlight) > 0


@pytest.mark.parametrize("text", ["", "   \n\t  "])
def test_empty_text_is_refused(space, text):
    _, client, _ = space
    refused(client, text, None, api_name="/inspect", match="enter some text")


@pytest.mark.parametrize("feature", [10**9, -1])
def test_feature_out_of_range_is_refused(space, feature):
    _, client, _ = space
    refused(client, "hello", feature, api_name="/inspect", match="does not exist")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"strength": 1e9}, "greater than maximum value 500"),
        ({"strength": -1e9}, "less than minimum value -500"),
        ({"temperature": 1e9}, "greater than maximum value 2"),
        ({"new": 10**9}, "greater than maximum value 8"),
    ],
    ids=["strength-1e9", "strength--1e9", "temperature-1e9", "new-tokens-1e9"],
)
def test_out_of_range_numbers_are_refused_by_the_ui(space, overrides, match):
    """The sliders' own bounds refuse absurd numbers before the handler runs."""
    _, client, _ = space
    refused(client, *steer_args("Once upon", **overrides), api_name="/steer", match=match)


def test_non_finite_numbers_cannot_even_be_sent(space):
    """JSON has no NaN/Inf: gradio_client refuses to encode them, so they never reach the Space."""
    _, client, _ = space
    with pytest.raises(ValueError, match="not JSON compliant"):
        client.predict(*steer_args("Once upon", strength=math.nan), api_name="/steer")


@pytest.mark.parametrize(
    ("edit", "settings", "match"),
    [
        ((3, "add", math.nan), {}, "strength nan is outside"),
        ((3, "add", math.inf), {}, "strength inf is outside"),
        ((3, "add", 1e9), {}, "strength 1000000000.0 is outside"),
        ((3, "add", 1.0), {"temperature": math.nan}, "temperature must be between 0 and 2"),
        ((3, "add", 1.0), {"max_new_tokens": 10**9}, "new tokens must be between 1 and 8"),
    ],
    ids=["nan", "inf", "1e9", "temperature-nan", "new-tokens-huge"],
)
def test_engine_refuses_non_finite_and_huge_settings(space, edit, settings, match):
    """The same checks one level down (a raw HTTP client could send NaN, which Python's JSON parser accepts)."""
    app = space_app()
    session = space[2]

    def run() -> None:
        steering = session.steering([app.EditSpec(*edit)], positions="all")
        temperature, new = settings.get("temperature", 0.0), settings.get("max_new_tokens", 4)
        list(
            session.generate(
                "Once upon", steering, temperature=temperature, seed=1, max_new_tokens=new, chat=False
            )
        )

    with pytest.raises(app.LimitError, match=match):
        run()


def test_space_still_answers_after_hostile_inputs(space):
    _, client, _ = space
    *_, status = client.predict("still alive?", None, api_name="/inspect")
    assert "tokens" in status
