"""Registry families copied from SAELens's listing: its release names, ids and paths, our explicit fields.

Each family turns one SAELens release of its converters (`conversion_func`) into one release mapping with
`saelens_release`, adding what the runtime needs (HF model, hooks, width, L0); `saelens_family` runs it
over every such release.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from registry_facts import (
    GEMMA_SCOPE_PAPER,
    GEMMA_WIDTHS,
    HF_MODEL_BY_RELEASE,
    HF_MODELS,
    HOOKS,
    OPENAI_PAPER,
    SAE,
    SAELENS_WIDTHS,
    UNSUPPORTED_FORMATS,
    hook_fields,
    transcoder_fields,
)
from registry_tables import saelens_release

ReleaseBuilder = Callable[[str, dict[str, Any]], dict[str, Any]]
FamilyBuilder = Callable[[dict[str, Any]], list[dict[str, Any]]]


def saelens_family(*conversions: str | None) -> Callable[[ReleaseBuilder], FamilyBuilder]:
    """Make a builder of one release (`name`, SAELens `entry`) the family's builder over SAELens's registry.

    The family builder takes SAELens's whole registry and returns one release per entry whose
    `conversion_func` is one of `conversions`, in SAELens's order.
    """

    def family(one: ReleaseBuilder) -> FamilyBuilder:
        @functools.wraps(one)
        def build(sl: dict[str, Any]) -> list[dict[str, Any]]:
            return [
                one(name, entry) for name, entry in sl.items() if entry.get("conversion_func") in conversions
            ]

        return build

    return family


@saelens_family("gemma_2", "gemma_2_transcoder")
def gemma_scope(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Gemma Scope 1: every SAELens gemma_2 / gemma_2_transcoder release, canonical aliases included."""
    hf_model = HF_MODEL_BY_RELEASE.get(name) or HF_MODELS[entry["model"]]
    kind = entry["repo_id"].rsplit("-", 1)[1]  # res / mlp / att / transcoders

    def build(raw: dict[str, Any]) -> SAE:
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
    return saelens_release(
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


@saelens_family("gemma_3")
def gemma_scope_2(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Gemma Scope 2: every SAELens gemma_3 release; hooks as the release's own config.json records them."""
    model = entry["model"]

    def build(raw: dict[str, Any]) -> SAE:
        m = re.fullmatch(
            r"(\w+)/layer_(\d+)_width_(\w+)_l0_(small|medium|big)((?:_affine)?(?:_seed_\d+)?)",
            str(raw["path"]),
        )
        assert m, raw
        folder, layer, width = m.group(1).removesuffix("_all"), int(m.group(2)), GEMMA_WIDTHS[m.group(3)]
        if folder == "transcoder":
            fields = transcoder_fields(model, layer, f"model.layers.{layer}.pre_feedforward_layernorm.output")
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
    return saelens_release(
        name,
        entry,
        build,
        candidates={"id": [base, f"{folder}/{base}"], "path": ["{id}", f"{folder}/{{id}}"]},
        links={"publication": "https://huggingface.co/google/gemma-scope-2"},
        notes="Transcoders read `pre_feedforward_layernorm.output` (with the RMSNorm gain)."
        if folder.startswith("transcoder")
        else None,
    )


@saelens_family(None)
def saelens_native(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Every SAELens-format release (conversion_func null), the OpenAI v5 mirrors included."""
    model = HF_MODELS.get(entry["model"], entry["model"])
    v5 = re.search(r"-v5-(32k|128k)$", name)
    width = (32768 if v5.group(1) == "32k" else 131072) if v5 else SAELENS_WIDTHS.get(name)
    tag = v5.group(1) if v5 else ""
    l0 = 32.0 if v5 else None

    def build(raw: dict[str, Any]) -> SAE:
        m = re.fullmatch(r"(blocks\.\d+\.hook_[a-z_]+?)(?:_(\d+))?", raw["id"])
        assert m, raw
        return {
            **hook_fields(model, m.group(1)),
            "width": int(m.group(2)) if m.group(2) else width,
            "l0": raw.get("l0", l0),
        }

    return saelens_release(
        name,
        entry,
        build,
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
            "hf_hook": [h.replace("{L}", "{layer}") for _, hf in HOOKS.values() for h in hf.values() if h],
            "neuronpedia": [
                f"gpt2-small/{{layer}}-{k}_{tag}-oai" for k in ("res_post", "res_mid", "mlp", "att")
            ],
        },
        links={"publication": OPENAI_PAPER} if v5 else None,
    )


@saelens_family("dictionary_learning_1")
def dictionary_learning(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """SAELens's dictionary_learning_1 releases (SAEBench sweeps, andyrdt's BatchTopK SAEs)."""
    model = HF_MODELS.get(entry["model"], entry["model"])
    pow2 = re.search(r"2pow(\d+)", name)

    def build(raw: dict[str, Any]) -> SAE:
        layer = int(re.search(r"resid_post_layer_(\d+)", raw["path"]).group(1))  # type: ignore[union-attr]
        width = 2 ** int(pow2.group(1)) if pow2 else None
        np_width = re.search(r"-(\d+)k__", raw.get("neuronpedia") or "")
        if width is None and np_width:
            width = {"4": 4096, "16": 16384, "65": 65536}[np_width.group(1)]
        if width is None and model == "meta-llama/Llama-3.1-8B-Instruct":
            width = 131072
        return {**hook_fields(model, f"blocks.{layer}.hook_resid_post"), "width": width}

    return saelens_release(
        name,
        entry,
        build,
        model=model,
        candidates={
            "hook": ["blocks.{layer}.hook_resid_post"],
            "hf_hook": ["model.layers.{layer}.output", "gpt_neox.layers.{layer}.output"],
        },
    )


@saelens_family("goodfire")
def goodfire(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Goodfire's two Llama SAEs (one `.pt`/`.pth` file each)."""
    model = entry["model"]

    def build(raw: dict[str, Any]) -> SAE:
        layer = int(raw["id"].removeprefix("layer_"))
        return {**hook_fields(model, f"blocks.{layer}.hook_resid_post"), "width": 65536, "l0": raw.get("l0")}

    return saelens_release(name, entry, build, notes="Trained on LMSYS-Chat-1M activations.")


@saelens_family(*UNSUPPORTED_FORMATS)
def unsupported(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """SAELens releases in formats without an sae_hub adapter: listed with `supported: false`."""
    conversion = entry["conversion_func"]
    model = HF_MODELS.get(entry["model"], entry["model"])

    def build(raw: dict[str, Any]) -> SAE:
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

    return saelens_release(
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
