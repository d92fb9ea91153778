"""One builder per release family: SAELens's entries (or our pattern rules) -> release mappings."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from registry_facts import (
    GEMMA_SCOPE_PAPER,
    GEMMA_WIDTHS,
    HF_MODEL_BY_RELEASE,
    HF_MODELS,
    HOOKS,
    LLAMA_SCOPE_PAPER,
    OPENAI_BASE,
    OPENAI_LOCATIONS,
    OPENAI_PAPER,
    OPENAI_VERSIONS,
    SAE,
    SAELENS_WIDTHS,
    SPARSIFY_RELEASES,
    UNSUPPORTED_FORMATS,
    arch_of,
    hook_fields,
    transcoder_fields,
)
from registry_tables import compress, model_link, release, saelens_release


def gemma_scope(sl: dict[str, Any]) -> list[dict[str, Any]]:
    """Gemma Scope 1: every SAELens gemma_2 / gemma_2_transcoder release, canonical aliases included."""
    out = []
    for name, entry in sl.items():
        if entry.get("conversion_func") not in {"gemma_2", "gemma_2_transcoder"}:
            continue
        hf_model = HF_MODEL_BY_RELEASE.get(name) or HF_MODELS[entry["model"]]
        kind = entry["repo_id"].rsplit("-", 1)[1]  # res / mlp / att / transcoders

        def build(raw: dict[str, Any], hf_model: str = hf_model, kind: str = kind) -> SAE:
            m = re.fullmatch(r"(?:layer_(\d+)|embedding)/width_(\w+)/average_l0_(\d+)", str(raw["path"]))
            assert m, raw
            layer, width, l0 = (
                (int(m.group(1)) if m.group(1) else None),
                GEMMA_WIDTHS[m.group(2)],
                int(m.group(3)),
            )
            if layer is None:
                fields = hook_fields(hf_model, "hook_embed")
            elif kind == "transcoders":
                fields = transcoder_fields(hf_model, layer, None)
            else:
                suffix = {"res": "hook_resid_post", "mlp": "hook_mlp_out", "att": "attn.hook_z"}[kind]
                fields = hook_fields(hf_model, f"blocks.{layer}.{suffix}")
            return {**fields, "width": width, "l0": l0}

        base = "layer_{layer}/width_{width:k}/average_l0_{l0}"
        np_kind = {"transcoders": "transcoder"}.get(kind, kind)
        notes = None
        if kind == "res" and "canonical" not in name and not name.startswith("gemma-scope-27b"):
            notes = (
                "Embedding SAEs read the unscaled output of `embed_tokens` (TransformerLens's "
                "`hook_embed` includes Gemma's sqrt(d_model) factor; SAELens rescales the weights)."
            )
        if kind == "transcoders":
            notes = (
                "Input is the MLP's normalised input; whether the RMSNorm gain is included is not "
                "published, so no HF input module is given."
            )
        out.append(
            saelens_release(
                name,
                entry,
                build,
                model=hf_model,
                notes=notes,
                candidates={
                    "id": [
                        base,
                        "embedding/width_{width:k}/average_l0_{l0}",
                        "layer_{layer}/width_{width:k}/canonical",
                    ],
                    "path": ["{id}", base],
                    "neuronpedia": [f"{entry['model']}/{{layer}}-gemmascope-{np_kind}-{{width:k}}"],
                },
                split=lambda s: s["site"],
                links={"publication": GEMMA_SCOPE_PAPER},
            )
        )
    return out


def gemma_scope_2(sl: dict[str, Any]) -> list[dict[str, Any]]:
    """Gemma Scope 2: every SAELens gemma_3 release; hooks as the release's own config.json records them."""
    out = []
    for name, entry in sl.items():
        if entry.get("conversion_func") != "gemma_3":
            continue
        model = entry["model"]

        def build(raw: dict[str, Any], model: str = model) -> SAE:
            m = re.fullmatch(
                r"(\w+)/layer_(\d+)_width_(\w+)_l0_(small|medium|big)((?:_affine)?(?:_seed_\d+)?)",
                str(raw["path"]),
            )
            assert m, raw
            folder, layer, width = m.group(1).removesuffix("_all"), int(m.group(2)), GEMMA_WIDTHS[m.group(3)]
            if folder == "transcoder":
                fields = transcoder_fields(
                    model, layer, f"model.layers.{layer}.pre_feedforward_layernorm.output"
                )
            else:
                suffix = {
                    "resid_post": "hook_resid_post",
                    "mlp_out": "hook_mlp_out",
                    "attn_out": "attn.hook_z",
                }[folder]
                fields = hook_fields(model, f"blocks.{layer}.{suffix}")
            return {**fields, "width": width, "l0": raw.get("l0"), "size": m.group(4), "variant": m.group(5)}

        folder = entry["saes"][0]["path"].split("/")[0]
        base = "layer_{layer}_width_{width:k}_l0_{size}{variant}"
        out.append(
            saelens_release(
                name,
                entry,
                build,
                candidates={"id": [base, f"{folder}/{base}"], "path": ["{id}", f"{folder}/{{id}}"]},
                links={"publication": "https://huggingface.co/google/gemma-scope-2"},
                notes="Transcoders read `pre_feedforward_layernorm.output` (with the RMSNorm gain)."
                if folder.startswith("transcoder")
                else None,
            )
        )
    return out


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


def _native_build(model: str, width: int | None, l0: float | None = None) -> Callable[[dict[str, Any]], SAE]:
    def build(raw: dict[str, Any]) -> SAE:
        m = re.fullmatch(r"(blocks\.\d+\.hook_[a-z_]+?)(?:_(\d+))?", raw["id"])
        assert m, raw
        return {
            **hook_fields(model, m.group(1)),
            "width": int(m.group(2)) if m.group(2) else width,
            "l0": raw.get("l0", l0),
        }

    return build


def saelens_native(sl: dict[str, Any]) -> list[dict[str, Any]]:
    """Every SAELens-format release (conversion_func null), the OpenAI v5 mirrors included."""
    out = []
    for name, entry in sl.items():
        if entry.get("conversion_func") is not None:
            continue
        model = HF_MODELS.get(entry["model"], entry["model"])
        v5 = re.search(r"-v5-(32k|128k)$", name)
        width = (32768 if v5.group(1) == "32k" else 131072) if v5 else SAELENS_WIDTHS.get(name)
        tag = v5.group(1) if v5 else ""
        out.append(
            saelens_release(
                name,
                entry,
                _native_build(model, width, 32.0 if v5 else None),
                model=model,
                candidates={
                    "id": [
                        "blocks.{layer}.hook_resid_post",
                        "blocks.{layer}.hook_resid_mid",
                        "blocks.{layer}.hook_mlp_out",
                        "blocks.{layer}.hook_attn_out",
                        "blocks.{layer}.hook_resid_pre",
                    ],
                    "path": [
                        "{id}",
                        f"v5_{tag}_layer_{{layer}}",
                        f"v5_{tag}_layer_{{layer}}.pt",
                        "standard/{id}",
                        "snap/{id}",
                    ],
                    "hook": ["{id}"],
                    "hf_hook": [
                        h.replace("{L}", "{layer}") for _, hf in HOOKS.values() for h in hf.values() if h
                    ],
                    "neuronpedia": [
                        f"gpt2-small/{{layer}}-{k}_{tag}-oai" for k in ("res_post", "res_mid", "mlp", "att")
                    ],
                },
                links={"publication": OPENAI_PAPER} if v5 else None,
            )
        )
    return out


def dictionary_learning(sl: dict[str, Any]) -> list[dict[str, Any]]:
    """SAELens's dictionary_learning_1 releases (SAEBench sweeps, andyrdt's BatchTopK SAEs)."""
    out = []
    for name, entry in sl.items():
        if entry.get("conversion_func") != "dictionary_learning_1":
            continue
        model = HF_MODELS.get(entry["model"], entry["model"])
        pow2 = re.search(r"2pow(\d+)", name)

        def build(raw: dict[str, Any], model: str = model, pow2: Any = pow2) -> SAE:
            layer = int(re.search(r"resid_post_layer_(\d+)", raw["path"]).group(1))  # type: ignore[union-attr]
            width = 2 ** int(pow2.group(1)) if pow2 else None
            np_width = re.search(r"-(\d+)k__", raw.get("neuronpedia") or "")
            if width is None and np_width:
                width = {"4": 4096, "16": 16384, "65": 65536}[np_width.group(1)]
            if width is None and model == "meta-llama/Llama-3.1-8B-Instruct":
                width = 131072
            return {**hook_fields(model, f"blocks.{layer}.hook_resid_post"), "width": width}

        out.append(
            saelens_release(
                name,
                entry,
                build,
                model=model,
                candidates={
                    "hook": ["blocks.{layer}.hook_resid_post"],
                    "hf_hook": ["model.layers.{layer}.output", "gpt_neox.layers.{layer}.output"],
                },
            )
        )
    return out


def goodfire(sl: dict[str, Any]) -> list[dict[str, Any]]:
    """Goodfire's two Llama SAEs (one `.pt`/`.pth` file each)."""
    out = []
    for name, entry in sl.items():
        if entry.get("conversion_func") == "goodfire":
            model = entry["model"]

            def build(raw: dict[str, Any], model: str = model) -> SAE:
                layer = int(raw["id"].removeprefix("layer_"))
                return {
                    **hook_fields(model, f"blocks.{layer}.hook_resid_post"),
                    "width": 65536,
                    "l0": raw.get("l0"),
                }

            out.append(saelens_release(name, entry, build, notes="Trained on LMSYS-Chat-1M activations."))
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


def unsupported(sl: dict[str, Any]) -> list[dict[str, Any]]:
    """SAELens releases in formats without an sae_hub adapter: listed with `supported: false`."""
    out = []
    for name, entry in sl.items():
        conversion = entry.get("conversion_func")
        if conversion not in UNSUPPORTED_FORMATS:
            continue
        model = HF_MODELS.get(entry["model"], entry["model"])

        def build(raw: dict[str, Any], model: str = model, conversion: str = conversion) -> SAE:
            hook = raw["id"] if raw["id"].startswith("blocks.") else None
            layer = int(re.search(r"(\d+)", raw["id"]).group(1))  # type: ignore[union-attr]
            if conversion in {"mwhanna_transcoder", "mntss_clt_layer_transcoder"}:
                return {
                    **transcoder_fields(model, layer, None),
                    "hook": f"blocks.{layer}.mlp.hook_in",
                    "site": "clt" if conversion.startswith("mntss") else "transcoder",
                    "l0": raw.get("l0"),
                }
            if hook == f"blocks.{layer}.hook_z":  # connor_rob: attention z, all heads concatenated
                return {**hook_fields(model, f"blocks.{layer}.attn.hook_z"), "l0": raw.get("l0")}
            return {**hook_fields(model, hook or f"blocks.{layer}.hook_resid_post"), "l0": raw.get("l0")}

        out.append(
            saelens_release(
                name,
                entry,
                build,
                model=model,
                candidates={
                    "id": ["layer{layer}", "layer_{layer}"],
                    "path": ["{id}", "{layer}", "layer{layer}.sae.pt", "layer_{layer}.safetensors"],
                    "hf_hook": ["model.layers.{layer}.output"],
                    "hook": ["blocks.{layer}.hook_resid_post"],
                },
            )
        )
    return out


FAMILIES: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "gemma_scope": gemma_scope,
    "gemma_scope_2": gemma_scope_2,
    "llama_scope": llama_scope,
    "openai": openai,
    "saelens": saelens_native,
    "dictionary_learning": dictionary_learning,
    "goodfire": goodfire,
    "sparsify": sparsify,
    "unsupported": unsupported,
}
