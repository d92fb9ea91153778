"""Registry families built from pattern rules: releases SAELens lists only partly or not at all.

Llama Scope (the 8 base repos x 32 layers: SAELens lists the residual, attention and MLP repos but not
the transcoders; the R1-Distill release comes from SAELens), OpenAI's original GPT-2 small `.pt` files
by URL, and EleutherAI's sparsify repos.
"""

from __future__ import annotations

import re
from typing import Any

from registry_facts import (
    HOOKS,
    LLAMA_SCOPE_PAPER,
    OPENAI_BASE,
    OPENAI_LOCATIONS,
    OPENAI_PAPER,
    OPENAI_VERSIONS,
    SAE,
    SPARSIFY_RELEASES,
    arch_of,
    hook_fields,
    transcoder_fields,
)
from registry_tables import compress, model_link, release, saelens_release


def llama_scope(sl: dict[str, Any]) -> list[dict[str, Any]]:
    """All 256 Llama Scope SAEs (8 repos x 32 layers) from the pattern, plus R1-Distill from SAELens."""
    model = "meta-llama/Llama-3.1-8B"
    positions = {
        "R": ("r", "res", "hook_resid_post"),
        "A": ("a", "att", "hook_attn_out"),
        "M": ("m", "mlp", "hook_mlp_out"),
        "TC": ("tc", "transcoder", None),
    }
    out = []
    for letter, (short, kind, suffix) in positions.items():
        for factor, width in ((8, 32768), (32, 131072)):
            name = f"llama_scope_lx{short}_{factor}x"
            listed = {s["id"]: s for s in sl.get(name, {}).get("saes", [])}
            saes = []
            for layer in range(32):
                fields = (
                    transcoder_fields(model, layer, None)
                    if suffix is None
                    else hook_fields(model, f"blocks.{layer}.{suffix}")
                )
                sae_id = f"l{layer}{short}_{factor}x"
                sae = {
                    "id": sae_id,
                    "path": f"Llama3_1-8B-Base-L{layer}{letter}-{factor}x",
                    **fields,
                    "width": width,
                }
                if sae_id in listed:
                    sae["l0"] = listed[sae_id].get("l0")
                    sae["neuronpedia"] = listed[sae_id].get("neuronpedia")
                saes.append(sae)
            group = compress(
                saes,
                {
                    "id": [f"l{{layer}}{short}_{factor}x"],
                    "path": [f"Llama3_1-8B-Base-L{{layer}}{letter}-{factor}x"],
                    "hook": [f"blocks.{{layer}}.{suffix or 'ln2.hook_normalized'}"],
                    "hook_out": ["blocks.{layer}.hook_mlp_out"],
                    "hf_hook": [
                        "model.layers.{layer}.output",
                        "model.layers.{layer}.self_attn.o_proj.output",
                        "model.layers.{layer}.mlp.output",
                    ],
                    "hf_hook_out": ["model.layers.{layer}.mlp.output"],
                    "neuronpedia": [f"llama3.1-8b/{{layer}}-llamascope-{kind}-{{width:k}}"],
                },
            )
            out.append(
                release(
                    name,
                    repo_id=f"fnlp/Llama3_1-8B-Base-LX{letter}-{factor}x",
                    model=model,
                    saelens_model=sl[name]["model"] if name in sl else None,
                    fmt="llama-scope",
                    in_saelens=name in sl,
                    links={"model": model_link(model), "publication": LLAMA_SCOPE_PAPER},
                    notes=(
                        "Dataset-wise norms and the JumpReLU threshold are read from each SAE's "
                        "hyperparams.json; no registry override is needed."
                    )
                    + (
                        " Transcoder input is TransformerLens `ln2.hook_normalized` (RMSNorm without its gain),"
                        " which no HF module outputs."
                        if suffix is None
                        else ""
                    ),
                    groups=[group],
                )
            )
    entry = sl["llama_scope_r1_distill"]

    def build_r1(raw: dict[str, Any]) -> SAE:
        layer = int(re.search(r"/L(\d+)R$", raw["path"]).group(1))  # type: ignore[union-attr]
        return {
            **hook_fields(model, f"blocks.{layer}.hook_resid_post"),
            "width": 32768,
            "run": raw["path"].split("/")[0],
        }

    out.append(
        saelens_release(
            "llama_scope_r1_distill",
            entry,
            build_r1,
            candidates={
                "path": ["{run}/L{layer}R"],
                "hf_hook": ["model.layers.{layer}.output"],
                "hook": ["blocks.{layer}.hook_resid_post"],
            },
            links={"publication": "https://huggingface.co/fnlp/Llama-Scope-R1-Distill"},
            notes="The dataset norm is not in the files: input_scale/output_scale carry SAELens's norm_scaling_factor.",
        )
    )
    return out


def openai(_sl: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenAI's original GPT-2 small `.pt` files (v1, v4, v5) by URL, one release per version x location."""
    model = "openai-community/gpt2"
    out = []
    for version, (folder_suffix, locations, width, l0) in OPENAI_VERSIONS.items():
        for location in locations:
            hook_suffix = OPENAI_LOCATIONS[location]
            path = f"gpt2-small/{location}{folder_suffix}/autoencoders/{{layer}}.pt"
            fields = hook_fields(model, f"blocks.0.{hook_suffix}")
            hf = HOOKS[hook_suffix][1]["gpt2"]
            defaults = {
                "id": f"blocks.{{layer}}.{hook_suffix}",
                "path": path,
                "url": OPENAI_BASE + path,
                "site": fields["site"],
                "hook": f"blocks.{{layer}}.{hook_suffix}",
                "hf_hook": hf.replace("{L}", "{layer}") if hf else None,
                "width": width,
                "l0": l0,
            }
            out.append(
                release(
                    f"openai-gpt2-small-{version}-{location.replace('_', '-')}",
                    model=model,
                    saelens_model="gpt2-small",
                    fmt="openai",
                    links={"model": model_link(model), "publication": OPENAI_PAPER},
                    notes="Inputs are TransformerLens GPT-2 activations with center_writing_weights=False"
                    + (" from 64-token prompts." if l0 else "."),
                    groups=[
                        {
                            "defaults": {k: v for k, v in defaults.items() if v is not None},
                            "product": {"layer": "0..11"},
                        }
                    ],
                )
            )
    return out


def sparsify(_sl: dict[str, Any]) -> list[dict[str, Any]]:
    """EleutherAI sparsify releases: one folder per hookpoint (HF module path under `base_model`)."""
    out = []
    for name, (repo, model, width, hookpoints) in SPARSIFY_RELEASES.items():
        saes = []
        for hp in hookpoints:
            m = re.fullmatch(r"layers\.(\d+)(\.attention|\.mlp)?", hp)
            if m is None:
                fields = hook_fields(model, "hook_embed")
            else:
                suffix = {None: "hook_resid_post", ".attention": "hook_attn_out", ".mlp": "hook_mlp_out"}[
                    m.group(2)
                ]
                fields = hook_fields(model, f"blocks.{m.group(1)}.{suffix}")
                prefix = "gpt_neox." if arch_of(model) == "neox" else "model."
                fields["hf_hook"] = f"{prefix}{hp}.output"  # sparsify hooks the module's output
            saes.append({"id": hp, "path": hp, **fields, "width": width})
        out.append(
            release(
                name,
                repo_id=repo,
                model=model,
                fmt="sparsify",
                links={"model": model_link(model)},
                groups=[
                    compress([x for x in saes if x["site"] == site], {"path": ["{id}"]})
                    for site in dict.fromkeys(x["site"] for x in saes)
                ],
            )
        )
    return out
