"""Kill -9 harness (issue 13): run a stage uninterrupted, then kill the same command at a labelled point, rerun it,
and compare the two stage folders file by file.

Kill points are deterministic: ``rewards.artifacts.kill_point(label)`` kills the process at the n-th time it reaches
``label`` when ``COUNSEL_ALIGN_KILL_AT=<label>:<n>`` is set, and lists every label it reaches in
``COUNSEL_ALIGN_KILL_LOG``. Stages run as subprocesses of ``python -m recipes.cli``, as a user would run them, with
``PYTHONHASHSEED=0``: peft and TRL write sets (``target_modules``, model card tags) as lists in string-hash order,
which otherwise differs between any two processes, killed or not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
KILL_ENV = "COUNSEL_ALIGN_KILL_AT"
LOG_ENV = "COUNSEL_ALIGN_KILL_LOG"

# Values that legitimately differ between an uninterrupted run and a killed-then-rerun one: clock times and
# durations (TRL's GRPO logs a ``step_time``), and whether the training resumed from a checkpoint. A resumed
# Trainer's ``train_loss`` averages only the steps trained after the resume, and TRL's ``num_tokens`` counts only the
# tokens seen since (neither is in the checkpoint); the weights, optimizer, scheduler and RNG states are compared byte
# for byte. Dropped wherever they occur in these JSON files.
RUN_DEPENDENT_KEYS = frozenset({"finished_at", "wall_seconds", "trained_at", "exported_at", "resumed_from_step",
                                "train_runtime", "train_samples_per_second", "train_steps_per_second", "step_time",
                                "train_loss", "num_tokens"})
JSON_WITH_RUN_DEPENDENT_KEYS = frozenset({"manifest.json", "model_card.json", "reward_config.json",
                                          "log_history.json", "metrics.json", "adapter_config.json",
                                          "trainer_state.json"})
# peft saves ``target_modules`` (a set) as a list in string-hash order, which differs between any two processes.
SET_VALUED_KEYS = frozenset({"target_modules"})
# Text files that render those values (model cards): lines naming one of the keys are skipped.
TEXT_WITH_RUN_DEPENDENT_LINES = frozenset({"README.md"})
# The manifest's hash covers README.md and model_card.json, whose clock lines differ: compared via the files instead.
MANIFEST_HASH_KEYS = frozenset({"outputs_sha256"})
_RUN_DEPENDENT_LINE = re.compile("|".join(sorted(RUN_DEPENDENT_KEYS)))


@dataclass
class StageRun:
    returncode: int
    output: str


def stage_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in (KILL_ENV, LOG_ENV)}
    env.update({"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(PROJECT_ROOT)})
    env.update(extra or {})
    return env


def run_command(stage: str, overrides: list[str], extra_env: dict[str, str] | None = None) -> StageRun:
    """``python -m recipes.cli <stage> <overrides>`` in the project root, as a user would type it."""
    done = subprocess.run([sys.executable, "-m", "recipes.cli", stage, *overrides], cwd=PROJECT_ROOT,
                          env=stage_env(extra_env), capture_output=True, text=True, timeout=600)
    return StageRun(done.returncode, done.stdout + done.stderr)


def run_ok(stage: str, overrides: list[str], extra_env: dict[str, str] | None = None) -> StageRun:
    result = run_command(stage, overrides, extra_env)
    if result.returncode != 0:
        raise AssertionError(f"{stage} exited {result.returncode}:\n{result.output[-3000:]}")
    return result


def kill_points_reached(stage: str, overrides: list[str], log: Path) -> Counter:
    """Run the stage uninterrupted, listing every kill point it reaches: label -> how many times."""
    log.unlink(missing_ok=True)
    run_ok(stage, overrides, {LOG_ENV: str(log)})
    return Counter(log.read_text().split())


def kill_then_rerun(stage: str, overrides: list[str], kill_at: str) -> tuple[StageRun, StageRun]:
    """The command killed with SIGKILL at ``kill_at`` (``label:n``), then the same command again."""
    killed = run_command(stage, overrides, {KILL_ENV: kill_at})
    if killed.returncode != -signal.SIGKILL:
        raise AssertionError(f"{stage} not killed at {kill_at} (exit {killed.returncode}):\n{killed.output[-3000:]}")
    return killed, run_ok(stage, overrides)


def copy_upstream(stage: str, reference_run: Path, run_dir: Path) -> None:
    """Only ``stage`` runs: every other stage comes finished from the reference run, as a user rerunning a killed
    stage has them (evaluate reads the probes stage, which its registry entry does not list)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(reference_run, run_dir, symlinks=True, ignore=lambda folder, names: [stage]
                    if Path(folder) == reference_run else [])


def _normalized(path: Path) -> bytes:
    if path.name in JSON_WITH_RUN_DEPENDENT_KEYS:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return path.read_bytes()
        skip = RUN_DEPENDENT_KEYS | (MANIFEST_HASH_KEYS if path.name == "manifest.json" else frozenset())
        return json.dumps(_drop_keys(data, skip), sort_keys=True).encode()
    if path.name in TEXT_WITH_RUN_DEPENDENT_LINES:
        lines = path.read_text(encoding="utf-8").splitlines()
        return "\n".join(line for line in lines if not _RUN_DEPENDENT_LINE.search(line)).encode()
    return path.read_bytes()


def _drop_keys(value, keys: frozenset):
    if isinstance(value, dict):
        return {k: sorted(v) if k in SET_VALUED_KEYS and isinstance(v, list) else _drop_keys(v, keys)
                for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_drop_keys(v, keys) for v in value]
    return value


def compare_stage_dirs(expected: Path, actual: Path) -> list[str]:
    """Differences between two stage folders: missing or extra files (hidden ones included: leftovers of a kill
    count) and files whose content differs beyond the run-dependent values above."""
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}

    want, got = files(expected), files(actual)
    problems = [f"missing {name}" for name in sorted(want - got)] + [f"extra {name}" for name in sorted(got - want)]
    problems += [f"differs {name}" for name in sorted(want & got)
                 if _normalized(expected / name) != _normalized(actual / name)]
    return problems
