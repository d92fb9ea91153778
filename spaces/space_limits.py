"""What the Space accepts: the bounds on every request, the steering row type, and the checks.

A request past a bound raises `LimitError`, whose message the UI shows as it is; the bounds keep one
user from holding the single model worker for long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["add", "clamp", "ablate"]
Positions = Literal["all", "prompt", "generated"]
MODES: tuple[str, ...] = ("add", "clamp", "ablate")
POSITIONS: tuple[str, ...] = ("all", "prompt", "generated")


class LimitError(ValueError):
    """A request the Space refuses: too long, too many, out of range, or not meaningful here."""


@dataclass(frozen=True)
class EditSpec:
    """One row of the Steer tab."""

    feature: int
    mode: Mode
    strength: float


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds on every request, so one user cannot hold the single model worker for long."""

    max_input_tokens: int = 256
    max_new_tokens: int = 128
    max_strength: float = 200.0
    max_edits: int = 4
    top_k: int = 12
    index_windows: int = 96
    """Windows of the bundled corpus encoded once for feature densities and top snippets."""
    index_window_tokens: int = 64

    def check_input(self, n_tokens: int) -> None:
        """Refuse a text or prompt longer than `max_input_tokens`."""
        if n_tokens > self.max_input_tokens:
            raise LimitError(
                f"the input is {n_tokens} tokens; the limit is {self.max_input_tokens} tokens. "
                "Shorten it and try again."
            )

    def check_steering(self, edits: Sequence[EditSpec], positions: str) -> None:
        """Refuse unknown positions and more rows than the Steer tab shows."""
        if positions not in POSITIONS:
            raise LimitError(f"positions must be one of {list(POSITIONS)}, got {positions!r}")
        if len(edits) > self.max_edits:
            raise LimitError(f"at most {self.max_edits} features can be steered at once")

    def check_edit(self, edit: EditSpec) -> None:
        """Refuse an unknown mode or a strength outside ±`max_strength`."""
        if edit.mode not in MODES:
            raise LimitError(f"mode must be one of {list(MODES)}, got {edit.mode!r}")
        if not abs(edit.strength) <= self.max_strength:
            raise LimitError(f"strength {edit.strength} is outside ±{self.max_strength:g}")

    def check_generation(self, max_new_tokens: float, temperature: float) -> None:
        """Refuse a generation length or temperature outside the sliders' ranges."""
        if not 1 <= int(max_new_tokens) <= self.max_new_tokens:
            raise LimitError(f"new tokens must be between 1 and {self.max_new_tokens}")
        if not 0 <= float(temperature) <= 2:
            raise LimitError("temperature must be between 0 and 2")

    def check_recipe(self, n_edits: int) -> None:
        """Refuse a recipe with more edits than the Steer tab shows."""
        if n_edits > self.max_edits:
            raise LimitError(f"the recipe has {n_edits} edits; the Space shows at most {self.max_edits}")


def check_feature(feature: Any, d_sae: int) -> int:
    """Return `feature` as an int if it names one of the SAE's `d_sae` features; else refuse it."""
    if feature is None or not float(feature).is_integer():
        raise LimitError("choose a feature number")
    f = int(feature)
    if not 0 <= f < d_sae:
        raise LimitError(f"feature {f} does not exist; this SAE has features 0..{d_sae - 1}")
    return f
