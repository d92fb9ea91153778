"""Generate `sae_hub/registry/data/*.yaml` from SAELens's published registry plus our pattern rules.

Release names, SAE ids and (repo, path) pairs are copied from the `pretrained_saes.yaml` that the
installed `sae-lens` package ships, so code moves over unchanged. Everything the runtime needs beyond
that (HF model id, site, layer, width, hook names, format) is worked out here, once, and written as
explicit fields; the runtime never parses names. Families SAELens lists only partly (Llama Scope
transcoders) or not at all (OpenAI's original `.pt` files, sparsify) come from the pattern rules
below. Regular families are written as patterns (`product`), the rest as compact row tables.

Usage:
    python converters/build_registry.py [--saelens-yaml PATH] [--out sae_hub/registry/data] [--check]

With `--check` nothing is written: the script exits 1 if the files on disk differ from what it would
write. Every generated release that SAELens also lists is re-expanded with sae_hub's own loader and
compared id by id (repo and path) against SAELens before anything is written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import itertools
import math
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sae_hub.registry.loader import parse_file  # noqa: E402
from sae_hub.registry.schema import TEXT_FIELDS, template_names  # noqa: E402

SAE = dict[str, Any]

# ---- facts ----------------------------------------------------------------------------------------

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


# ---- compression -------------------------------------------------------------------------------


def _fill(template: str, sae: SAE) -> str | None:
    from sae_hub.registry.schema import TEMPLATE_FORMATTER

    try:
        return TEMPLATE_FORMATTER.format(template, **sae)
    except (KeyError, ValueError, IndexError):
        return None


def _escape(value: Any) -> Any:
    return value.replace("{", "{{").replace("}", "}}") if isinstance(value, str) else value


def _auto_templates(sae: SAE, key: str) -> list[str]:
    """Guess templates for a text field from one SAE: its layer (and width label) made variables."""
    value = sae.get(key)
    if not isinstance(value, str) or (key == "id" and sae.get("layer") is None):
        return []
    template = _escape(value)
    if sae.get("layer") is not None:
        template = re.sub(rf"(?<=[./]){sae['layer']}(?=[.\-]|$)", "{layer}", template)
    if isinstance(sae.get("width"), int):
        label = _fill("{width:k}", sae)
        template = re.sub(rf"-{label}$", "-{width:k}", template)
    return [template] if template != _escape(value) else []


def compress(saes: list[SAE], candidates: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Turn explicit SAE dicts into one group: constants and templates as defaults, the rest as rows.

    A field becomes a template when one of its `candidates` reproduces it for every SAE; a group whose
    only varying variable is a contiguous `layer` becomes a `product`.
    """
    keys = list(dict.fromkeys(k for sae in saes for k in sae))
    candidates = {k: [*(candidates or {}).get(k, []), *_auto_templates(saes[0], k)] for k in keys}
    field_keys = TEXT_FIELDS | {"layer", "width", "l0", "input_scale", "output_scale"}
    defaults: dict[str, Any] = {}
    templates: dict[str, str] = {}
    for key in keys:
        values = [sae.get(key) for sae in saes]
        if key in TEXT_FIELDS:
            for template in candidates.get(key, []):
                if all(_fill(template, sae) == v for sae, v in zip(saes, values, strict=True)):
                    templates[key] = template
                    break
        constant = all(v == values[0] for v in values) and values[0] is not None
        if key in field_keys and key not in templates and constant:
            defaults[key] = _escape(values[0]) if key in TEXT_FIELDS else values[0]
    used = set().union(*(template_names(t) for t in templates.values())) if templates else set()
    columns = [
        k
        for k in keys
        if k not in templates
        and k not in defaults
        and (k in field_keys or k in used)
        and any(sae.get(k) is not None for sae in saes)
    ]
    # Template-only variables that are constant still need a value: keep them as columns.
    columns += [k for k in keys if k in used and k not in columns and k not in field_keys]
    defaults.update(templates)
    group: dict[str, Any] = {"defaults": defaults}
    product, columns = _factor(saes, columns)
    if columns:
        group["columns"] = columns
        group["rows"] = _fold(list(dict.fromkeys(tuple(sae.get(c) for c in columns) for sae in saes)))
    if product or not columns:
        group["product"] = {k: _range_or_list(v) for k, v in product.items()}
    if not product and not columns:
        group.pop("product")
        group["columns"], group["rows"] = [], [[]]
    return group


def _nodes(rows: list[list[Any]]) -> int:
    return sum(1 + sum(1 + len(c) if isinstance(c, list) else 1 for c in row) for row in rows)


def _fold(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Merge rows that differ in one column into one row with a list cell, while that makes them smaller."""

    def key(cells: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(tuple(c) if isinstance(c, list) else c for c in cells)

    best = [list(row) for row in rows]
    while best:
        current = best
        for i in range(len(current[0])):
            if any(isinstance(row[i], list) for row in current):
                continue
            merged: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Any]]] = {}
            for row in current:
                rest = tuple(row[:i] + row[i + 1 :])
                merged.setdefault(key(rest), (rest, []))[1].append(row[i])
            folded = [[*r[:i], v if len(v) > 1 else v[0], *r[i:]] for r, v in merged.values()]
            if _nodes(folded) < _nodes(best):
                best = folded
        if best is current:
            break
    return [_Row(row) for row in best]


class _Row(list):
    """One table row: written in flow style on one line, whatever its cells hold."""


def _range_or_list(values: list[Any]) -> Any:
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if ints and len(values) > 2 and values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}..{values[-1]}"
    return values


def _factor(saes: list[SAE], columns: list[str]) -> tuple[dict[str, list[Any]], list[str]]:
    """Split columns into a product part and a row part when the SAEs are exactly rows x product.

    Returns the product axes and the remaining columns, picking the split with the fewest scalars.
    """
    best_cost, best = len(saes) * len(columns), ({}, columns)
    for r in range(1, min(3, len(columns)) + 1):
        for axes_names in itertools.combinations(columns, r):
            rest = [c for c in columns if c not in axes_names]
            axes = {a: list(dict.fromkeys(sae.get(a) for sae in saes)) for a in axes_names}
            if len(saes) % math.prod(len(v) for v in axes.values()):
                continue  # cannot be rows x product
            full = set(itertools.product(*axes.values()))
            seen: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
            for sae in saes:
                seen.setdefault(tuple(sae.get(c) for c in rest), []).append(
                    tuple(sae.get(a) for a in axes_names)
                )
            if all(len(v) == len(full) and set(v) == full for v in seen.values()):
                cost = len(seen) * len(rest) + sum(len(v) for v in axes.values())
                if cost < best_cost or (cost == best_cost and not rest):  # a pure product reads best
                    best_cost, best = cost, (axes, rest)
    return best


def release(
    name: str, *, model: str, fmt: str, groups: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    """Assemble a release mapping in the data-file order of keys, dropping empty optional fields."""
    out: dict[str, Any] = {"name": name}
    for key in (
        "repo_id",
        "model",
        "saelens_model",
        "format",
        "supported",
        "in_saelens",
        "links",
        "notes",
        "config_overrides",
        "extra",
    ):
        value = {"model": model, "format": fmt}.get(key, fields.get(key))
        if value not in (None, {}, "") and not (key == "supported" and value is True):
            out[key] = value
    out["groups"] = groups
    return out


def model_link(model: str) -> str:
    return f"https://huggingface.co/{model}"


def saelens_release(
    name: str,
    entry: dict[str, Any],
    build: Callable[[dict[str, Any]], SAE],
    *,
    candidates: dict[str, list[str]] | None = None,
    split: Callable[[SAE], Any] | None = None,
    model: str | None = None,
    links: dict[str, str] | None = None,
    notes: str | None = None,
) -> dict[str, Any]:
    """Our release for SAELens release `name`: same ids and paths, explicit fields from `build`."""
    conversion = entry.get("conversion_func")
    supported = conversion in CONVERSION_FORMATS
    fmt = CONVERSION_FORMATS.get(conversion) or UNSUPPORTED_FORMATS[conversion]
    saes = []
    seen: set[str] = set()
    for raw in entry["saes"]:
        if raw["id"] in seen:  # SAELens keeps the last duplicate; they are identical here
            continue
        seen.add(raw["id"])
        sae = {"id": raw["id"], "path": str(raw["path"]), **build(raw)}
        if raw.get("neuronpedia"):
            sae["neuronpedia"] = raw["neuronpedia"]
        if "norm_scaling_factor" in raw and fmt != "llama-scope":
            # SAELens folds W_enc *= s, W_dec /= s, b_dec /= s: an input scale s and an output scale s.
            sae["input_scale"] = sae["output_scale"] = float(raw["norm_scaling_factor"])
        saes.append(sae)
    candidates = {"path": ["{id}"], **(candidates or {})}
    if split is None:
        groups = [compress(saes, candidates)]
    else:
        keys = list(dict.fromkeys(split(s) for s in saes))
        groups = [compress([s for s in saes if split(s) == k], candidates) for k in keys]
    overrides = dict(entry.get("config_overrides") or {})
    config_overrides = {}
    if "normalize_activations" in overrides:
        config_overrides["normalization"] = overrides.pop("normalize_activations")
    for key in ("model_name", "hook_name"):  # restated facts, already explicit fields here
        overrides.pop(key, None)
    hf_model = model or HF_MODEL_BY_RELEASE.get(name) or HF_MODELS.get(entry["model"], entry["model"])
    all_links = {"model": model_link(hf_model), **(entry.get("links") or {}), **(links or {})}
    return release(
        name,
        repo_id=entry["repo_id"],
        model=hf_model,
        saelens_model=entry["model"],
        fmt=fmt,
        supported=supported,
        in_saelens=True,
        links=all_links,
        notes=notes if supported else (notes or f"SAELens converter `{conversion}`; no sae_hub adapter yet."),
        config_overrides=config_overrides,
        extra=overrides,
        groups=groups,
    )


# ---- families ------------------------------------------------------------------------------------


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


# ---- output and checks -----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for rows and other lists of scalars."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> Any:
    flow = all(not isinstance(x, dict | list) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(
    _Row, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", list(data), flow_style=True)
)


def _share_tables(releases: list[dict[str, Any]]) -> None:
    """Make equal row tables one object, so YAML writes them once (an anchor) and parses them once."""
    seen: dict[str, list[Any]] = {}
    for rel in releases:
        for group in rel["groups"]:
            if group.get("rows"):
                key = repr((group["columns"], group["rows"]))
                group["rows"] = seen.setdefault(key, group["rows"])


def render(family: str, releases: list[dict[str, Any]], source: str) -> str:
    _share_tables(releases)
    header = (
        f"# Generated by converters/build_registry.py from {source} and its pattern rules.\n"
        "# Do not edit by hand: change the script and run it again.\n"
    )
    body = yaml.dump(
        {"schema_version": 1, "family": family, "releases": releases},
        Dumper=_Dumper,
        sort_keys=False,
        width=140,
        allow_unicode=True,
    )
    return header + body


def check_against_saelens(text: str, source: str, sl: dict[str, Any]) -> list[str]:
    """Expand a rendered file with sae_hub's loader; list every (release, id) whose repo/path differs."""
    problems = []
    for rel in parse_file(text, source=source):
        if not rel.in_saelens:
            continue
        theirs = {s["id"]: (sl[rel.name]["repo_id"], str(s["path"])) for s in sl[rel.name]["saes"]}
        ours = {i: (s.repo_id, s.path) for i, s in rel.saes.items()}
        if theirs != ours:
            diff = sorted(set(theirs.items()) ^ set(ours.items()))[:3]
            problems.append(f"{rel.name}: {diff}")
    return problems


def saelens_yaml_path() -> Path:
    """The registry file of the installed sae-lens, found without importing it (its import is slow)."""
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or spec.origin is None:
        raise SystemExit("sae-lens is not installed; pass --saelens-yaml PATH")
    return Path(os.path.dirname(spec.origin)) / "pretrained_saes.yaml"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saelens-yaml", type=Path, default=None, help="SAELens pretrained_saes.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "sae_hub" / "registry" / "data")
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = parser.parse_args(list(argv) if argv is not None else None)
    src = args.saelens_yaml or saelens_yaml_path()
    sl = yaml.load(src.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    source = f"sae-lens {importlib.metadata.version('sae-lens')} pretrained_saes.yaml"
    covered: set[str] = set()
    failed = False
    for family, build in FAMILIES.items():
        releases = build(sl)
        covered |= {r["name"] for r in releases if r.get("in_saelens")}
        text = render(family, releases, source)
        problems = check_against_saelens(text, f"{family}.yaml", sl)
        if problems:
            print(f"{family}: ids/paths differ from SAELens:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        target = args.out / f"{family}.yaml"
        n = sum(r.n_saes for r in parse_file(text, source=target.name))
        if args.check:
            if not target.exists() or target.read_text() != text:
                print(f"{target} is out of date", file=sys.stderr)
                failed = True
        else:
            target.write_text(text)
        print(f"{family:20s} {len(releases):4d} releases {n:6d} SAEs")
    missing = sorted(set(sl) - covered)
    if missing:
        print(f"SAELens releases not covered: {missing}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
