"""Model layouts: where each supported family keeps its decoder layers and which submodule carries each hook.

Families are recognised from a decoder layer's submodule names, not from class names, so close relatives
(Mistral, SmolLM, Qwen3, Gemma 3 text-only or multimodal) share a table. The decoder stack is the one
`nn.ModuleList` whose length equals `num_hidden_layers` (the rule sparsify uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

IO = Literal["output", "input"]

# Per layer style: TransformerLens hook -> (submodule path relative to the layer, io, kind).
# kind "norm": the tensor is the norm's output without its gain and bias; "mid": in(layer) + out(module).
LAYER_HOOKS: dict[str, dict[str, tuple[str, IO, str]]] = {
    "llama": {
        "hook_resid_pre": ("", "input", ""),
        "attn.hook_z": ("self_attn.o_proj", "input", ""),
        "hook_attn_out": ("self_attn", "output", ""),
        "hook_resid_mid": ("self_attn", "output", "mid"),
        "ln2.hook_normalized": ("post_attention_layernorm", "output", "norm"),
        "mlp.hook_post": ("mlp.down_proj", "input", ""),
        "hook_mlp_out": ("mlp", "output", ""),
        "hook_resid_post": ("", "output", ""),
    },
    "gemma": {
        "hook_resid_pre": ("", "input", ""),
        "attn.hook_z": ("self_attn.o_proj", "input", ""),
        "hook_attn_out": ("post_attention_layernorm", "output", ""),
        "hook_resid_mid": ("post_attention_layernorm", "output", "mid"),
        "ln2.hook_normalized": ("pre_feedforward_layernorm", "output", "norm"),
        "mlp.hook_post": ("mlp.down_proj", "input", ""),
        "hook_mlp_out": ("post_feedforward_layernorm", "output", ""),
        "hook_resid_post": ("", "output", ""),
    },
    "gpt2": {
        "hook_resid_pre": ("", "input", ""),
        "attn.hook_z": ("attn.c_proj", "input", ""),
        "hook_attn_out": ("attn", "output", ""),
        "hook_resid_mid": ("attn", "output", "mid"),
        "ln2.hook_normalized": ("ln_2", "output", "norm"),
        "mlp.hook_post": ("mlp.c_proj", "input", ""),
        "hook_mlp_out": ("mlp", "output", ""),
        "hook_resid_post": ("", "output", ""),
    },
    "neox": {
        "hook_resid_pre": ("", "input", ""),
        "attn.hook_z": ("attention.dense", "input", ""),
        "hook_attn_out": ("attention", "output", ""),
        "hook_resid_mid": ("attention", "output", "mid"),
        "ln2.hook_normalized": ("post_attention_layernorm", "output", "norm"),
        "mlp.hook_post": ("mlp.dense_4h_to_h", "input", ""),
        "hook_mlp_out": ("mlp", "output", ""),
        "hook_resid_post": ("", "output", ""),
    },
    # any other decoder stack: only the residual stream around each layer
    "generic": {
        "hook_resid_pre": ("", "input", ""),
        "hook_resid_post": ("", "output", ""),
    },
}
# hooks whose width is the model's hidden size
RESIDUAL_WIDTH = {"hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"}


@dataclass(frozen=True)
class Layout:
    """The parts of a model that hook resolution needs, read once per `resolve_hook` call."""

    modules: dict[str, nn.Module]
    layers_path: str | None
    n_layers: int
    style: str
    hidden: int | None
    prefixes: tuple[str, ...]
    embed_path: str | None


def text_config(model: nn.Module) -> Any:
    """The text model's config (multimodal configs nest it)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        return config.get_text_config()
    return config


def read_layout(model: nn.Module) -> Layout:
    """Find the decoder stack, its family, the embedding and the path prefixes module names may omit."""
    modules = dict(model.named_modules())
    config = text_config(model)
    n_layers = getattr(config, "num_hidden_layers", None)
    layers_path = next(
        (
            path
            for path, mod in modules.items()
            if isinstance(mod, nn.ModuleList) and n_layers is not None and len(mod) == n_layers
        ),
        None,
    )
    style = "generic"
    if layers_path is not None:
        style = layer_style(modules[f"{layers_path}.0"])
        if style == "neox" and getattr(config, "use_parallel_residual", False):
            style = "neox_parallel"
    prefixes = [""]
    base = getattr(model, "base_model_prefix", "")
    if base and base in modules:
        prefixes.append(base + ".")
    if layers_path and "." in layers_path:
        prefixes.append(layers_path.rsplit(".", 1)[0] + ".")
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embed_path = next((p for p, m in modules.items() if m is embed), None)
    return Layout(
        modules=modules,
        layers_path=layers_path,
        n_layers=(n_layers or 0) if layers_path else 0,
        style=style,
        hidden=getattr(config, "hidden_size", None),
        prefixes=tuple(dict.fromkeys(prefixes)),
        embed_path=embed_path,
    )


def layer_style(layer: nn.Module) -> str:
    """Recognise the decoder-layer family from its submodule names."""
    if hasattr(layer, "pre_feedforward_layernorm") and hasattr(layer, "post_feedforward_layernorm"):
        return "gemma"
    if hasattr(layer, "self_attn") and hasattr(layer, "post_attention_layernorm"):
        return "llama" if hasattr(getattr(layer, "mlp", None), "down_proj") else "generic"
    if hasattr(layer, "attn") and hasattr(layer, "ln_2"):
        return "gpt2"
    if hasattr(layer, "attention") and hasattr(getattr(layer, "mlp", None), "dense_4h_to_h"):
        return "neox"
    return "generic"


def hook_table(layout: Layout) -> dict[str, tuple[str, IO, str]]:
    """The TransformerLens hooks this model's layers have, with where each one lives."""
    if layout.style == "neox_parallel":
        table = dict(LAYER_HOOKS["neox"])
        del table["hook_resid_mid"]  # parallel attention + MLP: there is no mid-layer residual
        return table
    return LAYER_HOOKS[layout.style]


def module_dims(module: nn.Module) -> tuple[int | None, int | None]:
    """(input width, output width) of linear, Conv1D, embedding and norm modules; else (None, None)."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":  # GPT-2: weight is [in, out]
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    if isinstance(module, nn.Embedding):
        return None, module.embedding_dim
    weight = getattr(module, "weight", None)
    if "Norm" in type(module).__name__ and isinstance(weight, Tensor) and weight.ndim == 1:
        return int(weight.shape[0]), int(weight.shape[0])
    return None, None
