"""Distributed-launch helpers: DeepSpeed on CPU (gloo), stale build locks, rank checks and waits.

Rank-aware printing is ``rewards.log`` (progress from rank 0, warnings from every rank).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rewards.errors import UserError
from rewards.log import get_logger, process_rank

log = get_logger(__name__)


def deepspeed_requested() -> bool:
    """True when ``accelerate launch`` was given a DeepSpeed config (it exports ACCELERATE_USE_DEEPSPEED)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def default_ddp_backend() -> str | None:
    """The process-group backend to request, or None to let accelerate choose.

    Without CUDA, accelerate leaves the backend unset under DeepSpeed and then counts one process per launch
    (DeepSpeed still sees the whole world, so its batch-size check fails). gloo makes both agree on CPU.
    """
    import torch

    if deepspeed_requested() and not torch.cuda.is_available():
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
        log.warning(f"{lock} is {age_s / 60:.0f} min old, left by a killed build; DeepSpeed waits on it forever "
                    "when it builds that op. If this launch stops after loading weights, delete the file.")


def is_main_process() -> bool:
    """Rank 0 of an ``accelerate launch`` (or the only process); the logger prints progress from it alone."""
    return process_rank() == 0


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
