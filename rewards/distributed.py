"""Distributed-launch helpers: DeepSpeed on CPU (gloo), stale build locks, rank checks and waits, and sharding the
items of the generate, judge and evaluate stages across the processes of ``accelerate launch``.

Rank-aware printing is ``rewards.log`` (progress from rank 0, warnings from every rank).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from rewards.errors import UserError
from rewards.log import get_logger, process_rank

log = get_logger(__name__)


def deepspeed_requested() -> bool:
    """True when ``accelerate launch`` was given a DeepSpeed config (it exports ACCELERATE_USE_DEEPSPEED)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def default_ddp_backend() -> str | None:
    """The process-group backend to request, or None to let accelerate choose.

    Without CUDA, accelerate leaves the backend unset under DeepSpeed and then counts one process per launch
    (DeepSpeed still sees the whole world, so its batch-size check fails). gloo makes both agree on CPU. Plain DDP
    without CUDA is worse off: each launched process trains as a world of one (the Trainer's parallel mode is not
    distributed), so N processes train N copies on all the data, into the same folder; gloo makes them one job.
    """
    import torch

    several = int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by `accelerate launch` (torchrun) for every process
    if (deepspeed_requested() or several) and not torch.cuda.is_available():
        return "gloo"
    return None


# A torch extension build that has held its lock this long was killed: a real build of DeepSpeed's ops takes minutes.
STALE_LOCK_S = 900


def stale_build_locks(root: Path | None = None, older_than_s: float = STALE_LOCK_S) -> list[Path]:
    """Lock files of torch C++ extension builds older than ``older_than_s`` under ``root``.

    ``root`` defaults to where torch builds extensions (``$TORCH_EXTENSIONS_DIR``, else its cache folder). torch
    waits as long as a build's ``lock`` file exists, so one left by a killed build makes every later build of that
    extension wait forever; DeepSpeed on CPU builds its shm op at every launch.
    """
    return [lock for lock, _ in _stale_locks_with_ages(root, older_than_s)]


def _stale_locks_with_ages(root: Path | None, older_than_s: float) -> list[tuple[Path, float]]:
    if root is None:
        from torch.utils.cpp_extension import get_default_build_root

        root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    now = time.time()
    ages = [(lock, now - lock.stat().st_mtime) for lock in [*root.glob("*/lock"), *root.glob("*/*/lock")]]
    return sorted((lock, age) for lock, age in ages if age > older_than_s)


def warn_about_stale_build_locks() -> None:
    """One warning line per stale lock (main process only); the launch goes on, since the lock may be harmless."""
    if not is_main_process():
        return
    for lock, age_s in _stale_locks_with_ages(None, STALE_LOCK_S):
        log.warning(f"warning: {lock} is {age_s / 60:.0f} min old, left by a killed build; DeepSpeed waits on it "
                    "forever when it builds that op. If this launch stops after loading weights, delete the file.")


def rank() -> int:
    """This process's rank under ``accelerate launch`` (RANK, else LOCAL_RANK); 0 when alone."""
    return process_rank()


def world_size() -> int:
    """How many processes ``accelerate launch`` started (WORLD_SIZE); 1 when alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of an ``accelerate launch`` (or the only process); the logger prints progress from it alone."""
    return rank() == 0


def wait_for_all_ranks() -> None:
    """Barrier across the ranks of an `accelerate launch` (a no-op in one process or before any process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wait_for_file_text(path: str | Path, text: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> None:
    """Block until ``path`` holds ``text`` (non-main ranks waiting for rank 0 to prepare a folder)."""
    path = Path(path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if path.read_text().strip() == text:
                return
        except OSError:
            pass
        time.sleep(poll_s)
    raise UserError(f"{path}: rank {os.environ.get('RANK')} waited {timeout_s:.0f}s for rank 0 to prepare it; "
                    "check that every process sees the same output_root (a shared filesystem)")


T = TypeVar("T")
R = TypeVar("R")

# Ranks wait at a barrier for the slowest shard; a long generation on a big model must not time the others out.
SHARD_TIMEOUT = timedelta(hours=12)


def join_process_group() -> None:
    """Join the process group of an ``accelerate launch`` (gloo on CPU, nccl on GPU, each rank on its own GPU).

    Stages without a trainer (generate, judge, evaluate) need it for their barriers and gathers; a no-op in one
    process or when a trainer's accelerator has already joined.
    """
    import torch
    import torch.distributed as dist

    if world_size() == 1 or dist.is_initialized():
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # device "cuda" then means this rank's GPU
        backend = "nccl"
    dist.init_process_group(backend, timeout=SHARD_TIMEOUT)


def main_process_first(action: Callable[[], object]) -> None:
    """Run ``action`` on rank 0 while the other ranks of a launch wait, e.g. dropping a failed run's manifest
    before any rank reads it (every rank would try, and one would read it before it is gone)."""
    join_process_group()
    if is_main_process():
        action()
    wait_for_all_ranks()


def shard(items: Sequence[T], rank_: int | None = None, world_size_: int | None = None) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th one from index ``rank``.

    Shards are disjoint and cover every item; callers pass items in a deterministic order (sorted), so a rank gets
    the same share on every run. Pass whole batches to keep the batch boundaries of a one-process run.
    """
    rank_ = rank() if rank_ is None else rank_
    world_size_ = world_size() if world_size_ is None else world_size_
    return list(items[rank_::world_size_])


def all_gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` in one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def unshard(shards: Sequence[Sequence[T]]) -> list[T]:
    """The inverse of :func:`shard`: interleave the ranks' shares back into the original order."""
    merged: list[T] = []
    for index in range(max((len(part) for part in shards), default=0)):
        merged += [part[index] for part in shards if index < len(part)]
    return merged


def map_batches_sharded(function: Callable[[list[T]], list[R]], items: Sequence[T], batch_size: int) -> list[R]:
    """``function`` over ``items`` in batches of ``batch_size``, each rank taking a shard of whole batches; every
    rank gets all results in the order of ``items``.

    The batch boundaries are those of one process, so batched float maths (left padding, batched matmuls) gives
    the same results with any number of processes.
    """
    batches = [list(items[start:start + batch_size]) for start in range(0, len(items), max(1, batch_size))]
    mine = [function(batch) for batch in shard(batches)]
    return [result for batch in unshard(all_gather(mine)) for result in batch]
