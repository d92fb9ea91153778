"""Registry schema: what one release file holds, the dataclasses it becomes, and their validation.

A data file (`registry/data/<family>.yaml`) is `{schema_version: 1, family: str, releases: [...]}`.
Each release names its Hub repo (or none, for files served by URL), model, format and links, and lists
its SAEs as `groups`. A group is a table (`columns` + `rows`, explicit lists; a cell holding a list
stands for one row per element), a `product` of variables (regular families: `layer: 0..31`), or
both: every row crossed with every product point. Every SAE field not given by a row comes from the group's or
the release's `defaults`; string defaults of the text fields are templates formatted with the row's
variables, the constant defaults and `{id}` (`{width:k}` writes 16384 as `16k`, 1048576 as `1m`).
Every field is explicit data: nothing is inferred from names at run time.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sae_hub.config import SAEConfig
from sae_hub.errors import ConfigError

SCHEMA_VERSION = 1

FORMATS: tuple[str, ...] = (
    "native",
    "saelens",
    "gemma-scope",
    "gemma-scope-2",
    "llama-scope",
    "llama-scope-r1",
    "openai",
    "sparsify",
    "dictionary-learning",
    "goodfire",
)
"""Formats sae_hub has adapters for; a release in any other format must say `supported: false`."""

SITES: tuple[str, ...] = ("res", "mlp", "att", "mlp_act", "transcoder", "embedding", "clt")
"""Where an SAE reads: residual stream, MLP out, attention (out or z), MLP hidden act, transcoder, ..."""

LINK_KINDS = frozenset({"model", "dashboards", "publication"})

RELEASE_KEYS = frozenset(
    {
        "name",
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
        "defaults",
        "groups",
    }
)
GROUP_KEYS = frozenset({"defaults", "product", "columns", "rows"})

# SAE field -> accepted types (None always allowed except for the required ones).
SAE_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "path": (str,),
    "url": (str,),
    "site": (str,),
    "hook": (str,),
    "hook_out": (str,),
    "hf_hook": (str,),
    "hf_hook_out": (str,),
    "neuronpedia": (str,),
    "layer": (int,),
    "width": (int,),
    "l0": (int, float),
}
TEXT_FIELDS = frozenset(k for k, t in SAE_FIELDS.items() if t == (str,))
REQUIRED_FIELDS = ("id", "site", "hook")

OVERRIDE_FIELDS: frozenset[str] = frozenset(
    f.name
    for f in dataclasses.fields(SAEConfig)
    if f.name not in {"d_in", "d_sae", "d_out", "dtype", "provenance"}
)
"""SAEConfig fields a registry entry may override (facts the files lack, e.g. a dataset norm scale)."""


class _TemplateFormatter(string.Formatter):
    """`str.format` plus the `k` spec that writes widths the way release paths do (`16k`, `1m`)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec == "k":
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`:k` needs a positive int width, got {value!r}")
            return f"{value // 2**20}m" if value % 2**20 == 0 else f"{value // 1000}k"
        return super().format_field(value, format_spec)


_FORMATTER = _TemplateFormatter()


def template_names(template: str) -> set[str]:
    """Return the variable names a template refers to (`"l{layer}r_{width:k}"` -> {layer, width})."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in _FORMATTER.parse(template) if name}


@dataclass(frozen=True, kw_only=True)
class ResolvedSAE:
    """Everything the registry knows about one SAE: where its files are and where it reads."""

    release: str
    """Release name (SAELens's name where SAELens lists the release)."""
    sae_id: str
    """SAE id inside the release."""
    repo_id: str | None
    """Hub repository holding the files; None for SAEs served as plain HTTPS files."""
    url: str | None
    """HTTPS URL of the single file, for SAEs not on the Hub; None otherwise."""
    path: str
    """Folder (or file) inside the repo; for URL SAEs the file's path under the publisher's base URL."""
    format: str
    """On-disk format name (an adapter in `sae_hub.formats` when `supported`)."""
    model: str
    """Hugging Face model id the SAE was trained on (e.g. `google/gemma-2-2b`)."""
    saelens_model: str | None
    """The model name SAELens's registry uses (often a TransformerLens name like `gpt2-small`)."""
    hook: str
    """Input hook point, TransformerLens name."""
    hook_out: str | None
    """Output hook point for transcoders (TransformerLens name); None for plain SAEs."""
    hf_hook: str | None
    """Input hook as a Hugging Face module path with `.output`/`.input`; None where no module matches exactly."""
    hf_hook_out: str | None
    """Output hook of transcoders as a Hugging Face module path."""
    site: str
    """Kind of activation: one of SITES."""
    layer: int | None
    """Layer of the hook point; None for embedding SAEs."""
    width: int | None
    """Number of latents (d_sae) where published."""
    l0: float | None
    """Published average L0 where known."""
    neuronpedia: str | None
    """Neuronpedia id (`model/source`)."""
    config_overrides: Mapping[str, Any]
    """SAEConfig fields to set after reading the files (facts the files lack)."""
    links: Mapping[str, str]
    """`model`, `dashboards`, `publication` URLs where known."""
    extra: Mapping[str, Any]
    """Informative settings (dataset, TransformerLens kwargs); never change the math."""
    supported: bool
    """False for releases in a format sae_hub cannot load yet."""


@dataclass(frozen=True, kw_only=True)
class Release:
    """One release: a set of SAEs in one repo (or URL family) for one model, in one format."""

    name: str
    family: str
    """Data file (family) the release comes from."""
    source: str
    """File name, for error messages."""
    repo_id: str | None
    model: str
    saelens_model: str | None
    format: str
    supported: bool
    in_saelens: bool
    """True when SAELens lists this release under the same name with the same ids and paths."""
    links: Mapping[str, str]
    notes: str | None
    config_overrides: Mapping[str, Any]
    extra: Mapping[str, Any]
    n_saes: int
    groups: tuple[Mapping[str, Any], ...] = field(repr=False, compare=False)
    defaults: Mapping[str, Any] = field(repr=False, compare=False)

    @cached_property
    def saes(self) -> dict[str, ResolvedSAE]:
        """SAE id -> resolved SAE, expanded from the groups on first use."""
        out: dict[str, ResolvedSAE] = {}
        for gi, group in enumerate(self.groups):
            for ctx in _expand_group(self, gi, group):
                sae = _build_sae(self, ctx)
                if sae.sae_id in out:
                    raise self.error(f"duplicate SAE id {sae.sae_id!r}", field="id")
                out[sae.sae_id] = sae
        if len(out) != self.n_saes:
            raise self.error(f"expanded to {len(out)} SAEs, expected {self.n_saes}", field="groups")
        return out

    @property
    def sae_ids(self) -> list[str]:
        """SAE ids in registry order."""
        return list(self.saes)

    def error(self, message: str, *, field: str, sae_id: str | None = None) -> ConfigError:
        """Build a ConfigError that names the file, the release, the SAE and the field."""
        where = f"{self.source}: release {self.name!r}" + (f", SAE {sae_id!r}" if sae_id else "")
        return ConfigError(f"{where}: field {field!r}: {message}", field=field)


# ---- parsing ------------------------------------------------------------------------------------


def _fail(source: str, where: str, field: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: field {field!r}: {message}", field=field)


def _check_overrides(source: str, where: str, overrides: Any) -> dict[str, Any]:
    if not isinstance(overrides, Mapping):
        raise _fail(source, where, "config_overrides", f"must be a mapping, got {overrides!r}")
    for key, value in overrides.items():
        _check_override(source, where, key, value)
    return dict(overrides)


def _check_override(source: str, where: str, key: str, value: Any) -> None:
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
        size *= len(_product_values(source, where, name, values))
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


def _explode(row: list[Any]) -> list[list[Any]]:
    """A row whose cells hold lists stands for one row per combination of their elements."""
    out: list[list[Any]] = [[]]
    for cell in row:
        out = [[*r, v] for r in out for v in cell] if isinstance(cell, list) else [[*r, cell] for r in out]
    return out


def _product_values(source: str, where: str, name: str, values: Any) -> list[Any]:
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
            _check_override(source, where, key, value)
        elif key not in SAE_FIELDS:
            raise _fail(
                source,
                where,
                key,
                f"unknown default; expected an SAE field {sorted(SAE_FIELDS)} or an SAEConfig override",
            )


# ---- expansion ----------------------------------------------------------------------------------


def _expand_group(release: Release, gi: int, group: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    where = f"{release.source}: release {release.name!r}, group {gi}"
    defaults = {**release.defaults, **(group.get("defaults") or {})}
    # Every row combined with every point of the product (either may be absent).
    names = list(group.get("columns") or []) + list(group.get("product") or {})
    rows: list[list[Any]] = [r for row in group.get("rows", [[]]) for r in _explode(row)]
    for name, values in (group.get("product") or {}).items():
        axis = _product_values(release.source, where, name, values)
        rows = [[*row, value] for row in rows for value in axis]
    templates = {k: v for k, v in defaults.items() if k in TEXT_FIELDS and isinstance(v, str)}
    used = set().union(*(template_names(t) for t in templates.values())) if templates else set()
    unused = [n for n in names if n not in SAE_FIELDS and n not in OVERRIDE_FIELDS and n not in used]
    if unused:
        raise release.error(
            f"variable {unused[0]!r} is neither an SAE field nor used by a template", field=unused[0]
        )
    for row in rows:
        ctx = {k: v for k, v in defaults.items() if k not in templates}
        ctx.update(zip(names, row, strict=True))
        ordered = sorted(templates, key=lambda k: k != "id")  # `id` first, so others may use {id}
        for key in ordered:
            if key in ctx:
                continue
            try:
                ctx[key] = _FORMATTER.format(templates[key], **ctx)
            except (KeyError, ValueError, IndexError) as exc:
                raise release.error(
                    f"template {templates[key]!r} cannot be filled: {exc}", field=key
                ) from None
        yield ctx


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
        _check_override(release.source, f"release {release.name!r}, SAE {sae_id!r}", key, ctx[key])
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
