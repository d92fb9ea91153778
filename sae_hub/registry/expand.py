"""Expand a release's groups (rows x product, templates filled) into validated `ResolvedSAE` entries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sae_hub.registry.schema import (
    OVERRIDE_FIELDS,
    REQUIRED_FIELDS,
    SAE_FIELDS,
    SITES,
    TEMPLATE_FORMATTER,
    TEXT_FIELDS,
    WIDTH_SPEC,
    Release,
    ResolvedSAE,
    template_names,
)
from sae_hub.registry.validate import check_override, product_values


def expand_release(release: Release) -> dict[str, ResolvedSAE]:
    """Return SAE id -> ResolvedSAE for every SAE of `release`, in registry order."""
    out: dict[str, ResolvedSAE] = {}
    for gi, group in enumerate(release.groups):
        for ctx in _expand_group(release, gi, group):
            sae = _build_sae(release, ctx)
            if sae.sae_id in out:
                raise release.error(f"duplicate SAE id {sae.sae_id!r}", field="id")
            out[sae.sae_id] = sae
    if len(out) != release.n_saes:
        raise release.error(f"expanded to {len(out)} SAEs, expected {release.n_saes}", field="groups")
    return out


def _explode(row: list[Any]) -> list[list[Any]]:
    """A row whose cells hold lists stands for one row per combination of their elements."""
    out: list[list[Any]] = [[]]
    for cell in row:
        out = [[*r, v] for r in out for v in cell] if isinstance(cell, list) else [[*r, cell] for r in out]
    return out


def _expand_group(release: Release, gi: int, group: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    where = f"{release.source}: release {release.name!r}, group {gi}"
    defaults = {**release.defaults, **(group.get("defaults") or {})}
    # Every row combined with every point of the product (either may be absent).
    names = list(group.get("columns") or []) + list(group.get("product") or {})
    rows: list[list[Any]] = [r for row in group.get("rows", [[]]) for r in _explode(row)]
    for name, values in (group.get("product") or {}).items():
        axis = product_values(release.source, where, name, values)
        rows = [[*row, value] for row in rows for value in axis]
    templates = {k: v for k, v in defaults.items() if k in TEXT_FIELDS and isinstance(v, str)}
    used = set().union(*(template_names(t) for t in templates.values())) if templates else set()
    unused = [n for n in names if n not in SAE_FIELDS and n not in OVERRIDE_FIELDS and n not in used]
    if unused:
        raise release.error(
            f"variable {unused[0]!r} is neither an SAE field nor used by a template", field=unused[0]
        )
    # `{width:k}` becomes a plain `{width__k}` filled per row, so rows format with C-speed format_map.
    k_names = {k: WIDTH_SPEC.findall(t) for k, t in templates.items()}
    compiled = {k: WIDTH_SPEC.sub(r"{\1__k}", t) for k, t in templates.items()}
    ordered = sorted(templates, key=lambda k: k != "id")  # `id` first, so others may use {id}
    constants = {k: v for k, v in defaults.items() if k not in templates}
    for row in rows:
        ctx = {**constants, **dict(zip(names, row, strict=True))}
        for key in ordered:
            if key in ctx:
                continue
            try:
                for name in k_names[key]:
                    ctx[f"{name}__k"] = TEMPLATE_FORMATTER.format_field(ctx[name], "k")
                ctx[key] = compiled[key].format_map(ctx)
            except (KeyError, ValueError, IndexError, AttributeError) as exc:
                raise release.error(
                    f"template {templates[key]!r} cannot be filled: {exc!r}", field=key
                ) from None
        yield {k: v for k, v in ctx.items() if not k.endswith("__k")}


def _build_sae(release: Release, ctx: dict[str, Any]) -> ResolvedSAE:
    sae_id = ctx.get("id")
    for key in REQUIRED_FIELDS:
        if ctx.get(key) is None:
            raise release.error("required", field=key, sae_id=sae_id)
    for key, types in SAE_FIELDS.items():
        value = ctx.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise release.error(
                f"must be {' or '.join(t.__name__ for t in types)}, got {value!r}", field=key, sae_id=sae_id
            )
    if (ctx.get("path") is None) or (ctx.get("url") is None) == (release.repo_id is None):
        raise release.error(
            "needs a `path`, and a `url` exactly when the release has no repo_id", field="path", sae_id=sae_id
        )
    if ctx.get("url") is not None and not ctx["url"].startswith("https://"):
        raise release.error(f"must be an https:// URL, got {ctx['url']!r}", field="url", sae_id=sae_id)
    if ctx["site"] not in SITES:
        raise release.error(
            f"unknown site {ctx['site']!r}; expected one of {list(SITES)}", field="site", sae_id=sae_id
        )
    for key in ("layer", "width"):
        if ctx.get(key) is not None and ctx[key] < 0:
            raise release.error(f"must be >= 0, got {ctx[key]}", field=key, sae_id=sae_id)
    overrides = dict(release.config_overrides)
    for key in OVERRIDE_FIELDS & ctx.keys():
        if ctx[key] is None:  # a row may leave an override column empty
            continue
        check_override(release.source, f"release {release.name!r}, SAE {sae_id!r}", key, ctx[key])
        overrides[key] = ctx[key]
    return ResolvedSAE(
        release=release.name,
        sae_id=sae_id,
        repo_id=release.repo_id,
        url=ctx.get("url"),
        path=ctx["path"],
        format=release.format,
        model=release.model,
        saelens_model=release.saelens_model,
        hook=ctx["hook"],
        hook_out=ctx.get("hook_out"),
        hf_hook=ctx.get("hf_hook"),
        hf_hook_out=ctx.get("hf_hook_out"),
        site=ctx["site"],
        layer=ctx.get("layer"),
        width=ctx.get("width"),
        l0=None if ctx.get("l0") is None else float(ctx["l0"]),
        neuronpedia=ctx.get("neuronpedia"),
        config_overrides=overrides,
        links=release.links,
        extra=release.extra,
        supported=release.supported,
    )
