"""A tiny reward run to sweep, shared by the launcher tests (submitit/joblib/optuna in test_sweeps, Ray in
test_ray_launcher); a module of its own so that neither test file's extra is needed to import it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import tiny_overrides
from tests.test_resume_guard import write_pairs


def reward_run(model_dir: Path, root: Path, run: str) -> list[str]:
    """Overrides of a reward run whose pairs stage has finished (8 pairs): each point trains one step."""
    overrides = [*tiny_overrides(model_dir, root, run), "reward.max_steps=1", "reward.max_length=64",
                 "reward.save_steps=1000"]
    write_pairs(overrides)
    return overrides


def manifests(run_dir: Path) -> dict[str, int]:
    """Each sweep point's reward manifest and its modification time (a rerun that skips leaves them as they were)."""
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.glob("*/reward/manifest.json")}
