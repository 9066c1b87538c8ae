"""Distributed-launch helpers: DeepSpeed on CPU (gloo), rank-aware printing, launch facts."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rewards.errors import UserError


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


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


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
