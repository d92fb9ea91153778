"""FSDP for the trainer: shard every SAE's weights, gradients and Adam moments across processes.

With `parallelism: fsdp` each SAE of the run is wrapped with FSDP2's `fully_shard` on a one-dimensional
device mesh (gloo on CPU, NCCL on GPU): between steps a rank holds 1/world of every parameter and of its
optimizer state, and each forward gathers the full weights just for that SAE. That is what lets a run
train SAEs whose weights plus Adam state do not fit on one device; DDP (the default) replicates them.

Parameters become DTensors sharded along dim 0. The helpers below gather them into full tensors (a
collective: every rank calls them) for checkpoints and export, and lay full tensors out again on restore,
so checkpoints look the same under either strategy and a run may resume under the other one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor


def shard(group: nn.Module, members: list[nn.Module], device: torch.device) -> None:
    """Move `group` to `device` and shard each member (one FSDP unit per SAE) with `group` as the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    group.to(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for member in members:
        fully_shard(member, mesh=mesh)
    fully_shard(group, mesh=mesh)


def full(t: Tensor) -> Tensor:
    """The whole tensor: gathered from every rank when `t` is sharded, `t` itself otherwise."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def full_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """`full` applied to every value (every rank must call this, in the same order)."""
    return {name: full(t) for name, t in tensors.items()}


def like(whole: Tensor, current: Tensor) -> Tensor:
    """`whole` laid out as `current`: sharded the same way when `current` is a DTensor."""
    if isinstance(current, DTensor):
        return distribute_tensor(
            whole.to(current.device, current.dtype), current.device_mesh, current.placements
        )
    return whole


def as_model_state(whole: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """A full state dict in the layout of `model`'s own (sharded entries sharded alike)."""
    current = model.state_dict()
    return {name: like(t, current[name]) if name in current else t for name, t in whole.items()}


def as_optimizer_state(whole: dict[str, Tensor], optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Full `optim.<pid>.<key>` moments in the layout of the parameter they belong to (`step` stays)."""
    params: list[Any] = [p for g in optimizer.param_groups for p in g["params"]]
    out = {}
    for name, t in whole.items():
        if name.startswith("optim.") and not name.endswith(".step"):
            pid = int(name.split(".", 2)[1])
            t = like(t, params[pid])
        out[name] = t
    return out
