"""Splice SAEs into a transformers model at their hook points, with or without the error term.

With the error term the model's activations are left exactly as they are (`x = x̂ + (x - x̂)`), so
outputs are bit-identical while the feature activations are recorded; without it the activation is
replaced by the SAE's reconstruction, which measures the damage the SAE does. Transcoders read their
input hook and write (or, with the error term, leave) their output hook. `splice` is a context manager;
`attach` / `detach` keep SAEs in place across calls.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from torch import Tensor, nn

from sae_hub.errors import HookPointError
from sae_hub.hooks import HookPoint, resolve_hook

if TYPE_CHECKING:
    from sae_hub.hooks import _Handles
    from sae_hub.sae import SAE

logger = logging.getLogger(__name__)

_ATTACHED: weakref.WeakKeyDictionary[nn.Module, list[Splice]] = weakref.WeakKeyDictionary()


def check_width(point: HookPoint, width: int | None, expected: int, what: str) -> None:
    """Raise HookPointError when a hook's width differs from what the SAE expects."""
    if width is not None and width != expected:
        raise HookPointError(
            f"width mismatch at hook {point.name!r} ({point.hf_name}): the activation has width {width} "
            f"but the SAE's {what} is {expected}"
        )


def resolve_sae_hook(model: nn.Module, sae: SAE, hook: str | None = None) -> HookPoint:
    """Resolve where `sae` reads on `model`: `hook` if given, else its provenance hook (TL name, then HF path)."""
    names = [hook] if hook else [n for n in (sae.provenance.hook, sae.provenance.hf_hook) if n]
    if not names:
        raise HookPointError(
            "the SAE records no hook point (cfg.provenance.hook / hf_hook): pass hook=, "
            "e.g. 'blocks.12.hook_resid_post' or 'model.layers.12'"
        )
    error: HookPointError | None = None
    for name in names:
        try:
            point = resolve_hook(model, name)
        except HookPointError as exc:
            error = error or exc
            continue
        check_width(point, point.width, sae.cfg.d_in, "d_in")
        return point
    assert error is not None
    raise error


def _output_point(model: nn.Module, sae: SAE) -> HookPoint | None:
    """The transcoder output hook, or None for plain SAEs."""
    if not sae.cfg.is_transcoder:
        return None
    name = sae.provenance.hook_out
    if not name:
        raise HookPointError(
            f"SAE maps d_in={sae.cfg.d_in} to d_out={sae.cfg.d_out} (a transcoder) but records no output "
            "hook (cfg.provenance.hook_out); set it with sae.cfg = sae.cfg.with_provenance(hook_out=...)"
        )
    point = resolve_hook(model, name)
    check_width(point, point.width, sae.cfg.out_dim, "d_out")
    return point


class Splice:
    """SAEs attached to a model's hook points; `features[hook]` holds the latest pass's activations."""

    def __init__(
        self,
        model: nn.Module,
        saes: Mapping[str, SAE],
        *,
        error_term: bool = True,
        cache_features: bool = True,
    ) -> None:
        self.model = model
        self.saes = dict(saes)
        self.error_term = error_term
        self.cache_features = cache_features
        self.features: dict[str, Tensor] = {}
        """Dense feature activations `[batch, pos, d_sae]` of the most recent forward pass, per hook."""
        self.points: dict[str, HookPoint] = {}
        self._handles: list[_Handles] = []
        try:
            for key, sae in self.saes.items():
                self._attach_one(key, sae)
        except BaseException:
            self.remove()
            raise
        _ATTACHED.setdefault(model, []).append(self)

    def _attach_one(self, key: str, sae: SAE) -> None:
        point = resolve_sae_hook(self.model, sae, key)
        out_point = _output_point(self.model, sae)
        self.points[key] = point
        pending: list[Tensor] = []  # a transcoder's prediction, from its input hook to its output hook

        def at_input(x: Tensor) -> Tensor | None:
            check_width(point, x.shape[-1], sae.cfg.d_in, "d_in")
            f = sae.encode(x) if self.cache_features or not self.error_term else None
            if f is not None and self.cache_features:
                self.features[key] = f.detach()
            if self.error_term:
                return None
            # reuse the features when they were computed (skip transcoders also need x @ W_skip)
            if f is not None and not sae.cfg.skip_connection:
                recon = sae.decode(f, sae.normalize(x)[1])
            else:
                recon = sae(x)
            if out_point is not None:
                pending[:] = [recon]
                return None
            return recon.to(x.dtype)

        self._handles.append(point.register(at_input))
        if out_point is not None and not self.error_term:

            def at_output(y: Tensor) -> Tensor:
                check_width(out_point, y.shape[-1], sae.cfg.out_dim, "d_out")
                if not pending:
                    raise HookPointError(
                        f"transcoder output hook {out_point.name!r} ran before its input hook {point.name!r}"
                    )
                return pending.pop().to(y.dtype)

            self._handles.append(out_point.register(at_output))

    def remove(self) -> None:
        """Take the SAEs out of the model (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        attached = _ATTACHED.get(self.model, [])
        if self in attached:
            attached.remove(self)


def _as_mapping(model: nn.Module, saes: SAE | Mapping[str, SAE], hook: str | None) -> dict[str, SAE]:
    if isinstance(saes, Mapping):
        if hook is not None:
            raise HookPointError("pass hook= only with a single SAE; a mapping already names its hooks")
        return dict(saes)
    return {hook or resolve_sae_hook(model, saes).name: saes}


def attach(
    model: nn.Module,
    saes: SAE | Mapping[str, SAE],
    *,
    hook: str | None = None,
    error_term: bool = True,
    cache_features: bool = True,
) -> Splice:
    """Splice SAEs into `model` until `detach(model)` (or `.remove()` on the result).

    `saes` is one SAE (placed at `hook`, default its provenance hook) or `{hook: sae}`.

    Raises:
        HookPointError: a hook does not resolve, or its width differs from the SAE's `d_in`.
    """
    return Splice(model, _as_mapping(model, saes, hook), error_term=error_term, cache_features=cache_features)


def detach(model: nn.Module) -> int:
    """Remove every SAE that `attach` spliced into `model`; return how many splices were removed."""
    splices = list(_ATTACHED.get(model, []))
    for s in splices:
        s.remove()
    return len(splices)


@contextlib.contextmanager
def splice(
    model: nn.Module,
    saes: SAE | Mapping[str, SAE],
    *,
    hook: str | None = None,
    error_term: bool = True,
    cache_features: bool = True,
) -> Iterator[Splice]:
    """Run `model` with SAEs at their hook points inside a `with` block.

    Example:
        with splice(model, {"blocks.1.hook_resid_post": sae}) as run:
            model(input_ids)
        run.features["blocks.1.hook_resid_post"]  # [batch, pos, d_sae]
    """
    run = attach(model, saes, hook=hook, error_term=error_term, cache_features=cache_features)
    try:
        yield run
    finally:
        run.remove()
