"""Where one SAE lives: a registry release or a Hub repo id becomes a `Target` (repo folder or URL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sae_hub import constants
from sae_hub.errors import ConfigError

# Registry URLs name the public OpenAI bucket; tests and mirrors swap the base via the constant.
OPENAI_PUBLIC_BASE_URL = "https://openaipublic.blob.core.windows.net/sparse-autoencoder"


@dataclass(frozen=True)
class Target:
    """A resolved SAE location: `repo_id` + `path` (folder or file in the repo), or an HTTPS `url`."""

    repo_id: str | None
    path: str
    url: str | None = None
    """Where the single file is fetched from (the registry URL on `SAE_HUB_OPENAI_BASE_URL`)."""
    source_url: str | None = None
    """The URL the registry publishes (kept in provenance)."""
    format: str | None = None
    """Adapter name when the registry knows it; None means detect from the files."""
    release: str | None = None
    sae_id: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    """Registry facts written into the SAE's provenance (model, hook, layer, ...)."""
    config_overrides: dict[str, Any] = field(default_factory=dict)
    """SAEConfig fields the files do not carry (e.g. `input_scale`)."""

    def describe(self, revision: str | None = None) -> str:
        """Human-readable location, e.g. `org/repo@rev:path` or the URL."""
        if self.url is not None:
            return self.url
        at = f"@{revision}" if revision else ""
        return f"{self.repo_id}{at}:{self.path or '.'}"

    def how_to_download(self) -> str:
        """The command that warms the cache for this SAE."""
        name = self.release or self.repo_id or ""
        return f"sae-hub download {name} {self.sae_id or ''}".rstrip()


def openai_url(url: str) -> str:
    """Rewrite an OpenAI public-bucket URL onto `constants.SAE_HUB_OPENAI_BASE_URL`."""
    if url.startswith(OPENAI_PUBLIC_BASE_URL):
        return constants.SAE_HUB_OPENAI_BASE_URL.rstrip("/") + url[len(OPENAI_PUBLIC_BASE_URL) :]
    return url


def target_for(name: str, sae_id: str | None) -> Target:
    """Resolve a registry release (with its SAE id) or a Hub repo id (sae_id = folder) to a Target.

    Raises:
        ReleaseNotFoundError: `name` is neither a release nor a repo id (with the closest releases).
        ConfigError: a release was named without an SAE id.
        SaeNotFoundError: the release has no such SAE id (with the closest ids).
    """
    from sae_hub import registry

    if registry.is_release(name):
        if sae_id is None:
            examples = ", ".join(f"`{i}`" for i in registry.get_release(name).sae_ids[:3])
            raise ConfigError(f"release `{name}` needs an SAE id, e.g. {examples}", field="sae_id")
        r = registry.resolve(name, sae_id)
        prov = {
            "model": r.model,
            "hook": r.hook,
            "hook_out": r.hook_out,
            "hf_hook": r.hf_hook,
            "layer": r.layer,
            "release": r.release,
            "sae_id": r.sae_id,
            "repo_id": r.repo_id,
        }
        return Target(
            repo_id=r.repo_id,
            path=(r.path or "").strip("/"),
            url=openai_url(r.url) if r.url else None,
            source_url=r.url,
            format=r.format,
            release=r.release,
            sae_id=r.sae_id,
            provenance={k: v for k, v in prov.items() if v is not None},
            config_overrides=dict(r.config_overrides or {}),
        )
    if "/" in name and not name.startswith(("/", ".")):
        folder = (sae_id or "").strip("/")
        return Target(
            repo_id=name, path=folder, sae_id=sae_id, provenance={"repo_id": name, "sae_id": sae_id}
        )
    registry.get_release(name)  # raises ReleaseNotFoundError with the closest release names
    raise AssertionError(f"{name!r} is not a release, yet the registry returned it")
