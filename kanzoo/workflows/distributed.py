"""Distributed data parallel for ``kanzoo train``: the same command runs in one process or under
``torchrun --nproc_per_node N [--nnodes M ...]``.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` the process group starts
with NCCL on GPUs (one per local rank) and gloo on CPUs. Only rank 0 prints, logs and writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..errors import WorkflowError
from ._common import resolve_device


@dataclass
class DistContext:
    """Where this process stands: its rank, the world size, its device and the backend (None: one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise WorkflowError(f"environment variable {name}={value!r} is not an integer") from None


def setup(device: Optional[str] = None) -> DistContext:
    """Reads torchrun's environment and starts the process group when there is more than one process.

    ``device``: ``None``/``'auto'`` picks CUDA when available; under torchrun a CUDA device becomes
    ``cuda:LOCAL_RANK``.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device)
    if world <= 1:
        return DistContext(device=dev)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise WorkflowError(f"LOCAL_RANK {local_rank} needs GPU {local_rank}, but this node has "
                                f"{torch.cuda.device_count()}; use --nproc_per_node <= the GPU count")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
        owns = True
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=backend,
                       owns_group=owns)


def cleanup(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sums ``t`` over processes (a copy; ``t`` itself is unchanged). One process: ``t``."""
    if not ctx.distributed:
        return t
    buf = t.to(ctx.device if ctx.backend == "nccl" else "cpu", copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device, t.dtype)


def all_min(value: int, ctx: DistContext) -> int:
    """The smallest ``value`` over processes."""
    if not ctx.distributed:
        return value
    buf = torch.tensor([value], dtype=torch.long, device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(buf, op=dist.ReduceOp.MIN)
    return int(buf.item())


def average_gradients(params, ctx: DistContext) -> None:
    """Averages the ``.grad`` of ``params`` over processes in place (for a step whose last backward ran under
    DDP's ``no_sync``)."""
    if not ctx.distributed:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(ctx.world_size)


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every process (e.g. a checkpoint only rank 0 can read)."""
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.backend == "nccl" else None)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.local_rank])
        else:
            dist.barrier()


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``DistributedDataParallel`` over ``model`` (already on ``ctx.device``) when distributed."""
    if not ctx.distributed:
        return model

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
