"""Look releases and SAEs up by name, with close-match suggestions, and search across releases."""

from __future__ import annotations

import difflib

from sae_hub.errors import ReleaseNotFoundError, SaeNotFoundError, UnsupportedFormatError
from sae_hub.registry.loader import load_registry
from sae_hub.registry.schema import FORMATS, Release, ResolvedSAE


def _matches_model(release: Release, model: str) -> bool:
    wanted = model.lower()
    return wanted in {release.model.lower(), (release.saelens_model or "").lower()}


def is_release(name: str) -> bool:
    """Return True when `name` is a registry release name (not a repo id or a folder)."""
    return name in load_registry()


def list_releases(model: str | None = None) -> list[Release]:
    """Return every release, or those for one model (HF id or SAELens model name), sorted by name.

    Example:
        >>> [r.name for r in list_releases("meta-llama/Llama-3.1-8B")][:1]
        ['llama_scope_lxa_32x']
    """
    releases = load_registry().values()
    if model is not None:
        releases = [r for r in releases if _matches_model(r, model)]
    return sorted(releases, key=lambda r: r.name)


def get_release(name: str) -> Release:
    """Return the release called `name`.

    Raises:
        ReleaseNotFoundError: unknown name; `.suggestions` holds the closest release names.
    """
    registry = load_registry()
    try:
        return registry[name]
    except KeyError:
        raise ReleaseNotFoundError(name, difflib.get_close_matches(name, registry, n=5, cutoff=0.6)) from None


def resolve(release: str, sae_id: str | None) -> ResolvedSAE:
    """Return where the SAE `sae_id` of `release` lives (repo, path, format) and where it reads.

    `sae_id` may be None only for releases holding a single SAE.

    Raises:
        ReleaseNotFoundError: unknown release (with the closest names).
        SaeNotFoundError: known release, unknown id (with the closest ids).
        UnsupportedFormatError: the release is listed but its format has no adapter yet.

    Example:
        >>> resolve("gemma-scope-2b-pt-res-canonical", "layer_0/width_16k/canonical").path
        'layer_0/width_16k/average_l0_105'
    """
    rel = get_release(release)
    saes = rel.saes
    if sae_id is None and len(saes) == 1:
        sae_id = next(iter(saes))
    if sae_id is None:
        raise SaeNotFoundError(release, "(no sae_id given)", rel.sae_ids[:5])
    if sae_id not in saes:
        raise SaeNotFoundError(release, sae_id, difflib.get_close_matches(sae_id, saes, n=5, cutoff=0.6))
    if not rel.supported:
        raise UnsupportedFormatError(
            f"Release `{release}` is listed (repo {rel.repo_id}) but its format `{rel.format}` cannot be "
            f"loaded by sae_hub yet; loadable formats are {', '.join(FORMATS)}.",
            format=rel.format,
        )
    return saes[sae_id]


def search(
    *,
    model: str | None = None,
    site: str | None = None,
    layer: int | None = None,
    width: int | None = None,
    l0: float | None = None,
) -> list[ResolvedSAE]:
    """Return loadable SAEs matching every given filter; with `l0`, nearest published L0 first.

    Without `l0` the order is release name, then registry order. SAEs with no published L0 come last
    when `l0` is given.

    Example:
        >>> search(model="google/gemma-2-2b", site="res", layer=20, width=16384, l0=70)[0].sae_id
        'layer_20/width_16k/average_l0_71'
    """
    found: list[ResolvedSAE] = []
    for rel in list_releases(model):
        if not rel.supported:
            continue
        for sae in rel.saes.values():
            if site is not None and sae.site != site:
                continue
            if layer is not None and sae.layer != layer:
                continue
            if width is not None and sae.width != width:
                continue
            found.append(sae)
    if l0 is not None:
        found.sort(key=lambda s: (s.l0 is None, abs((s.l0 or 0.0) - l0)))
    return found
