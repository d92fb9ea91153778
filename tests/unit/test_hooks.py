"""Hook-point resolution on tiny random models of every family, checked against hand-computed tensors."""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch
from fixtures.tiny_models import (  # noqa: F401  (single_thread is a fixture)
    FAMILIES,
    HIDDEN,
    LAYERS,
    MLP,
    byte_tokenizer,
    single_thread,
    tiny_model,
)
from torch import nn

from sae_hub.errors import HookPointError
from sae_hub.hooks import capture_activations, hook_names, resolve_hook

TL_HOOKS = (
    "hook_resid_pre",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_normalized",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)

pytestmark = pytest.mark.usefixtures("single_thread")


@cache
def model_of(family: str) -> nn.Module:
    return tiny_model(family)


@cache
def batch() -> dict[str, torch.Tensor]:
    return dict(byte_tokenizer()(["hello world", "hi"], return_tensors="pt", padding=True))


@cache
def everything(family: str) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    model = model_of(family)
    acts = capture_activations(model, hook_names(model), batch()["input_ids"], batch()["attention_mask"])
    with torch.no_grad():
        hidden = model(**batch(), output_hidden_states=True).hidden_states
    return acts, hidden


def d64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().double()


def linear64(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """y = x W^T + b for nn.Linear, y = x W + b for GPT-2's Conv1D, in float64."""
    w = d64(module.weight)
    y = d64(x) @ (w if type(module).__name__ == "Conv1D" else w.T)
    return y + d64(module.bias) if module.bias is not None else y


def norm64(family: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    x = d64(x)
    if family in ("gpt2", "neox", "neox_sequential"):
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def layer_parts(family: str, layer: int) -> dict[str, nn.Module]:
    model = model_of(family)
    if family == "gpt2":
        blk = model.transformer.h[layer]
        return {"o": blk.attn.c_proj, "down": blk.mlp.c_proj, "ln2": blk.ln_2}
    if family.startswith("neox"):
        blk = model.gpt_neox.layers[layer]
        return {"o": blk.attention.dense, "down": blk.mlp.dense_4h_to_h, "ln2": blk.post_attention_layernorm}
    blk = model.model.layers[layer]
    parts = {"o": blk.self_attn.o_proj, "down": blk.mlp.down_proj}
    if family.startswith("gemma"):
        parts.update(
            ln2=blk.pre_feedforward_layernorm,
            post_attn=blk.post_attention_layernorm,
            post_ff=blk.post_feedforward_layernorm,
        )
    else:
        parts["ln2"] = blk.post_attention_layernorm
    return parts


def gemma_norm64(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return norm64("gemma", x, norm.eps) * (1 + d64(norm.weight))


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    torch.testing.assert_close(d64(a), d64(b), atol=tol, rtol=tol)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_hook_name_resolves_with_the_width_it_carries(family):
    model = model_of(family)
    names = hook_names(model)
    expected = {f"blocks.{i}.{h}" for i in range(LAYERS) for h in TL_HOOKS} | {"hook_embed"}
    if family == "neox":  # parallel residual: no resid_mid
        expected -= {f"blocks.{i}.hook_resid_mid" for i in range(LAYERS)}
    assert set(names) == expected
    acts, _ = everything(family)
    for name in names:
        point = resolve_hook(model, name)
        assert point.canonical == name
        assert acts[name].shape[:2] == batch()["input_ids"].shape
        assert point.width == acts[name].shape[-1], name
    d_mlp = 4 * HIDDEN if family == "gpt2" else MLP
    assert acts["blocks.0.mlp.hook_post"].shape[-1] == d_mlp


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_hooks_match_hidden_states(family):
    acts, hidden = everything(family)
    for layer in range(LAYERS):
        assert torch.equal(acts[f"blocks.{layer}.hook_resid_pre"], hidden[layer])
    for layer in range(LAYERS - 1):  # the last hidden state is the final norm's output
        assert torch.equal(acts[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer", range(LAYERS))
def test_block_hooks_against_a_manual_forward(family, layer):
    acts, _ = everything(family)
    a = {h: acts[f"blocks.{layer}.{h}"] for h in TL_HOOKS if f"blocks.{layer}.{h}" in acts}
    parts = layer_parts(family, layer)
    o_out = linear64(parts["o"], a["attn.hook_z"])
    down_out = linear64(parts["down"], a["mlp.hook_post"])
    gemma = family.startswith("gemma")
    close(a["hook_attn_out"], gemma_norm64(parts["post_attn"], o_out) if gemma else o_out)
    close(a["hook_mlp_out"], gemma_norm64(parts["post_ff"], down_out) if gemma else down_out)
    ln2_in = a["hook_resid_pre"] if family == "neox" else a["hook_resid_mid"]
    eps = getattr(parts["ln2"], "eps", None) or getattr(parts["ln2"], "variance_epsilon", None)
    close(a["ln2.hook_normalized"], norm64(family, ln2_in, eps), tol=1e-4)
    if family == "neox":
        close(
            a["hook_resid_post"], d64(a["hook_resid_pre"]) + d64(a["hook_attn_out"]) + d64(a["hook_mlp_out"])
        )
    else:
        close(a["hook_resid_mid"], d64(a["hook_resid_pre"]) + d64(a["hook_attn_out"]))
        close(a["hook_resid_post"], d64(a["hook_resid_mid"]) + d64(a["hook_mlp_out"]))


@pytest.mark.parametrize("family", FAMILIES)
def test_hook_embed_is_the_token_embedding_as_the_model_uses_it(family):
    acts, hidden = everything(family)
    model = model_of(family)
    ids = batch()["input_ids"]
    table = model.get_input_embeddings().weight[ids]
    if family.startswith("gemma"):
        close(acts["hook_embed"], d64(table) * math.sqrt(HIDDEN))
        assert torch.equal(acts["hook_embed"], hidden[0])
    else:
        close(acts["hook_embed"], table, tol=0)


HF_NAMES = {
    "llama": {
        "model.layers.1": "blocks.1.hook_resid_post",
        "model.layers.1.output": "blocks.1.hook_resid_post",
        "model.layers.1.input": "blocks.1.hook_resid_pre",
        "layers.1": "blocks.1.hook_resid_post",
        "model.layers.2.self_attn.o_proj.input": "blocks.2.attn.hook_z",
        "model.layers.0.mlp.down_proj.input": "blocks.0.mlp.hook_post",
        "layers.0.mlp": "blocks.0.hook_mlp_out",
        "embed_tokens": "hook_embed",
    },
    "gemma2": {
        "model.layers.1.post_feedforward_layernorm.output": "blocks.1.hook_mlp_out",
        "model.layers.1.self_attn.o_proj.input": "blocks.1.attn.hook_z",
        "model.layers.0": "blocks.0.hook_resid_post",
    },
    "gemma3": {
        "model.layers.2.output": "blocks.2.hook_resid_post",
        "layers.0.post_attention_layernorm": "blocks.0.hook_attn_out",
    },
    "gpt2": {
        "h.0.attn": "blocks.0.hook_attn_out",
        "transformer.h.1": "blocks.1.hook_resid_post",
        "h.1.mlp.c_proj.input": "blocks.1.mlp.hook_post",
        "wte": "hook_embed",
    },
    "neox": {
        "gpt_neox.layers.0.attention.dense.input": "blocks.0.attn.hook_z",
        "layers.2": "blocks.2.hook_resid_post",
        "embed_in": "hook_embed",
    },
}


@pytest.mark.parametrize(
    ("family", "name", "canonical"), [(f, n, c) for f, m in HF_NAMES.items() for n, c in m.items()]
)
def test_module_paths_resolve_to_the_same_tensor_as_their_tl_name(family, name, canonical):
    model = model_of(family)
    point = resolve_hook(model, name)
    assert point.name == name
    assert point.canonical == canonical
    acts, _ = everything(family)
    got = capture_activations(model, [name], batch()["input_ids"], batch()["attention_mask"])[name]
    assert torch.equal(got, acts[canonical])


def test_hf_paths_without_a_tl_name_still_resolve():
    model = model_of("llama")
    point = resolve_hook(model, "model.layers.1.mlp.act_fn")
    assert (point.canonical, point.layer, point.io, point.width) == (None, 1, "output", None)
    assert point.hf_name == "model.layers.1.mlp.act_fn.output"
    gate = resolve_hook(model, "model.layers.1.mlp.gate_proj")
    assert gate.width == MLP


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("blocks.1.hook_resid_psot", "blocks.1.hook_resid_post"),
        ("blocks.9.hook_resid_post", "0..2"),
        ("model.layer.1", "model.layers.1"),
        ("nonsense", "Valid TransformerLens-style names"),
    ],
)
def test_wrong_names_list_the_valid_ones(name, needle):
    with pytest.raises(HookPointError, match=r"does not resolve|out of range") as info:
        resolve_hook(model_of("llama"), name)
    assert needle in str(info.value)


def test_parallel_residual_models_have_no_resid_mid():
    with pytest.raises(HookPointError, match="hook_resid_post"):
        resolve_hook(model_of("neox"), "blocks.0.hook_resid_mid")
    assert resolve_hook(model_of("neox_sequential"), "blocks.0.hook_resid_mid").residual is not None


def test_capture_stops_after_the_deepest_hook():
    model = model_of("llama")
    ran: list[str] = []
    handles = [
        model.model.layers[2].register_forward_hook(lambda *_: ran.append("layer2")),
        model.lm_head.register_forward_hook(lambda *_: ran.append("lm_head")),
    ]
    try:
        got = capture_activations(
            model, ["blocks.0.hook_mlp_out", "blocks.1.attn.hook_z"], batch()["input_ids"]
        )
        assert ran == []
        full = capture_activations(model, ["blocks.1.attn.hook_z"], batch()["input_ids"], stop_early=False)
        assert ran == ["layer2", "lm_head"]
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(got["blocks.1.attn.hook_z"], full["blocks.1.attn.hook_z"])


class _TupleLayer(nn.Module):
    """A transformers-4.x-style decoder layer: returns (hidden, attention weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, None]:
        return hidden_states + self.proj(hidden_states), None


class _TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = type("Cfg", (), {"num_hidden_layers": 2, "hidden_size": 4})()
        self.layers = nn.ModuleList([_TupleLayer(), _TupleLayer()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(hidden_states=x)[0]
        return x


def test_tuple_returning_layers_are_read_and_replaced_in_place():
    model = _TupleModel()
    x = torch.randn(2, 3, 4)
    point = resolve_hook(model, "blocks.0.hook_resid_post")
    assert point.hf_name == "layers.0.output"
    seen: list[object] = []
    handle = point.register(lambda h: h * 0)
    observer = model.layers[0].register_forward_hook(lambda _m, _a, out: seen.append(out))  # runs after
    try:
        out = model(x)
    finally:
        handle.remove()
        observer.remove()
    assert isinstance(seen[0], tuple)
    assert seen[0][1] is None
    assert torch.equal(seen[0][0], torch.zeros(2, 3, 4))
    torch.testing.assert_close(out, model.layers[1](torch.zeros(2, 3, 4))[0])
    pre = resolve_hook(model, "blocks.1.hook_resid_pre")  # input passed as hidden_states=
    handle = pre.register(lambda h: h + 1)
    try:
        shifted = model(x)
    finally:
        handle.remove()
    torch.testing.assert_close(shifted, model.layers[1](model.layers[0](x)[0] + 1)[0])
