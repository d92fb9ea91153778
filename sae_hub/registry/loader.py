"""Read the packaged release files once (`registry/data/*.yaml`) into validated `Release` objects."""

from __future__ import annotations

import functools
import logging
from importlib import resources
from typing import Any

import yaml

from sae_hub.errors import ConfigError
from sae_hub.registry.schema import SCHEMA_VERSION, Release
from sae_hub.registry.validate import parse_release

logger = logging.getLogger(__name__)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser is several times faster


def parse_file(text: str, *, source: str) -> list[Release]:
    """Parse one data file's text into releases; errors name `source`, the release and the field."""
    try:
        data: Any = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}", field="yaml") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"{source}: field 'schema_version': expected {SCHEMA_VERSION}, got "
            f"{data.get('schema_version') if isinstance(data, dict) else data!r}",
            field="schema_version",
        )
    family, releases = data.get("family"), data.get("releases")
    if not isinstance(family, str) or not isinstance(releases, list):
        raise ConfigError(f"{source}: needs a string `family` and a list `releases`", field="releases")
    return [parse_release(raw, family=family, source=source) for raw in releases]


@functools.cache
def load_registry() -> dict[str, Release]:
    """Return release name -> Release for every packaged data file (read once per process)."""
    out: dict[str, Release] = {}
    data_dir = resources.files("sae_hub.registry").joinpath("data")
    for entry in sorted(data_dir.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        for release in parse_file(entry.read_text(encoding="utf-8"), source=entry.name):
            if release.name in out:
                raise ConfigError(
                    f"{entry.name}: release {release.name!r} is also defined in {out[release.name].source}",
                    field="name",
                )
            out[release.name] = release
    logger.debug("registry: %d releases", len(out))
    return out
