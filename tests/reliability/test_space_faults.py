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
    """The Space on a free port of 127.0.0.1: (url, client)."""
    torch.manual_seed(0)
    model, tokenizer = tiny_model("llama"), byte_tokenizer()
    cfg = SAEConfig(d_in=model.config.hidden_size, d_sae=64, architecture="topk", k=4,
                    provenance=Provenance(hook="blocks.1.hook_resid_post"))  # fmt: skip
    sae = SAE(cfg)
    sae.reset_parameters(seed=0)
    app = space_app()
    limits = app.Limits(max_input_tokens=MAX_INPUT, max_new_tokens=8, max_strength=MAX_STRENGTH, index_windows=8)
    old = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("space_cwd"))
    demo = app.build_app(model, sae, tokenizer=tokenizer, limits=limits)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        yield url, gradio_client.Client(url, verbose=False)
    finally:
        demo.close()
        os.chdir(old)


def load(url: str, clients: int, seconds: float) -> tuple[dict, float, float]:
    """Run the load script in a second process; return (its result, RSS before, RSS after) in MiB."""
    gc.collect()
    before = rss_mb()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "bench" / "load_space.py"), "--url", url, "--clients", str(clients),
           "--seconds", str(seconds)]  # fmt: skip
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
    url, client = space
    client.predict("warm up the model and the queue", None, api_name="/inspect")
    result, before, after = load(url, clients=50, seconds=4)
    check_load(result, before, after, growth_mb=150)


@pytest.mark.slow
def test_full_load_50_clients_60_seconds(space):
    url, client = space
    client.predict("warm up the model and the queue", None, api_name="/inspect")
    load(url, clients=50, seconds=5)  # gradio's per-session structures reach their steady size
    result, before, after = load(url, clients=50, seconds=60)
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


def steer_args(prompt: str, *, strength: float = 5.0, temperature: float = 0.0, new: float = 4, seed: float = 1):
    rows = [3, "add", strength] + [None, "add", 0.0] * 3
    return (prompt, False, "all", temperature, seed, new, False, False, *rows)


def test_huge_text_is_refused_quickly(space):
    _, client = space
    refused(client, "x" * 2_000_000, None, api_name="/inspect", match=f"the limit is {MAX_INPUT} tokens")


def test_control_characters_are_inspected_not_crashed(space):
    _, client = space
    text = "bell\x07 nul\x00 esc\x1b[31m red\x1b[0m \u202e rtl \ufeff bom \ud7ff"
    highlight, *_, status = client.predict(text, None, api_name="/inspect")
    assert "tokens" in status
    assert len(highlight) > 0


@pytest.mark.parametrize("text", ["", "   \n\t  "])
def test_empty_text_is_refused(space, text):
    _, client = space
    refused(client, text, None, api_name="/inspect", match="enter some text")


@pytest.mark.parametrize("feature", [10**9, -1])
def test_feature_out_of_range_is_refused(space, feature):
    _, client = space
    refused(client, "hello", feature, api_name="/inspect", match="does not exist")


@pytest.mark.parametrize("strength", [1e9, -1e9, math.inf, math.nan])
def test_absurd_steering_strength_is_refused(space, strength):
    _, client = space
    refused(client, *steer_args("Once upon", strength=strength), api_name="/steer", match="outside ±500")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"temperature": math.nan}, "temperature must be between 0 and 2"),
        ({"temperature": 1e9}, "temperature must be between 0 and 2"),
        ({"new": 10**9}, "new tokens must be between 1 and 8"),
        ({"new": math.nan}, "new tokens"),
        ({"seed": math.nan}, "seed"),
    ],
    ids=["temperature-nan", "temperature-huge", "new-tokens-huge", "new-tokens-nan", "seed-nan"],
)
def test_bad_generation_settings_are_refused(space, overrides, match):
    _, client = space
    refused(client, *steer_args("Once upon", **overrides), api_name="/steer", match=match)


def test_space_still_answers_after_hostile_inputs(space):
    _, client = space
    *_, status = client.predict("still alive?", None, api_name="/inspect")
    assert "tokens" in status
