"""Experiment tracking: wandb, offline unless asked otherwise; never sees secrets."""

from __future__ import annotations

import os
from pathlib import Path


def configure_wandb(mode: str, project: str, directory: str | Path, run_name: str) -> list[str]:
    """Set wandb's environment for the HF/TRL integration; returns the trainer's ``report_to``."""
    if mode == "disabled":
        os.environ["WANDB_MODE"] = "disabled"
        return []
    if mode not in ("offline", "online"):
        from rewards.errors import UserError

        raise UserError(f"wandb.mode: {mode!r} is not one of offline, online, disabled")
    Path(directory).mkdir(parents=True, exist_ok=True)
    os.environ.update({
        "WANDB_MODE": mode,
        "WANDB_PROJECT": project,
        "WANDB_DIR": str(directory),
        "WANDB_NAME": run_name,
        "WANDB_SILENT": "true",
    })
    return ["wandb"]
