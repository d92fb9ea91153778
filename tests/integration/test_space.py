"""The Space (spaces/app.py) served on 127.0.0.1 and driven through gradio_client, on a tiny random Llama.

Activations shown by the Inspect tab are checked against a float64 recomputation from the hidden states
and the TopK formula; steering, limits, errors, recipes and the cache-only writes go through the API
exactly as the browser calls it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from fixtures.tiny_models import byte_tokenizer, tiny_model

from sae_hub import SAE, Provenance, SAEConfig
from sae_hub.cli.demo import space_app
from sae_hub.constants import SAE_HUB_CACHE

gradio_client = pytest.importorskip("gradio_client")

LAYER, D_SAE, K = 1, 64, 4
MAX_INPUT = 64
TEXT = "Sparse features, dense models."


def _rows(*edits: tuple[int | None, str, float], n: int = 4) -> list[object]:
    """Steer-tab row values (feature, mode, strength) padded with empty rows."""
    rows = list(edits) + [(None, "add", 0.0)] * (n - len(edits))
    return [v for row in rows for v in row]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, tokenizer = tiny_model("llama"), byte_tokenizer()
    cfg = SAEConfig(
        d_in=model.config.hidden_size,
        d_sae=D_SAE,
        architecture="topk",
        k=K,
        provenance=Provenance(hook=f"blocks.{LAYER}.hook_resid_post"),
    )
    sae = SAE(cfg)
    sae.reset_parameters(seed=0)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    return model, tokenizer, sae


@pytest.fixture(scope="module")
def served(tiny, tmp_path_factory):
    """The Space on a free port of 127.0.0.1, launched from an empty working directory."""
    app = space_app()
    model, tokenizer, sae = tiny
    cwd = tmp_path_factory.mktemp("space_cwd")
    old = Path.cwd()
    os.chdir(cwd)
    limits = app.Limits(max_input_tokens=MAX_INPUT, max_new_tokens=24, max_strength=500.0, index_windows=12)
    demo = app.build_app(model, sae, tokenizer=tokenizer, limits=limits)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        yield gradio_client.Client(url, verbose=False), cwd
    finally:
        demo.close()
        os.chdir(old)


def _reference_acts(model, tokenizer, sae, text: str) -> torch.Tensor:
    """Float64 TopK features from the layer's output hidden state: topk(x W_enc + b_enc), then ReLU."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states[LAYER + 1][0].double()
        pre = hidden @ sae.W_enc.double() + sae.b_enc.double()
    values, indices = pre.topk(K, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values.clamp(min=0))


def test_inspect_matches_a_float64_reference(served, tiny):
    client, _ = served
    model, tokenizer, sae = tiny
    highlight, feature, bars, top, per_token, status = client.predict(TEXT, None, api_name="/inspect")
    n_tokens = len(tokenizer(TEXT)["input_ids"])
    assert len(highlight) == n_tokens == len(per_token["data"])
    assert f"{n_tokens} tokens" in status
    ref = _reference_acts(model, tokenizer, sae, TEXT)
    peak = ref.max(dim=0).values
    # the strongest features over the text, in order, with their peak activation
    expected = [int(f) for f in peak.topk(len(top["data"])).indices]
    assert [row[0] for row in top["data"]] == expected
    for f, value, fired in top["data"]:
        assert value == pytest.approx(float(peak[f]), abs=1e-3)
        assert fired == int((ref[:, f] > 0).sum())
    assert [row[0] for row in bars["data"]] == [f"#{f}" for f in expected]
    # no feature asked for: the strongest one is highlighted, scaled to [0, 1]
    chosen = feature["value"]
    assert chosen == expected[0]
    trace = ref[:, chosen] / ref[:, chosen].abs().max()
    for item, want in zip(highlight, trace.tolist(), strict=True):
        got = item["class_or_confidence"]
        assert (got or 0.0) == pytest.approx(want, abs=2e-3)
    assert [item["token"] for item in highlight] == [tokenizer.decode([i]) for i in tokenizer(TEXT)["input_ids"]]


def test_inspect_a_chosen_feature(served, tiny):
    client, _ = served
    model, tokenizer, sae = tiny
    ref = _reference_acts(model, tokenizer, sae, TEXT)
    quiet = int(ref.max(dim=0).values.argmin())  # a feature silent on this text: nothing is highlighted
    highlight, feature, *_ = client.predict(TEXT, quiet, api_name="/inspect")
    assert feature["value"] == quiet
    assert all(item["class_or_confidence"] is None for item in highlight)


def test_over_long_input_gets_the_limit_message(served):
    client, _ = served
    long_text = "word " * 100
    with pytest.raises(gradio_client.exceptions.AppError, match=rf"limit is {MAX_INPUT} tokens"):
        client.predict(long_text, None, api_name="/inspect")
    with pytest.raises(gradio_client.exceptions.AppError, match=rf"limit is {MAX_INPUT} tokens"):
        client.predict(long_text, False, "all", 0.7, 16, 8, False, False, *_rows((1, "add", 5.0)), api_name="/steer")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((TEXT, D_SAE + 5), rf"feature {D_SAE + 5} does not exist; this SAE has features 0..{D_SAE - 1}"),
        (("   ", None), "enter some text"),
    ],
)
def test_bad_requests_are_messages_not_tracebacks(served, args, message):
    client, _ = served
    with pytest.raises(gradio_client.exceptions.AppError, match=message) as info:
        client.predict(*args, api_name="/inspect")
    assert "Traceback" not in str(info.value)


def _steer(client, rows, *, positions="all", temperature=0.8, seed=16, new=16) -> tuple[str, str]:
    job = client.submit("Hi there", False, positions, temperature, seed, new, False, False, *rows, api_name="/steer")
    return job.result()


def test_steering_strength_zero_reproduces_the_default(served):
    client, _ = served
    default, steered = _steer(client, _rows((3, "add", 0.0), (7, "add", 0.0)))
    assert default and steered == default


def test_large_strength_changes_the_text(served):
    client, _ = served
    default, steered = _steer(client, _rows((3, "add", 400.0)))
    assert default != steered
    again_default, again_steered = _steer(client, _rows((3, "add", 400.0)))
    assert (again_default, again_steered) == (default, steered)  # the same seed: the same texts


def test_generation_streams_both_columns(served):
    client, _ = served
    job = client.submit(
        "Hi there", False, "all", 0.0, 0, 12, False, False, *_rows((3, "clamp", 300.0)), api_name="/steer"
    )
    job.result()
    updates = job.outputs()
    assert len(updates) > 2
    default, steered = updates[-1]
    assert all(d == "" or default.startswith(d) for d, s in updates if s == "")  # default streams first
    assert steered != default


def test_strength_beyond_the_bound_is_refused(served):
    client, _ = served
    with pytest.raises(gradio_client.exceptions.AppError, match=r"outside ±500"):
        _steer(client, _rows((3, "add", 900.0)))


def test_recipe_download_then_upload_restores_the_rows(served):
    client, _ = served
    rows = _rows((3, "add", 12.5), (9, "ablate", 0.0), (4, "clamp", 2.0))
    path = client.predict("prompt", False, True, *rows, api_name="/save_recipe")
    recipe = json.loads(Path(path).read_text())
    assert recipe["positions"] == "prompt"
    assert recipe["skip_special_tokens"] is True
    assert recipe["edits"][1] == {"feature": 9, "mode": "ablate", "value": 0.0, "normalize": False}
    restored = client.predict(gradio_client.handle_file(path), api_name="/load_recipe")
    assert list(restored) == ["prompt", False, True, *rows]


def test_feature_tab_logit_lens_density_and_snippets(served, tiny):
    client, _ = served
    model, tokenizer, sae = tiny
    feature = 5
    summary, promoted, suppressed, snippets = client.predict(feature, api_name="/feature")
    with torch.no_grad():
        logits = model.get_output_embeddings().weight.double() @ sae.W_dec[feature].double()
    assert len(promoted["data"]) == len(suppressed["data"]) == 10
    top = [tokenizer.decode([int(i)]) for i in logits.topk(10).indices]
    assert [row[0] for row in promoted["data"]] == top
    bottom = [tokenizer.decode([int(i)]) for i in (-logits).topk(10).indices]
    assert [row[0] for row in suppressed["data"]] == bottom
    density = float(re.search(r"fires on ([0-9.]+)%", summary).group(1)) / 100
    assert 0 < density <= 1
    assert any(item["class_or_confidence"] == 1.0 for item in snippets)  # the strongest token of the corpus
    index_files = list((SAE_HUB_CACHE / "space" / "feature_index").glob("*.safetensors"))
    assert len(index_files) == 1
    stamp = index_files[0].stat().st_mtime_ns
    assert client.predict(feature, api_name="/feature")[0] == summary
    assert index_files[0].stat().st_mtime_ns == stamp  # computed once, then read from the cache


def test_the_app_writes_only_under_its_cache(served):
    client, cwd = served
    client.predict(TEXT, None, api_name="/inspect")
    path = client.predict("all", False, False, *_rows((3, "add", 1.0)), api_name="/save_recipe")
    client.predict(gradio_client.handle_file(path), api_name="/load_recipe")
    assert list(cwd.iterdir()) == []
    assert Path(os.environ["GRADIO_TEMP_DIR"]).resolve().is_relative_to(SAE_HUB_CACHE.resolve())
