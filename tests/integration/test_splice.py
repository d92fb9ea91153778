"""Splicing SAEs into tiny models of every family: exact no-op with the error term, replacement without."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from fixtures.tiny_models import (  # noqa: F401  (single_thread is a fixture)
    FAMILIES,
    HIDDEN,
    byte_tokenizer,
    single_thread,
    tiny_model,
)
from torch import nn

from sae_hub import SAE, SAEConfig, splice
from sae_hub.errors import HookPointError
from sae_hub.hooks import capture_activations, hook_names, resolve_hook
from sae_hub.splice import attach, detach

pytestmark = pytest.mark.usefixtures("single_thread")


@cache
def model_of(family: str) -> nn.Module:
    return tiny_model(family)


@cache
def batch() -> dict[str, torch.Tensor]:
    return dict(byte_tokenizer()(["hello world", "hi"], return_tensors="pt", padding=True))


def random_sae(d_in: int, d_sae: int = 48, *, seed: int = 0, hook: str | None = None) -> SAE:
    sae = SAE(SAEConfig(d_in=d_in, d_sae=d_sae).with_provenance(hook=hook))
    sae.reset_parameters(seed=seed)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.02, generator=torch.Generator().manual_seed(seed))
        sae.b_dec.normal_(0, 0.02, generator=torch.Generator().manual_seed(seed + 1))
    return sae


def identity_sae(d: int) -> SAE:
    """A perfect SAE: relu(x) - relu(-x) = x with W_enc = [I, -I], W_dec = [I; -I]."""
    eye = torch.eye(d)
    return SAE.from_tensors(
        SAEConfig(d_in=d, d_sae=2 * d),
        {
            "W_enc": torch.cat([eye, -eye], 1),
            "b_enc": torch.zeros(2 * d),
            "W_dec": torch.cat([eye, -eye], 0),
            "b_dec": torch.zeros(d),
        },
    )


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch()).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_error_term_splice_is_an_exact_no_op_at_every_hook(family):
    model = model_of(family)
    clean = logits(model)
    for name in hook_names(model):
        sae = random_sae(resolve_hook(model, name).width)
        with splice(model, {name: sae}) as run:
            out = logits(model)
        assert (out - clean).abs().max() <= 1e-5, name
        assert torch.equal(out, clean), name
        x = capture_activations(model, [name], batch()["input_ids"], batch()["attention_mask"])[name]
        torch.testing.assert_close(run.features[name], sae.encode(x), rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_replace_mode_writes_the_reconstruction(family):
    model = model_of(family)
    clean = logits(model)
    name = "blocks.1.hook_resid_post"
    sae = random_sae(HIDDEN)
    x = capture_activations(model, [name], batch()["input_ids"], batch()["attention_mask"])[name]
    with splice(model, {name: sae}, error_term=False):
        downstream = capture_activations(
            model, ["blocks.2.hook_resid_pre"], batch()["input_ids"], batch()["attention_mask"]
        )
        out = logits(model)
    # reference: the reconstruction from the weights in float64
    f = torch.relu(x.double() @ sae.W_enc.double() + sae.b_enc.double())
    recon = f @ sae.W_dec.double() + sae.b_dec.double()
    torch.testing.assert_close(downstream["blocks.2.hook_resid_pre"].double(), recon, atol=1e-5, rtol=1e-5)
    assert (out - clean).abs().max() > 1e-3
    with splice(model, {name: identity_sae(HIDDEN)}, error_term=False):
        assert (logits(model) - clean).abs().max() <= 1e-5


def test_replace_mode_at_a_norm_and_a_mid_hook_keeps_the_container_math():
    model = model_of("gemma2")
    clean = logits(model)
    for name in ("blocks.1.ln2.hook_normalized", "blocks.1.hook_resid_mid", "blocks.0.attn.hook_z"):
        width = resolve_hook(model, name).width
        with splice(model, {name: identity_sae(width)}, error_term=False):
            assert (logits(model) - clean).abs().max() <= 1e-4, name


def test_several_saes_and_default_hooks_from_provenance():
    model = model_of("qwen2")
    a = random_sae(HIDDEN, hook="blocks.0.hook_resid_post")
    b = random_sae(HIDDEN, seed=1, hook="nonexistent.hook")
    b.cfg = b.cfg.with_provenance(hf_hook="model.layers.2.output")  # the HF path is the fallback
    with splice(model, a) as run_a, splice(model, b) as run_b:
        logits(model)
    assert set(run_a.features) == {"blocks.0.hook_resid_post"}
    assert set(run_b.features) == {"model.layers.2.output"}
    with splice(model, {"blocks.0.hook_mlp_out": a, "blocks.2.hook_resid_pre": b}, error_term=False) as run:
        out = logits(model)
    assert set(run.features) == {"blocks.0.hook_mlp_out", "blocks.2.hook_resid_pre"}
    assert torch.isfinite(out).all()


def test_attach_persists_until_detach():
    model = model_of("llama")
    clean = logits(model)
    run = attach(model, random_sae(HIDDEN), hook="blocks.1.hook_resid_post", error_term=False)
    first = logits(model)
    assert (first - clean).abs().max() > 1e-3
    assert torch.equal(logits(model), first)
    assert run.features["blocks.1.hook_resid_post"].shape == (*batch()["input_ids"].shape, 48)
    assert detach(model) == 1
    assert detach(model) == 0
    assert torch.equal(logits(model), clean)


def test_width_mismatch_names_both_widths():
    model = model_of("llama")
    with pytest.raises(HookPointError, match=r"width 64 .* d_in is 32"):
        attach(model, random_sae(HIDDEN), hook="blocks.0.mlp.hook_post")
    with pytest.raises(HookPointError, match="pass hook="):
        attach(model, random_sae(HIDDEN))
    assert detach(model) == 0


def test_a_width_only_known_at_run_time_is_checked_then():
    model = model_of("llama")
    with (
        splice(model, random_sae(HIDDEN), hook="model.layers.0.mlp.act_fn"),
        pytest.raises(HookPointError, match="width 64"),
    ):
        logits(model)


def test_transcoder_replaces_its_output_hook():
    model = model_of("llama")
    cfg = SAEConfig(d_in=HIDDEN, d_sae=40, d_out=HIDDEN).with_provenance(
        hook="blocks.1.ln2.hook_normalized", hook_out="blocks.1.hook_mlp_out"
    )
    tc = SAE(cfg)
    tc.reset_parameters(seed=3)
    names = ["blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"]
    clean = logits(model)
    with splice(model, tc) as run:
        assert torch.equal(logits(model), clean)
    x_in = capture_activations(model, names[:1], batch()["input_ids"], batch()["attention_mask"])[names[0]]
    with splice(model, tc, error_term=False):
        acts = capture_activations(
            model, names, batch()["input_ids"], batch()["attention_mask"], stop_early=False
        )
    assert set(run.features) == {names[0]}
    pred = (
        torch.relu(x_in.double() @ tc.W_enc.double() + tc.b_enc.double()) @ tc.W_dec.double()
        + tc.b_dec.double()
    )
    torch.testing.assert_close(acts[names[1]].double(), pred, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_with_cache_sees_the_prompt_then_one_token_per_step(family):
    model = model_of(family)
    name = "blocks.1.hook_resid_post"
    tok = byte_tokenizer()
    inputs = tok(["hello world", "hi"], return_tensors="pt", padding=True)
    plain = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=0)
    shapes: list[tuple[int, ...]] = []
    with splice(model, random_sae(HIDDEN), hook=name) as run:
        recorder = resolve_hook(model, name).register(
            lambda x: shapes.append(tuple(run.features[name].shape))
        )
        try:
            spliced = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=0)
        finally:
            recorder.remove()
    prompt = inputs["input_ids"].shape[1]
    assert shapes == [(2, prompt, 48), (2, 1, 48), (2, 1, 48), (2, 1, 48)]
    assert torch.equal(spliced, plain)
