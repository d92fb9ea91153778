"""Facts the registry build uses: format names, HF model ids, hook tables, and releases SAELens lacks.

Each table records published facts (repo listings, papers, upstream code) once, for
`build_registry.py`; the runtime reads only the generated data files.
"""

from __future__ import annotations

import re
from typing import Any

SAE = dict[str, Any]


CONVERSION_FORMATS: dict[str | None, str] = {
    None: "saelens",
    "gemma_2": "gemma-scope",
    "gemma_2_transcoder": "gemma-scope",  # the same params.npz files, with an output hook
    "gemma_3": "gemma-scope-2",
    "llama_scope": "llama-scope",
    "llama_scope_r1_distill": "llama-scope-r1",
    "sparsify": "sparsify",
    "dictionary_learning_1": "dictionary-learning",
    "goodfire": "goodfire",
}
# Formats sae_hub has no adapter for yet: listed (so users get a precise error), `supported: false`.
UNSUPPORTED_FORMATS: dict[str, str] = {
    "qwen_scope": "qwen-scope",
    "mwhanna_transcoder": "mwhanna-transcoder",
    "temporal": "temporal",
    "deepseek_r1": "qresearch-pt",
    "connor_rob_hook_z": "connor-rob-hook-z",
    "mntss_clt_layer_transcoder": "mntss-clt",
}

HF_MODELS: dict[str, str] = {
    "gpt2-small": "openai-community/gpt2",
    "gemma-2-2b": "google/gemma-2-2b",
    "gemma-2-9b": "google/gemma-2-9b",
    "gemma-2-9b-it": "google/gemma-2-9b-it",
    "gemma-2-27b": "google/gemma-2-27b",
    "gemma-2b": "google/gemma-2b",
    "gemma-2b-it": "google/gemma-2b-it",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "pythia-70m-deduped": "EleutherAI/pythia-70m-deduped",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "qwen3-4b": "Qwen/Qwen3-4B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-14b": "Qwen/Qwen3-14B",
}
# SAELens records `gemma-2-9b` for this release, but the repo holds SAEs of the instruction-tuned model.
HF_MODEL_BY_RELEASE = {"gemma-scope-9b-it-res": "google/gemma-2-9b-it"}

# Which Hugging Face module layout a model uses, for the HF side of each TransformerLens hook.
ARCH_PREFIXES = {
    "openai-community/gpt2": "gpt2",
    "EleutherAI/pythia": "neox",
    "google/gemma-2-": "gemma2",
    "google/gemma-3-": "gemma2",
}

# TransformerLens hook suffix -> (site, {arch: HF module path}); `{L}` is the layer. None where no
# HF module output equals the TransformerLens hook (e.g. ln2.hook_normalized lacks the norm gain).
HOOKS: dict[str, tuple[str, dict[str, str | None]]] = {
    "hook_resid_pre": (
        "res",
        {
            "llama": "model.layers.{L}.input",
            "gemma2": "model.layers.{L}.input",
            "gpt2": "transformer.h.{L}.input",
            "neox": "gpt_neox.layers.{L}.input",
        },
    ),
    "hook_resid_mid": (
        "res",
        {
            "llama": "model.layers.{L}.post_attention_layernorm.input",
            "gemma2": "model.layers.{L}.pre_feedforward_layernorm.input",
            "gpt2": "transformer.h.{L}.ln_2.input",
            "neox": None,
        },
    ),
    "hook_resid_post": (
        "res",
        {
            "llama": "model.layers.{L}.output",
            "gemma2": "model.layers.{L}.output",
            "gpt2": "transformer.h.{L}.output",
            "neox": "gpt_neox.layers.{L}.output",
        },
    ),
    "hook_attn_out": (
        "att",
        {
            "llama": "model.layers.{L}.self_attn.o_proj.output",
            "gemma2": "model.layers.{L}.post_attention_layernorm.output",
            "gpt2": "transformer.h.{L}.attn.c_proj.output",
            "neox": "gpt_neox.layers.{L}.attention.dense.output",
        },
    ),
    "attn.hook_z": (
        "att",
        {
            "llama": "model.layers.{L}.self_attn.o_proj.input",
            "gemma2": "model.layers.{L}.self_attn.o_proj.input",
            "gpt2": "transformer.h.{L}.attn.c_proj.input",
            "neox": "gpt_neox.layers.{L}.attention.dense.input",
        },
    ),
    "hook_mlp_out": (
        "mlp",
        {
            "llama": "model.layers.{L}.mlp.output",
            "gemma2": "model.layers.{L}.post_feedforward_layernorm.output",
            "gpt2": "transformer.h.{L}.mlp.output",
            "neox": "gpt_neox.layers.{L}.mlp.output",
        },
    ),
    "mlp.hook_post": (
        "mlp_act",
        {
            "llama": "model.layers.{L}.mlp.down_proj.input",
            "gemma2": "model.layers.{L}.mlp.down_proj.input",
            "gpt2": "transformer.h.{L}.mlp.c_proj.input",
            "neox": "gpt_neox.layers.{L}.mlp.dense_4h_to_h.input",
        },
    ),
    "ln2.hook_normalized": ("transcoder", {}),
}
EMBED_HF = {
    "llama": "model.embed_tokens.output",
    "gemma2": "model.embed_tokens.output",
    "gpt2": "transformer.wte.output",
    "neox": "gpt_neox.embed_in.output",
}

GEMMA_WIDTHS = {
    "4k": 4096,
    "16k": 16384,
    "32k": 32768,
    "65k": 65536,
    "131k": 131072,
    "262k": 262144,
    "524k": 524288,
    "1m": 1048576,
}
OPENAI_BASE = "https://openaipublic.blob.core.windows.net/sparse-autoencoder/"
OPENAI_LOCATIONS = {  # location -> TransformerLens hook suffix
    "mlp_post_act": "mlp.hook_post",
    "resid_delta_attn": "hook_attn_out",
    "resid_post_attn": "hook_resid_mid",
    "resid_delta_mlp": "hook_mlp_out",
    "resid_post_mlp": "hook_resid_post",
}
OPENAI_VERSIONS = {  # version -> (folder suffix, locations, width, L0 (TopK k) or None)
    "v1": ("", ("mlp_post_act", "resid_delta_mlp"), 32768, None),
    "v4": ("_v4", ("mlp_post_act", "resid_delta_mlp"), 32768, None),
    "v5-32k": (
        "_v5_32k",
        ("resid_delta_attn", "resid_delta_mlp", "resid_post_attn", "resid_post_mlp"),
        32768,
        32,
    ),
    "v5-128k": (
        "_v5_128k",
        ("resid_delta_attn", "resid_delta_mlp", "resid_post_attn", "resid_post_mlp"),
        131072,
        32,
    ),
}
OPENAI_PAPER = "https://arxiv.org/abs/2406.04093"
GEMMA_SCOPE_PAPER = "https://arxiv.org/abs/2408.05147"
LLAMA_SCOPE_PAPER = "https://arxiv.org/abs/2410.20526"


def arch_of(model: str) -> str:
    """Return the HF module layout of a model id (llama-style unless listed)."""
    return next((arch for prefix, arch in ARCH_PREFIXES.items() if model.startswith(prefix)), "llama")


def hook_fields(model: str, hook: str) -> SAE:
    """Return site, layer and HF hook of a TransformerLens hook name such as `blocks.3.hook_mlp_out`."""
    if hook == "hook_embed":
        return {"site": "embedding", "layer": None, "hook": hook, "hf_hook": EMBED_HF[arch_of(model)]}
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", hook)
    if m is None or m.group(2) not in HOOKS:
        raise ValueError(f"unknown hook {hook!r}")
    layer, suffix = int(m.group(1)), m.group(2)
    site, hf = HOOKS[suffix]
    hf_hook = hf.get(arch_of(model))
    return {
        "site": site,
        "layer": layer,
        "hook": hook,
        "hf_hook": hf_hook.format(L=layer) if hf_hook else None,
    }


def transcoder_fields(model: str, layer: int, hf_in: str | None) -> SAE:
    """Hooks of an MLP transcoder: normalised MLP input -> MLP output."""
    out = hook_fields(model, f"blocks.{layer}.hook_mlp_out")
    return {
        "site": "transcoder",
        "layer": layer,
        "hook": f"blocks.{layer}.ln2.hook_normalized",
        "hook_out": out["hook"],
        "hf_hook": hf_in,
        "hf_hook_out": out["hf_hook"],
    }


SAELENS_WIDTHS = {  # facts from repo / folder names and READMEs; None where unpublished
    "gpt2-small-res-jb": 24576,
    "gpt2-small-mlp-tm": 24576,
    "gpt2-small-res-jb-feature-splitting": None,
    "gemma-2b-res-jb": 16384,
    "gemma-2b-it-res-jb": 16384,
    "gemma-2-2b-res-matryoshka-dc": 32768,
    "gemma-2-2b-res-snap-matryoshka-dc": 32768,
    "gemma-2-9b-res-matryoshka-dc": 32768,
    "gemma-3-1b-res-matryoshka-dc": 32768,
}


SPARSIFY_RELEASES = {  # release -> (repo, model, width, hookpoints)
    "eleutherai-sae-pythia-70m-32k": (
        "EleutherAI/sae-pythia-70m-32k",
        "EleutherAI/pythia-70m",
        32768,
        [f"layers.{i}{s}" for i in range(6) for s in (".attention", ".mlp", "")],
    ),
    "eleutherai-sae-pythia-70m-deduped-32k": (
        "EleutherAI/sae-pythia-70m-deduped-32k",
        "EleutherAI/pythia-70m-deduped",
        32768,
        [f"layers.{i}{s}" for i in range(6) for s in (".attention", ".mlp", "")],
    ),
    "eleutherai-sae-llama-3-8b-32x": (
        "EleutherAI/sae-llama-3-8b-32x",
        "meta-llama/Meta-Llama-3-8B",
        131072,
        [f"layers.{i}" for i in range(32)],
    ),
    "eleutherai-sae-llama-3-8b-32x-v2": (
        "EleutherAI/sae-llama-3-8b-32x-v2",
        "meta-llama/Meta-Llama-3-8B",
        131072,
        [
            "embed_tokens",
            *[f"layers.{i}" for i in (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 24, 25, 27, 29)],
        ],
    ),
}
