"""`evaluate` and `sae-hub eval` against float64 references computed here from the formulas."""

from __future__ import annotations

import json
import math
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from fixtures.saes import identity_sae
from fixtures.tiny_models import (  # noqa: F401  (single_thread is a fixture)
    HIDDEN,
    byte_tokenizer,
    single_thread,
    tiny_model,
)
from torch import nn

from sae_hub import SAE, SAEConfig, evaluate
from sae_hub.cli import main
from sae_hub.errors import ConfigError
from sae_hub.eval import plot_feature_density

pytestmark = pytest.mark.usefixtures("single_thread")
HOOK = "blocks.1.hook_resid_post"
TEXTS = ["The cat sat on the mat.", "hello world", "Paris is in France", "x", "1 2 3 4 5 6"]


@cache
def model_of() -> nn.Module:
    return tiny_model("llama")


def random_sae() -> SAE:
    sae = SAE(SAEConfig(d_in=HIDDEN, d_sae=40).with_provenance(hook=HOOK))
    sae.reset_parameters(seed=1)
    with torch.no_grad():
        sae.b_enc.fill_(-0.02)
        sae.b_enc[:3] = -1e3  # three latents that can never fire
    return sae


def test_a_perfect_sae_recovers_everything():
    r = evaluate(model_of(), byte_tokenizer(), identity_sae(HIDDEN, hook=HOOK), TEXTS, batch_size=2)
    assert r.fvu == pytest.approx(0.0, abs=1e-12)
    assert r.mse == pytest.approx(0.0, abs=1e-12)
    assert r.explained_variance == pytest.approx(1.0, abs=1e-12)
    assert r.cosine_similarity == pytest.approx(1.0, abs=1e-6)
    assert r.ce_loss_recovered == pytest.approx(1.0, abs=1e-6)
    assert r.delta_lm_loss == pytest.approx(0.0, abs=1e-6)
    assert r.kl_div == pytest.approx(0.0, abs=1e-6)


def reference(sae: SAE) -> dict[str, float]:
    """Every metric from the formulas, in float64, with plain torch hooks on the layer."""
    model, tok = model_of(), byte_tokenizer()
    layer = model.model.layers[1]
    W_enc, b_enc, W_dec, b_dec = (p.detach().double() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    xs, fs, ce = [], [], {"clean": [], "spliced": [], "zero": []}
    kl = []
    for text in TEXTS:  # one text at a time: no padding to get wrong
        ids = tok(text, return_tensors="pt")["input_ids"]
        seen: list[torch.Tensor] = []
        h = layer.register_forward_hook(lambda _m, _a, out, s=seen: s.append(out.detach()))
        with torch.no_grad():
            clean = model(ids).logits[0].double()
        h.remove()
        x = seen[0][0].double()
        f = torch.relu(x @ W_enc + b_enc)
        recon = f @ W_dec + b_dec
        runs = {"clean": clean}
        for name, replacement in (("spliced", recon), ("zero", torch.zeros_like(x))):
            h = layer.register_forward_hook(lambda _m, _a, _out, r=replacement: r[None].float())
            with torch.no_grad():
                runs[name] = model(ids).logits[0].double()
            h.remove()
        for name, logits in runs.items():
            ce[name].append(-F.log_softmax(logits[:-1], -1).gather(-1, ids[0, 1:, None])[:, 0])
        p_log, q_log = F.log_softmax(runs["clean"][:-1], -1), F.log_softmax(runs["spliced"][:-1], -1)
        kl.append((p_log.exp() * (p_log - q_log)).sum(-1))
        xs.append(x[1:])  # position 0 is <bos>, a special token
        fs.append(f[1:])
    x, f = torch.cat(xs), torch.cat(fs)
    recon = f @ W_dec + b_dec
    fvu = (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    ce_mean = {k: float(torch.cat(v).mean()) for k, v in ce.items()}
    return {
        "n_tokens": x.shape[0],
        "mse": float((x - recon).pow(2).mean()),
        "fvu": float(fvu),
        "cosine_similarity": float(F.cosine_similarity(x, recon, dim=-1).mean()),
        "l0_mean": float((f > 0).sum(-1).double().mean()),
        "dead_latents": int(((f > 0).sum(0) == 0).sum()),
        "dense_latents": int(((f > 0).double().mean(0) > 0.1).sum()),
        "ce_loss_clean": ce_mean["clean"],
        "ce_loss_spliced": ce_mean["spliced"],
        "ce_loss_zero_ablated": ce_mean["zero"],
        "ce_loss_recovered": (ce_mean["zero"] - ce_mean["spliced"]) / (ce_mean["zero"] - ce_mean["clean"]),
        "kl_div": float(torch.cat(kl).mean()),
    }


@pytest.mark.parametrize("batch_size", [1, 3])
def test_metrics_match_the_float64_reference(batch_size):
    sae = random_sae()
    got = evaluate(model_of(), byte_tokenizer(), sae, TEXTS, batch_size=batch_size).to_dict()
    want = reference(sae)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert got["dead_latents"] >= 3
    assert sum(got["l0_histogram"]) == want["n_tokens"]
    assert got["explained_variance"] == pytest.approx(1 - want["fvu"], rel=1e-6)
    assert got["delta_lm_loss"] == pytest.approx(want["ce_loss_spliced"] - want["ce_loss_clean"], rel=1e-4)
    density = got["feature_density_histogram"]
    assert sum(density["counts"]) + density["dead"] == 40
    json.dumps(got)  # JSON-ready


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="at least one text"):
        evaluate(model_of(), byte_tokenizer(), random_sae(), [])
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate(model_of(), byte_tokenizer(), random_sae(), TEXTS, batch_size=0)


def test_density_plot_is_a_png(tmp_path):
    r = evaluate(model_of(), byte_tokenizer(), random_sae(), TEXTS[:2])
    path = plot_feature_density(r, tmp_path / "density.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_a_table_and_writes_json_and_png(tmp_path, capsys):
    model_dir, sae_dir = tmp_path / "model", tmp_path / "sae"
    model_of().save_pretrained(model_dir)
    byte_tokenizer().save_pretrained(model_dir)
    random_sae().save_pretrained(sae_dir)
    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS) + "\n")
    out, png = tmp_path / "eval.json", tmp_path / "density.png"
    argv = ["eval", str(sae_dir), "--texts", str(texts), "--model", str(model_dir), "--output", str(out)]
    assert main([*argv, "--plot", str(png), "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "ce_loss_recovered" in printed
    assert "fvu" in printed
    metrics = json.loads(out.read_text())
    want = reference(random_sae())
    assert metrics["fvu"] == pytest.approx(want["fvu"], rel=1e-4)
    assert metrics["hook"] == HOOK
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not math.isnan(metrics["kl_div"])


def test_cli_reports_a_missing_texts_file(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--texts", str(tmp_path / "nope.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
