"""Validate one release mapping from a data file: keys, types, formats, overrides and group shapes.

Every error is a ConfigError whose message starts with the file, then the release, then the field.
SAE entries are checked again, one by one, when `expand` builds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sae_hub.errors import ConfigError
from sae_hub.registry.schema import (
    FORMATS,
    GROUP_KEYS,
    LINK_KINDS,
    OVERRIDE_FIELDS,
    RELEASE_KEYS,
    SAE_FIELDS,
    Release,
)


def _fail(source: str, where: str, field: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: field {field!r}: {message}", field=field)


def _check_overrides(source: str, where: str, overrides: Any) -> dict[str, Any]:
    if not isinstance(overrides, Mapping):
        raise _fail(source, where, "config_overrides", f"must be a mapping, got {overrides!r}")
    for key, value in overrides.items():
        check_override(source, where, key, value)
    return dict(overrides)


def check_override(source: str, where: str, key: str, value: Any) -> None:
    if key not in OVERRIDE_FIELDS:
        raise _fail(source, where, key, f"not an SAEConfig field; expected one of {sorted(OVERRIDE_FIELDS)}")
    if key in {"input_scale", "output_scale"} and not (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    ):
        raise _fail(source, where, key, f"must be a finite positive number, got {value!r}")


def _group_size(source: str, where: str, group: Any) -> int:
    if not isinstance(group, Mapping) or set(group) - GROUP_KEYS:
        bad = sorted(set(group) - GROUP_KEYS) if isinstance(group, Mapping) else group
        raise _fail(source, where, "groups", f"a group takes keys {sorted(GROUP_KEYS)}, got {bad!r}")
    if "product" not in group and "rows" not in group:
        raise _fail(source, where, "groups", "a group needs `product`, `columns` + `rows`, or both")
    size = 1
    product = group.get("product") or {}
    if not isinstance(product, Mapping):
        raise _fail(source, where, "product", f"must map variables to values, got {product!r}")
    for name, values in product.items():
        size *= len(product_values(source, where, name, values))
    if "rows" not in group:
        return size
    columns, rows = group.get("columns"), group["rows"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _fail(source, where, "columns", f"must be a list of names, got {columns!r}")
    if set(columns) & set(product):
        raise _fail(
            source, where, "columns", f"{sorted(set(columns) & set(product))} are both columns and product"
        )
    if not isinstance(rows, list):
        raise _fail(source, where, "rows", f"must be a list of rows, got {rows!r}")
    n_rows = 0
    for row in rows:
        if not isinstance(row, list) or len(row) != len(columns):
            raise _fail(source, where, "rows", f"row {row!r} does not match columns {columns}")
        n = 1
        for cell in row:
            if isinstance(cell, list):
                if not cell or any(isinstance(v, list | dict) for v in cell):
                    raise _fail(source, where, "rows", f"a list cell must hold plain values, got {cell!r}")
                n *= len(cell)
        n_rows += n
    return size * n_rows


def product_values(source: str, where: str, name: str, values: Any) -> list[Any]:
    if isinstance(values, str) and ".." in values:
        lo, _, hi = values.partition("..")
        if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
            raise _fail(source, where, name, f"range must look like `0..31`, got {values!r}")
        return list(range(int(lo), int(hi) + 1))
    if not isinstance(values, list) or not values:
        raise _fail(source, where, name, f"product values must be a non-empty list or `a..b`, got {values!r}")
    return values


def parse_release(raw: Any, *, family: str, source: str) -> Release:
    """Validate one release mapping from a data file and return the Release (SAEs expand lazily)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise _fail(source, "release", "name", f"each release needs a string `name`, got {raw!r}")
    name = raw["name"]
    where = f"release {name!r}"
    unknown = sorted(set(raw) - RELEASE_KEYS)
    if unknown:
        raise _fail(source, where, unknown[0], f"unknown key; expected a subset of {sorted(RELEASE_KEYS)}")
    for key in ("model", "format"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise _fail(source, where, key, f"required string, got {raw.get(key)!r}")
    for key in ("repo_id", "saelens_model", "notes"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise _fail(source, where, key, f"must be a string, got {raw[key]!r}")
    supported = raw.get("supported", True)
    if not isinstance(supported, bool) or not isinstance(raw.get("in_saelens", False), bool):
        raise _fail(source, where, "supported", "`supported` and `in_saelens` must be booleans")
    if supported and raw["format"] not in FORMATS:
        raise _fail(
            source,
            where,
            "format",
            f"unknown format {raw['format']!r}; expected one of {list(FORMATS)} "
            "(or mark the release `supported: false`)",
        )
    links = raw.get("links") or {}
    if (
        not isinstance(links, Mapping)
        or set(links) - LINK_KINDS
        or not all(isinstance(v, str) for v in links.values())
    ):
        raise _fail(source, where, "links", f"must map {sorted(LINK_KINDS)} to URLs, got {links!r}")
    defaults = raw.get("defaults") or {}
    _check_defaults(source, where, defaults)
    groups = raw.get("groups")
    if not isinstance(groups, list) or not groups:
        raise _fail(source, where, "groups", "a release needs a non-empty list of groups")
    n_saes = 0
    for group in groups:
        n_saes += _group_size(source, where, group)
        _check_defaults(source, where, group.get("defaults") or {})
    return Release(
        name=name,
        family=family,
        source=source,
        repo_id=raw.get("repo_id"),
        model=raw["model"],
        saelens_model=raw.get("saelens_model"),
        format=raw["format"],
        supported=supported,
        in_saelens=raw.get("in_saelens", False),
        links=dict(links),
        notes=raw.get("notes"),
        config_overrides=_check_overrides(source, where, raw.get("config_overrides") or {}),
        extra=dict(raw.get("extra") or {}),
        n_saes=n_saes,
        groups=tuple(groups),
        defaults=dict(defaults),
    )


def _check_defaults(source: str, where: str, defaults: Any) -> None:
    if not isinstance(defaults, Mapping):
        raise _fail(source, where, "defaults", f"must be a mapping, got {defaults!r}")
    for key, value in defaults.items():
        if key in OVERRIDE_FIELDS:
            check_override(source, where, key, value)
        elif key not in SAE_FIELDS:
            raise _fail(
                source,
                where,
                key,
                f"unknown default; expected an SAE field {sorted(SAE_FIELDS)} or an SAEConfig override",
            )
