"""Turn explicit SAE lists into the compact data-file form: templates, products, folded rows, YAML.

`compress` finds the constants, the templates that reproduce a text field for every SAE, the
product axes and the list cells; `render` writes a family file with equal tables written once.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from typing import Any

import yaml
from registry_facts import CONVERSION_FORMATS, HF_MODEL_BY_RELEASE, HF_MODELS, SAE, UNSUPPORTED_FORMATS

from sae_hub.registry.schema import RELEASE_FIELDS, TEMPLATE_FORMATTER, TEXT_FIELDS, template_names


def _fill(template: str, sae: SAE) -> str | None:

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
    values = {**fields, "name": name, "model": model, "format": fmt, "groups": groups}
    out: dict[str, Any] = {}
    for key in RELEASE_FIELDS:
        value = values.get(key)
        if value not in (None, {}, "") and not (key == "supported" and value is True):
            out[key] = value
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
