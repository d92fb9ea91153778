"""Registry schema: what one release data file holds and the dataclasses it becomes.

A data file (`registry/data/<family>.yaml`) is `{schema_version: 1, family: str, releases: [...]}`.
Each release names its Hub repo (or none, for files served by URL), model, format and links, and
lists its SAEs as `groups`. A group is a table (`columns` + `rows`; a cell holding a list stands for
one row per element), a `product` of variables (`layer: 0..31`), or both: every row crossed with
every product point. An SAE field not given by a row comes from the group's or the release's
`defaults`; string defaults of text fields are templates filled with the row's variables, the
constant defaults and `{id}` (`{width:k}` writes 16384 as `16k`, 1048576 as `1m`). Every field is
explicit data: nothing is inferred from names at run time. `validate.py` checks a release when the
file is read; `expand.py` builds and checks its SAEs on first use.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Mapping
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

RELEASE_FIELDS: tuple[str, ...] = (
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
)
"""The keys a release may hold, in the order the generated data files write them."""
RELEASE_KEYS = frozenset(RELEASE_FIELDS)
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


TEMPLATE_FORMATTER = _TemplateFormatter()
WIDTH_SPEC = re.compile(r"\{(\w+):k\}")


def template_names(template: str) -> set[str]:
    """Return the variable names a template refers to (`"l{layer}r_{width:k}"` -> {layer, width})."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in TEMPLATE_FORMATTER.parse(template) if name}


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
        from sae_hub.registry.expand import expand_release  # expand builds on these classes

        return expand_release(self)

    @property
    def sae_ids(self) -> list[str]:
        """SAE ids in registry order."""
        return list(self.saes)

    def error(self, message: str, *, field: str, sae_id: str | None = None) -> ConfigError:
        """Build a ConfigError that names the file, the release, the SAE and the field."""
        where = f"{self.source}: release {self.name!r}" + (f", SAE {sae_id!r}" if sae_id else "")
        return ConfigError(f"{where}: field {field!r}: {message}", field=field)
