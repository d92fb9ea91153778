"""`top_features`, `feature_activations` and `logit_lens` against float64 references on a tiny model."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from fixtures.tiny_models import (  # noqa: F401  (single_thread is a fixture)
    HIDDEN,
    byte_tokenizer,
    single_thread,
    tiny_model,
)
from torch import nn

from sae_hub import SAE, SAEConfig, feature_activations, logit_lens, top_features
from sae_hub.errors import ConfigError, HookPointError
from sae_hub.hooks import capture_activations

pytestmark = pytest.mark.usefixtures("single_thread")
HOOK = "blocks.2.hook_mlp_out"
TEXT = "Steer me, maybe"


@cache
def model_of() -> nn.Module:
    return tiny_model("gemma2")


def make_sae() -> SAE:
    sae = SAE(SAEConfig(d_in=HIDDEN, d_sae=50).with_provenance(hook=HOOK))
    sae.reset_parameters(seed=4)
    with torch.no_grad():
        sae.b_enc.fill_(-0.01)  # some latents off on some tokens
    return sae


def reference_codes(sae: SAE) -> tuple[torch.Tensor, list[int]]:
    ids = byte_tokenizer()(TEXT, return_tensors="pt")["input_ids"]
    x = capture_activations(model_of(), [HOOK], ids)[HOOK][0].double()
    W_enc, b_enc = sae.W_enc.detach().double(), sae.b_enc.detach().double()
    return torch.relu(x @ W_enc + b_enc), ids[0].tolist()


def test_top_features_lists_the_k_strongest_latents_per_token():
    sae = make_sae()
    tok = byte_tokenizer()
    got = top_features(model_of(), tok, sae, TEXT, k=4)
    f, ids = reference_codes(sae)
    assert [t.token_id for t in got] == ids
    assert "".join(t.token for t in got) == "<bos>" + TEXT
    for pos, token in enumerate(got):
        values, indices = torch.topk(f[pos], 4)
        want = [(int(i), float(v)) for v, i in zip(values, indices, strict=True) if v > 0]
        assert [i for i, _ in token.features] == [i for i, _ in want]
        for (_, a), (_, b) in zip(token.features, want, strict=True):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-7)


def test_feature_activations_per_token():
    sae = make_sae()
    f, _ = reference_codes(sae)
    feature = int(f.sum(0).argmax())
    got = feature_activations(model_of(), byte_tokenizer(), sae, TEXT, feature)
    assert [t for t, _ in got][1:] == list(TEXT)
    for (_, value), want in zip(got, f[:, feature], strict=True):
        assert value == pytest.approx(float(want), rel=1e-5, abs=1e-7)


def test_logit_lens_is_the_unembedding_of_the_decoder_row():
    sae = make_sae()
    lens = logit_lens(model_of(), sae, 7, k=5, tokenizer=byte_tokenizer())
    logits = model_of().lm_head.weight.detach().double() @ sae.W_dec[7].detach().double()
    top, bottom = torch.topk(logits, 5), torch.topk(-logits, 5)
    assert [i for i, _, _ in lens.promoted] == top.indices.tolist()
    assert [i for i, _, _ in lens.suppressed] == bottom.indices.tolist()
    assert [v for _, _, v in lens.promoted] == pytest.approx(top.values.tolist(), rel=1e-5)
    assert lens.promoted[0][1] == byte_tokenizer().decode([lens.promoted[0][0]])
    no_names = logit_lens(model_of(), sae, 7, k=2)
    assert [t for _, t, _ in no_names.promoted] == ["", ""]


def test_bad_arguments_are_refused():
    sae = make_sae()
    with pytest.raises(ConfigError, match="out of range"):
        logit_lens(model_of(), sae, 50)
    with pytest.raises(ConfigError, match="k must be positive"):
        top_features(model_of(), byte_tokenizer(), sae, TEXT, k=0)
    wide = SAE(SAEConfig(d_in=HIDDEN, d_sae=8, d_out=HIDDEN + 1))
    with pytest.raises(HookPointError, match="width"):
        logit_lens(model_of(), wide, 0)
