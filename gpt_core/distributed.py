"""Training on several processes at once (DistributedDataParallel), as ``torchrun`` starts them.

Each process holds a full copy of the model and reads its own slice of every batch; after each backward pass
DDP averages the gradients, so all copies take the same step. Run with::

    torchrun --nproc_per_node=2 -m gpt_core.train --preset nano --max-steps 100

Without torchrun everything here is a no-op: rank 0 of a world of 1.

    >>> rank_and_world_size()
    (0, 1)
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world_size): (0, 1) unless torch.distributed was initialised (torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def join_process_group() -> tuple[int, int, str | None]:
    """Under torchrun: join the process group (nccl on CUDA, gloo on CPU). Returns (rank, world, device)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group("nccl")
        device = f"cuda:{local_rank}"
    else:
        torch.distributed.init_process_group("gloo")
        device = "cpu"
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), device


def leave_process_group(world_size: int) -> None:
    if world_size > 1:
        torch.distributed.destroy_process_group()


def wrap_for_training(model: nn.Module, device: torch.device, compile: bool, world_size: int) -> nn.Module:
    """The module the training step calls: optionally ``torch.compile``d, and wrapped in DDP on several processes.

    The optimizer and checkpoints keep using the unwrapped ``model`` (same parameters).
    """
    wrapped = torch.compile(model) if compile else model
    if world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=device_ids)
    return wrapped


def sync_gradients_unless(wrapped: nn.Module, accumulating: bool):
    """While accumulating micro-batches, skip DDP's gradient averaging (it happens once, on the last one)."""
    if accumulating and isinstance(wrapped, nn.parallel.DistributedDataParallel):
        return wrapped.no_sync()
    return contextlib.nullcontext()


def average_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over all processes (the values themselves on one process)."""
    _, world_size = rank_and_world_size()
    if world_size > 1:
        torch.distributed.all_reduce(values)
        values /= world_size
    return values


def any_process(flags: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over processes: a stop on one process stops all (DDP would hang otherwise)."""
    _, world_size = rank_and_world_size()
    if world_size > 1:
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    return flags
