"""Hook points: resolve a hook name to the module and tensor it denotes on a Hugging Face model, and hook it.

Two naming schemes resolve to the same places. TransformerLens-style names (`hook_embed`,
`blocks.L.hook_resid_pre`, `hook_resid_mid`, `hook_resid_post`, `hook_attn_out`, `hook_mlp_out`,
`attn.hook_z`, `ln2.hook_normalized`, `mlp.hook_post`) follow the tables in
`shared/reference/hooks-and-steering.md` for Llama/Mistral/Qwen2/SmolLM, Gemma 2/3, GPT-2 and GPT-NeoX.
Module paths (`model.layers.10`, `model.layers.10.output`, `model.layers.11.self_attn.o_proj.input`, or
sparsify's `layers.10` relative to `model.base_model`) name a module's output (default) or input.
`HookPoint.register(fn)` hides the differences: `fn` sees one tensor `[batch, pos, width]` whatever the
module returns (a tensor in transformers 5.x, a tuple in 4.x) and may return a replacement.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from sae_hub._layout import IO, RESIDUAL_WIDTH, Layout, hook_table, module_dims, read_layout
from sae_hub.errors import HookPointError

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

logger = logging.getLogger(__name__)

HookFn = Callable[[Tensor], Tensor | None]
_TL_RE = re.compile(r"^blocks\.(\d+)\.([a-z0-9_.]+)$")


class _Handles:
    """Removes every torch hook one `HookPoint.register` call installed."""

    def __init__(self, handles: Sequence[RemovableHandle]) -> None:
        self._handles = list(handles)

    def remove(self) -> None:
        """Uninstall the hooks (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass(frozen=True, eq=False)
class HookPoint:
    """Where an activation lives on a model: which module, its input or output, and any fix-up."""

    name: str
    """The name as the caller gave it."""
    module: nn.Module
    """The module whose input or output carries the tensor."""
    module_path: str
    """Full path of `module` in `model.named_modules()` (`model.layers.10.self_attn.o_proj`)."""
    io: IO
    """Whether the tensor is the module's output or its first input."""
    layer: int | None
    """Decoder layer index, when the hook sits inside one."""
    canonical: str | None
    """TransformerLens-style name of the same tensor, when it has one."""
    width: int | None
    """Last-dimension size of the tensor when known from the module (checked again at run time)."""
    norm: nn.Module | None = None
    """For `ln2.hook_normalized`: the norm whose gain (and bias) is taken off its output."""
    residual: nn.Module | None = None
    """For `hook_resid_mid`: the layer whose input is added to the module's output."""

    @property
    def hf_name(self) -> str:
        """The module path with an explicit `.output` / `.input` suffix (Gemma Scope 2 style)."""
        return f"{self.module_path}.{self.io}"

    def register(self, fn: HookFn) -> _Handles:
        """Call `fn(tensor)` on every forward pass; a returned tensor replaces the activation."""
        if self.residual is not None:
            return self._register_mid(fn)
        if self.io == "output":

            def out_hook(_module: nn.Module, _args: Any, output: Any) -> Any:
                raw, wrap = _unpack(output, self.module_path)
                new = fn(self._read(raw))
                return None if new is None else wrap(self._write(new, raw))

            return _Handles([self.module.register_forward_hook(out_hook)])

        def in_hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            raw, wrap = _unpack_input(args, kwargs, self.module_path)
            new = fn(raw)
            return None if new is None else wrap(new.to(raw.dtype))

        return _Handles([self.module.register_forward_pre_hook(in_hook, with_kwargs=True)])

    def _register_mid(self, fn: HookFn) -> _Handles:
        assert self.residual is not None
        stash: list[Tensor] = []

        def grab(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            stash[:] = [_unpack_input(args, kwargs, self.module_path)[0]]

        def out_hook(_module: nn.Module, _args: Any, output: Any) -> Any:
            delta_out, wrap = _unpack(output, self.module_path)
            mid = stash.pop() + delta_out
            new = fn(mid)
            # the residual add happens after this module: shift its output by the edit
            return None if new is None else wrap(delta_out + (new.to(mid.dtype) - mid))

        return _Handles(
            [
                self.residual.register_forward_pre_hook(grab, with_kwargs=True),
                self.module.register_forward_hook(out_hook),
            ]
        )

    def _gain_bias(self) -> tuple[Tensor, Tensor | None]:
        assert self.norm is not None
        weight = self.norm.weight
        # Gemma's RMSNorm multiplies by (1 + w)
        gain = weight + 1.0 if type(self.norm).__name__.startswith("Gemma") else weight
        return gain, getattr(self.norm, "bias", None)

    def _read(self, raw: Tensor) -> Tensor:
        if self.norm is None:
            return raw
        gain, bias = self._gain_bias()
        return ((raw - bias) if bias is not None else raw) / gain

    def _write(self, new: Tensor, raw: Tensor) -> Tensor:
        if self.norm is not None:
            gain, bias = self._gain_bias()
            new = new * gain + bias if bias is not None else new * gain
        return new.to(raw.dtype)


def _unpack(output: Any, where: str) -> tuple[Tensor, Callable[[Tensor], Any]]:
    """Split a module output into its activation and a function that rebuilds the container."""
    if isinstance(output, Tensor):
        return output, lambda t: t
    if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
        return output[0], lambda t: (t, *output[1:])
    raise HookPointError(
        f"module {where} returned {type(output).__name__}; expected a tensor or a tuple starting with one"
    )


def _unpack_input(
    args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> tuple[Tensor, Callable[[Tensor], tuple[tuple[Any, ...], dict[str, Any]]]]:
    """Find a module's first input (positional, or `hidden_states=`) and how to replace it."""
    if args and isinstance(args[0], Tensor):
        return args[0], lambda t: ((t, *args[1:]), kwargs)
    if isinstance(kwargs.get("hidden_states"), Tensor):
        return kwargs["hidden_states"], lambda t: (args, {**kwargs, "hidden_states": t})
    raise HookPointError(f"module {where} was called without a tensor input to hook")


def hook_names(model: nn.Module) -> list[str]:
    """List every TransformerLens-style hook name that resolves on `model`."""
    layout = read_layout(model)
    names = ["hook_embed"] if layout.embed_path else []
    if layout.layers_path is None:
        return names
    table = hook_table(layout)
    return names + [f"blocks.{i}.{hook}" for i in range(layout.n_layers) for hook in table]


# ---- resolution --------------------------------------------------------------------------------


def resolve_hook(model: nn.Module, name: str) -> HookPoint:
    """Resolve a TransformerLens-style hook name or a module path to a `HookPoint` on `model`.

    Raises:
        HookPointError: the name does not resolve; the message lists the valid names.
    """
    layout = read_layout(model)
    point = _resolve_tl(layout, name) if name == "hook_embed" or _TL_RE.match(name) else None
    if point is None:
        point = _resolve_path(layout, name)
    if point is None:
        raise HookPointError(_unknown_message(model, layout, name))
    logger.debug("hook %s -> %s (%s)", name, point.hf_name, point.canonical)
    return point


def _resolve_tl(layout: Layout, name: str) -> HookPoint | None:
    if name == "hook_embed":
        if layout.style == "gemma" and layout.layers_path:
            # Gemma scales embeddings by sqrt(d_model) (inside the module in 5.x, after it in 4.x):
            # the input of layer 0 is the scaled embedding in both.
            path, io = f"{layout.layers_path}.0", "input"
        elif layout.embed_path:
            path, io = layout.embed_path, "output"
        else:
            return None
        return HookPoint(
            name=name,
            module=layout.modules[path],
            module_path=path,
            io=io,
            layer=None,
            canonical="hook_embed",
            width=layout.hidden,
        )
    match = _TL_RE.match(name)
    assert match is not None
    layer, hook = int(match.group(1)), match.group(2)
    table = hook_table(layout) if layout.layers_path else {}
    if hook not in table:
        return None
    if not 0 <= layer < layout.n_layers:
        raise HookPointError(
            f"hook {name!r}: layer {layer} is out of range; the model has layers 0..{layout.n_layers - 1}"
        )
    sub, io, kind = table[hook]
    layer_path = f"{layout.layers_path}.{layer}"
    path = f"{layer_path}.{sub}" if sub else layer_path
    module = layout.modules.get(path)
    if module is None:
        return None
    if hook in RESIDUAL_WIDTH or kind == "norm":
        width = layout.hidden
    else:
        width = module_dims(module)[0 if io == "input" else 1]
    return HookPoint(
        name=name,
        module=module,
        module_path=path,
        io=io,
        layer=layer,
        canonical=f"blocks.{layer}.{hook}",
        width=width,
        norm=module if kind == "norm" else None,
        residual=layout.modules[layer_path] if kind == "mid" else None,
    )


def _resolve_path(layout: Layout, name: str) -> HookPoint | None:
    candidates: list[tuple[str, IO]] = [(name, "output")]
    for suffix in ("output", "input"):
        if name.endswith("." + suffix):
            candidates.append((name[: -len(suffix) - 1], suffix))  # type: ignore[arg-type]
    for rel, io in candidates:
        for prefix in layout.prefixes:
            path = prefix + rel
            if path and path in layout.modules:
                return _path_point(layout, name, path, io)
    return None


def _path_point(layout: Layout, name: str, path: str, io: IO) -> HookPoint:
    layer = None
    if layout.layers_path and path.startswith(layout.layers_path + "."):
        layer = int(path[len(layout.layers_path) + 1 :].split(".", 1)[0])
    canonical = _canonical_of(layout, path, io, layer)
    module = layout.modules[path]
    width = module_dims(module)[0 if io == "input" else 1]
    if width is None and canonical is not None:
        width = (
            layout.hidden
            if canonical == "hook_embed" or canonical.rsplit(".", 1)[-1] in RESIDUAL_WIDTH
            else None
        )
    return HookPoint(
        name=name, module=module, module_path=path, io=io, layer=layer, canonical=canonical, width=width
    )


def _canonical_of(layout: Layout, path: str, io: IO, layer: int | None) -> str | None:
    """The TransformerLens name of a plain module input/output, when one maps to it exactly."""
    if path == layout.embed_path and io == "output" and layout.style != "gemma":
        return "hook_embed"
    if layer is None or layout.layers_path is None:
        return None
    layer_path = f"{layout.layers_path}.{layer}"
    for hook, (sub, hook_io, kind) in hook_table(layout).items():
        target = f"{layer_path}.{sub}" if sub else layer_path
        if not kind and target == path and hook_io == io:
            return f"blocks.{layer}.{hook}"
    return None


def _unknown_message(model: nn.Module, layout: Layout, name: str) -> str:
    kind = type(model).__name__
    lines = [f"hook {name!r} does not resolve on {kind}."]
    if layout.layers_path is not None:
        hooks = ", ".join(hook_table(layout))
        lines.append(
            f"Valid TransformerLens-style names: hook_embed, blocks.L.{{{hooks}}} "
            f"for L in 0..{layout.n_layers - 1}."
        )
        lines.append(
            f"Or a module path with an optional .output/.input suffix, e.g. {layout.layers_path}.0, "
            f"{layout.layers_path}.0.output, {layout.layers_path}.0.input"
            + (f" (also relative to `{layout.prefixes[1].rstrip('.')}`)" if len(layout.prefixes) > 1 else "")
            + "."
        )
    else:
        lines.append("Valid names are module paths from model.named_modules(), optionally + .output/.input.")
    known = [p for p in layout.modules if p] + hook_names(model)
    close = difflib.get_close_matches(name.removesuffix(".output").removesuffix(".input"), known, n=3)
    if close:
        lines.append("Did you mean " + ", ".join(f"`{c}`" for c in close) + "?")
    return " ".join(lines)


# ---- capture -----------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised from a hook once every requested activation is captured, to skip the rest of the model."""


def capture_activations(
    model: nn.Module,
    hook_names: str | Iterable[str],
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    stop_early: bool = True,
) -> dict[str, Tensor]:
    """Run `model` on a batch and return the activation at each hook, keyed by the names given.

    With `stop_early` the forward pass stops right after the last requested activation is seen, so
    layers above the deepest hook (and the unembedding) never run.
    """
    names = [hook_names] if isinstance(hook_names, str) else list(dict.fromkeys(hook_names))
    points = {n: resolve_hook(model, n) for n in names}
    captured: dict[str, Tensor] = {}

    def recorder(name: str) -> HookFn:
        def record(x: Tensor) -> None:
            captured[name] = x.detach()
            if stop_early and len(captured) == len(points):
                raise _StopForward

        return record

    handles = [point.register(recorder(n)) for n, point in points.items()]
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in captured]
    if missing:
        raise HookPointError(f"hooks {missing} were not reached during the forward pass")
    return captured
