"""Every exception sae_hub raises, each also a builtin that callers already catch.

Hub errors from huggingface_hub (`RepositoryNotFoundError`, `RevisionNotFoundError`, `GatedRepoError`,
`LocalEntryNotFoundError`, `OfflineModeIsEnabled`) pass through unwrapped.
"""

from __future__ import annotations

from collections.abc import Sequence

from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError


class SaeHubError(Exception):
    """Base class of every sae_hub error."""


# ---- configuration ---------------------------------------------------------------------------


class ConfigError(SaeHubError, ValueError):
    """A config or recipe field is missing, unknown or has a bad value."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CheckpointMismatchError(SaeHubError, ValueError):
    """A resume was asked with a config whose architecture differs from the checkpoint's."""


# ---- registry --------------------------------------------------------------------------------


def _did_you_mean(suggestions: Sequence[str]) -> str:
    if not suggestions:
        return ""
    return " Did you mean " + ", ".join(f"`{s}`" for s in suggestions) + "?"


class ReleaseNotFoundError(SaeHubError, LookupError):
    """The release name is not in the registry (and is not a Hub repo id or a local folder)."""

    def __init__(self, release: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(f"Unknown SAE release `{release}`.{_did_you_mean(suggestions)}")
        self.release = release
        self.suggestions = list(suggestions)


class SaeNotFoundError(SaeHubError, LookupError):
    """The release is known but has no SAE with this id."""

    def __init__(self, release: str, sae_id: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(f"Release `{release}` has no SAE `{sae_id}`.{_did_you_mean(suggestions)}")
        self.release = release
        self.sae_id = sae_id
        self.suggestions = list(suggestions)


class UnsupportedFormatError(SaeHubError, ValueError):
    """The registry lists the release, but no adapter reads its format yet."""

    def __init__(self, message: str, *, format: str) -> None:
        super().__init__(message)
        self.format = format


# ---- files and formats -----------------------------------------------------------------------


class FormatError(SaeHubError, ValueError):
    """Files are present but cannot be read as the expected format."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = f" [{path}" + (f": {key}" if key else "") + "]" if path else ""
        super().__init__(message + where)
        self.path = path
        self.key = key


class UnknownFormatError(FormatError):
    """Format detection matched none of the known on-disk layouts."""

    def __init__(self, files_seen: Sequence[str], *, path: str | None = None) -> None:
        shown = ", ".join(sorted(files_seen)[:20]) or "(no files)"
        super().__init__(
            f"Could not detect an SAE format from the files: {shown}. Expected e.g. config.json + "
            "model.safetensors (native), cfg.json + sae_weights.safetensors (SAELens), params.npz "
            "(Gemma Scope), cfg.json + sae.safetensors (sparsify) or ae.pt + config.json "
            "(dictionary_learning).",
            path=path,
        )
        self.files_seen = list(files_seen)


class SaeFilesMissingError(SaeHubError, EntryNotFoundError):
    """The registry names files that the repository does not contain."""

    def __init__(self, message: str, *, repo_id: str, paths: Sequence[str]) -> None:
        super().__init__(message)
        self.repo_id = repo_id
        self.paths = list(paths)


class PushConflictError(SaeHubError, HfHubHTTPError):
    """A push was refused because the branch moved (someone else committed) since its head was read."""


class HubTimeoutError(SaeHubError, TimeoutError):
    """The Hub gave no answer within the timeout; the message names the repo or file and what was read."""


# ---- models ----------------------------------------------------------------------------------


class HookPointError(SaeHubError, LookupError):
    """A hook name does not resolve on this model, or the widths disagree."""
