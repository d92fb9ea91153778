"""Steering edits checked against hand-computed activations; position policies under generate; recipes."""

from __future__ import annotations

import json
from functools import cache

import pytest
import torch
from fixtures.saes import identity_sae
from fixtures.tiny_models import (  # noqa: F401  (single_thread is a fixture)
    HIDDEN,
    byte_tokenizer,
    single_thread,
    tiny_model,
)
from torch import nn

from sae_hub import SAE, Edit, SAEConfig, Steering
from sae_hub.errors import ConfigError
from sae_hub.hooks import resolve_hook

pytestmark = pytest.mark.usefixtures("single_thread")
HOOK = "blocks.1.hook_resid_post"


@cache
def model_of(family: str = "llama") -> nn.Module:
    return tiny_model(family)


def make_sae(*, seed: int = 0, normalization: str = "none", d_sae: int = 48) -> SAE:
    sae = SAE(SAEConfig(d_in=HIDDEN, d_sae=d_sae, normalization=normalization).with_provenance(hook=HOOK))
    sae.reset_parameters(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(d_sae, 1, generator=gen) * 2 + 0.5)  # rows of different norms
        sae.b_enc.normal_(0, 0.05, generator=gen)
        sae.b_dec.normal_(0, 0.05, generator=gen)
    return sae


def inputs() -> dict[str, torch.Tensor]:
    return dict(byte_tokenizer()(["hello world", "hi"], return_tensors="pt", padding=True))


class Recorder:
    """Records the activation at HOOK before and after steering, pass by pass."""

    def __init__(self, model: nn.Module) -> None:
        self.point = resolve_hook(model, HOOK)
        self.before: list[torch.Tensor] = []
        self.after: list[torch.Tensor] = []

    def __enter__(self) -> Recorder:
        # registered before Steering.apply: sees the clean value; the second one is registered by `watch`
        self.handles = [self.point.register(lambda x: self.before.append(x.detach().clone()))]
        return self

    def watch(self) -> None:
        self.handles.append(self.point.register(lambda x: self.after.append(x.detach().clone())))

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()

    def deltas(self) -> list[torch.Tensor]:
        return [(a - b).double() for a, b in zip(self.after, self.before, strict=True)]


def run_steered(steer: Steering, model: nn.Module, **generate: object) -> Recorder:
    with Recorder(model) as rec, steer.apply(model, tokenizer=byte_tokenizer()):
        rec.watch()
        if generate:
            model.generate(**inputs(), pad_token_id=0, **generate)
        else:
            with torch.no_grad():
                model(**inputs())
    return rec


def test_add_moves_the_activation_by_exactly_alpha_times_the_decoder_row():
    sae = make_sae()
    rec = run_steered(Steering(sae, [Edit(5, "add", 3.5)]), model_of())
    expected = 3.5 * sae.W_dec[5].double()
    torch.testing.assert_close(rec.deltas()[0], expected.expand_as(rec.deltas()[0]), atol=1e-5, rtol=0)
    rec = run_steered(Steering(sae, [Edit(5, "add", 3.5, normalize=True)]), model_of())
    unit = sae.W_dec[5].double() / sae.W_dec[5].double().norm()
    torch.testing.assert_close(rec.deltas()[0], (3.5 * unit).expand_as(rec.deltas()[0]), atol=1e-5, rtol=0)


def relu_code64(sae: SAE, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x.double() @ sae.W_enc.double() + sae.b_enc.double())


def test_clamp_changes_only_that_feature_through_the_error_term():
    sae = make_sae()
    rec = run_steered(Steering(sae, [Edit(7, "clamp", 2.0)]), model_of())
    x = rec.before[0]
    a_f = relu_code64(sae, x)[..., 7]
    expected = (2.0 - a_f)[..., None] * sae.W_dec[7].double()
    torch.testing.assert_close(rec.deltas()[0], expected, atol=1e-5, rtol=0)


def test_clamp_with_per_token_normalisation_rescales_the_change():
    sae = make_sae(normalization="constant_norm_rescale")
    rec = run_steered(Steering(sae, [Edit(3, "clamp", 1.5)]), model_of())
    x = rec.before[0].double()
    scale = x.norm(dim=-1, keepdim=True) / HIDDEN**0.5
    a_f = torch.relu((x / scale) @ sae.W_enc.double() + sae.b_enc.double())[..., 3]
    expected = (1.5 - a_f)[..., None] * sae.W_dec[3].double() * scale
    torch.testing.assert_close(rec.deltas()[0], expected, atol=1e-5, rtol=0)


def test_clamp_sets_and_ablate_zeroes_the_encoded_value():
    # encoding is exact, so re-encoding the steered activation reads the edit back
    sae = identity_sae(HIDDEN, hook=HOOK)
    model = model_of()
    rec = run_steered(Steering(sae, [Edit(4, "clamp", 0.75), Edit(4 + HIDDEN, "ablate")]), model)
    code = sae.encode(rec.after[0])
    assert torch.allclose(code[..., 4], torch.full_like(code[..., 4], 0.75), atol=1e-6)
    assert torch.all(code[..., 4 + HIDDEN] == 0)
    others = [i for i in range(2 * HIDDEN) if i not in (4, 4 + HIDDEN)]
    torch.testing.assert_close(code[..., others], sae.encode(rec.before[0])[..., others], atol=1e-6, rtol=0)


def test_several_edits_add_up():
    sae = make_sae()
    edits = [
        Edit(1, "add", 2.0),
        Edit(2, "add", -1.0, normalize=True),
        Edit(9, "clamp", 3.0),
        Edit(11, "ablate"),
    ]
    rec = run_steered(Steering(sae, edits), model_of())
    x = rec.before[0]
    a = relu_code64(sae, x)
    W = sae.W_dec.double()
    expected = 2.0 * W[1] - W[2] / W[2].norm() + (3.0 - a[..., 9:10]) * W[9] + (0.0 - a[..., 11:12]) * W[11]
    torch.testing.assert_close(rec.deltas()[0], expected, atol=1e-5, rtol=0)


def steered_positions(rec: Recorder) -> list[torch.Tensor]:
    """Per pass, a [batch, pos] bool tensor of where the activation changed."""
    return [d.abs().amax(-1) > 1e-6 for d in rec.deltas()]


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_position_policies_during_batched_generation(positions, use_cache):
    sae = make_sae()
    steer = Steering(sae, [Edit(0, "add", 4.0)], positions=positions, skip_special_tokens=True)
    rec = run_steered(steer, model_of(), max_new_tokens=3, do_sample=False, use_cache=use_cache)
    ids = inputs()["input_ids"]
    prompt_len = ids.shape[1]
    not_special = ids > 2  # <pad>=0, <bos>=1 (left padding), <eos>=2
    masks = steered_positions(rec)
    assert len(masks) == 3
    for step, mask in enumerate(masks):
        total = mask.shape[1]
        if use_cache:
            assert total == (prompt_len if step == 0 else 1)
        start = 0 if not use_cache or step == 0 else prompt_len + step - 1
        absolute = torch.arange(start, start + total)
        want = {
            "all": torch.ones(total, dtype=torch.bool),
            "prompt": absolute < prompt_len,
            "generated": absolute >= prompt_len,
        }[positions].expand(2, -1)
        if start < prompt_len:
            want = want.clone()
            want[:, : min(total, prompt_len - start)] &= not_special[:, start : start + total]
        assert torch.equal(mask, want), (step, mask, want)


def test_same_seed_differs_only_through_the_edits():
    model = model_of()
    sae = make_sae()
    ids = inputs()

    def sample(steer: Steering | None) -> torch.Tensor:
        torch.manual_seed(16)
        if steer is None:
            return model.generate(**ids, max_new_tokens=6, do_sample=True, pad_token_id=0)
        with steer.apply(model):
            return model.generate(**ids, max_new_tokens=6, do_sample=True, pad_token_id=0)

    default = sample(None)
    assert torch.equal(sample(None), default)
    assert torch.equal(sample(Steering(sae, [Edit(3, "add", 0.0)])), default)
    steered = sample(Steering(sae, [Edit(3, "add", 40.0)], positions="generated"))
    prompt_len = ids["input_ids"].shape[1]
    # the first new token comes from the unsteered prompt pass; later ones see the edit
    assert torch.equal(steered[:, : prompt_len + 1], default[:, : prompt_len + 1])
    assert not torch.equal(steered, default)


def test_steering_is_removed_after_the_block():
    model = model_of()
    with torch.no_grad():
        clean = model(**inputs()).logits
        with Steering(make_sae(), [Edit(0, "add", 5.0)]).apply(model):
            steered = model(**inputs()).logits
        after = model(**inputs()).logits
    assert (steered - clean).abs().max() > 1e-3
    assert torch.equal(after, clean)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"feature": -1}, "feature"),
        ({"feature": 1, "mode": "boost"}, "mode"),
        ({"feature": 1, "mode": "ablate", "value": 2.0}, "value"),
        ({"feature": 1, "mode": "clamp", "value": 1.0, "normalize": True}, "normalize"),
        ({"feature": 1, "value": "big"}, "value"),
    ],
)
def test_bad_edits_are_refused(kwargs, field):
    with pytest.raises(ConfigError) as info:
        Edit(**kwargs)
    assert info.value.field == field


def test_bad_steering_arguments_are_refused():
    sae = make_sae()
    with pytest.raises(ConfigError, match="out of range"):
        Steering(sae, [Edit(48, "add", 1.0)])
    with pytest.raises(ConfigError, match="positions"):
        Steering(sae, [], positions="last")  # type: ignore[arg-type]
    tc = SAE(SAEConfig(d_in=HIDDEN, d_sae=8, d_out=16))
    with pytest.raises(ConfigError, match="transcoders"):
        Steering(tc, [])


def test_recipe_round_trip_through_a_file(tmp_path):
    sae = make_sae()
    sae.cfg = sae.cfg.with_provenance(model="tiny/llama", release="tiny-release", sae_id="layer_1")
    steer = Steering(
        sae,
        [Edit(3, "add", 8.0, normalize=True), Edit(4, "ablate")],
        positions="generated",
        skip_special_tokens=True,
    )
    path = steer.save(tmp_path / "recipe.json")
    data = json.loads(path.read_text())
    assert data["model"] == "tiny/llama"
    assert data["sae"] == {"release": "tiny-release", "sae_id": "layer_1"}
    assert data["hook"] == HOOK
    back = Steering.load(path, sae=sae)
    assert back.to_dict() == steer.to_dict()
    assert back.edits == steer.edits


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"format": "other"}, "not a steering recipe"),
        ({"version": 99}, "version"),
        ({"colour": "red"}, "unknown recipe keys"),
        ({"edits": [{"feature": 1, "strength": 2}]}, "unknown edit keys"),
        ({"sae": {}}, "names no SAE"),
    ],
)
def test_bad_recipes_are_refused(tmp_path, change, match):
    data = Steering(make_sae(), [Edit(1, "add", 1.0)]).to_dict() | change
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=match):
        Steering.load(path, sae=None if "sae" in change else make_sae())


def test_recipe_push_and_pull_through_the_hub(tmp_path, make_repo):
    sae = make_sae()
    sae.save_pretrained(tmp_path / "sae")
    make_repo("steer-org/tiny-sae", {"": tmp_path / "sae"})
    loaded = SAE.from_pretrained("steer-org/tiny-sae")
    assert loaded.provenance.repo_id == "steer-org/tiny-sae"
    steer = Steering(loaded, [Edit(2, "clamp", 1.25)], positions="prompt")
    url = steer.push_to_hub("steer-org/recipes")
    assert "steer-org/recipes" in url
    pulled = Steering.from_hub("steer-org/recipes")
    assert pulled.to_dict() == steer.to_dict()
    torch.testing.assert_close(pulled.sae.W_dec, sae.W_dec, rtol=0, atol=0)
    model = model_of()
    with torch.no_grad():
        with steer.apply(model):
            a = model(**inputs()).logits
        with pulled.apply(model):
            b = model(**inputs()).logits
    assert torch.equal(a, b)
