"""Data-parallel training under ``torchrun``: the process group, sharding, agreement.

``tagger train`` needs no flag for it: run under ``torchrun --nproc-per-node N`` (and
``--nnodes``/``--rdzv-endpoint`` for several machines), it finds ``WORLD_SIZE`` and
``RANK`` in the environment, joins the process group and trains one shard of every epoch's
batches per process with :class:`torch.nn.parallel.DistributedDataParallel`. Rank 0 alone
evaluates on dev, writes checkpoints, logs and the progress bar; it broadcasts the dev
score, so every rank takes the same learning-rate and early-stopping decisions.

The trainer runs on the CPU, so the backend is gloo (``TAGGER_DIST_BACKEND`` overrides);
ranks wait for each other up to ``TAGGER_DIST_TIMEOUT_MINUTES`` (six hours: see :func:`group_timeout`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # this process created the group, so it destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> Context:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    if dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size())
    dist.init_process_group(backend=os.environ.get("TAGGER_DIST_BACKEND", "gloo"), timeout=group_timeout())
    return Context(dist.get_rank(), dist.get_world_size(), owns_group=True)


def group_timeout() -> timedelta:
    """How long a collective waits for the other ranks: ``TAGGER_DIST_TIMEOUT_MINUTES``, default
    six hours. The other ranks wait at a barrier while rank 0 alone does long work (a distillation's
    teachers label every training sentence first: hours for a large unlabelled corpus), which
    torch's default of 30 minutes would cut short; a rank that dies is torchrun's to notice."""
    value = os.environ.get("TAGGER_DIST_TIMEOUT_MINUTES", "360")
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1
    if not math.isfinite(minutes) or minutes <= 0:
        raise ValueError(f"TAGGER_DIST_TIMEOUT_MINUTES must be a positive number of minutes, not {value!r}")
    return timedelta(minutes=minutes)


def teardown(context: Context) -> None:
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], context: Context) -> list[T]:
    """This rank's share of ``items`` (the same list on every rank): every rank gets the same
    number, since each optimiser step is a collective; the last ``len % world_size`` go unused
    this epoch (the batches are reshuffled every epoch, so none is always left out)."""
    if not context.enabled:
        return list(items)
    per_rank = len(items) // context.world_size
    if per_rank == 0:
        raise ValueError(f"{len(items)} batches cannot be shared by {context.world_size} processes; "
                         "use fewer processes or a smaller batch size")
    return list(items[context.rank::context.world_size][:per_rank])


def broadcast(value: float, context: Context) -> float:
    """Rank 0's ``value`` on every rank."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def mean(value: float, context: Context) -> float:
    """The mean of ``value`` over the ranks."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / context.world_size


def barrier(context: Context) -> None:
    if context.enabled:
        dist.barrier()
