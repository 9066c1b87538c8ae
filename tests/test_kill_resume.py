"""Kill -9 at a labelled point of a stage, then the same command: it finishes, and its stage folder equals that of an
uninterrupted run (issue 13). See tests/kill_resume.py for the kill points and what may differ."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rewards.artifacts import atomic_write_text, sha256_tree
from rewards.training.checkpointing import resume_checkpoint
from tests.conftest import tiny_overrides, write_tiny_counselchat
from tests.kill_resume import KILL_ENV, PROJECT_ROOT, compare_stage_dirs, copy_upstream, kill_then_rerun, run_ok

RUN = "t"

# A few points in the default suite: a journal part-way, a folder swap cut between its two renames, a training
# stage killed right after a checkpoint (the rerun resumes from it and must train to the same weights).
# A training stage killed after its final checkpoint, before its manifest, must not train a step too many.
QUICK = [("generate", "journal.append:1"), ("pairs", "atomic.swap:1"), ("dpo", "manifest.write:1")]

# Every pipeline stage at each kind of point it reaches: a journal part-way, an atomic file write cut before its
# rename, a dataset or model folder written but not swapped in, the swap cut between its two renames, a training
# step before any checkpoint, right after a checkpoint, and outputs complete but no manifest yet. Small counts, so
# that every point is reached by the tiny run (the harness fails a trial whose process was not killed).
FULL = [
    ("generate", "atomic.write:1"), ("generate", "journal.append:2"), ("generate", "atomic.dir:1"),
    ("generate", "manifest.write:1"),
    ("calibrate", "atomic.write:1"), ("calibrate", "journal.append:1"), ("calibrate", "journal.append:2"),
    ("calibrate", "atomic.write:4"), ("calibrate", "manifest.write:1"),
    ("judge", "journal.append:2"), ("judge", "atomic.write:2"), ("judge", "atomic.swap:1"),
    ("judge", "manifest.write:1"),
    ("probes", "journal.append:1"), ("probes", "manifest.write:1"),
    ("pairs", "atomic.write:1"), ("pairs", "atomic.dir:1"), ("pairs", "manifest.write:1"),
    ("reward", "train.step:1"), ("reward", "checkpoint.saved:2"), ("reward", "atomic.dir:1"),
    ("reward", "atomic.swap:1"), ("reward", "manifest.write:1"),
    ("dpo", "train.step:1"), ("dpo", "checkpoint.saved:1"), ("dpo", "atomic.swap:1"),
    ("evaluate", "atomic.write:1"), ("evaluate", "atomic.dir:1"), ("evaluate", "atomic.swap:1"),
    ("evaluate", "manifest.write:1"),
    ("report", "atomic.write:1"), ("report", "atomic.write:5"), ("report", "manifest.write:1"),
]

# Training stages outside the pipeline: before any checkpoint, right after one, after the final one.
EXTRA = [
    ("sft", "train.step:1"), ("sft", "checkpoint.saved:1"), ("sft", "manifest.write:1"),
    ("kto", "train.step:1"), ("kto", "checkpoint.saved:1"), ("kto", "manifest.write:1"),
    ("grpo", "train.step:1"), ("grpo", "checkpoint.saved:1"), ("grpo", "manifest.write:1"),
    ("rloo", "train.step:1"), ("rloo", "checkpoint.saved:1"), ("rloo", "manifest.write:1"),
]
ONLINE = ("grpo", "rloo")


def extra_overrides(stage: str, human_csv: Path, args: list[str]) -> list[str]:
    """The pipeline's overrides made to fit a stage outside it (sft, kto, grpo, rloo): 4 steps, a checkpoint every 2."""
    if stage in ("sft", "kto"):
        small = ["max_steps=4", "per_device_train_batch_size=2", "max_length=128", "save_steps=2", "logging_steps=1"]
        return [*args, f"{stage}.data.source={human_csv}", *[f"{stage}.{o}" for o in small]]
    small = ["max_steps=4", "num_generations=2", "per_device_train_batch_size=2", "max_completion_length=8",
             "save_steps=2"]
    return [*[o for o in args if not o.startswith("train.")], f"{stage}=lora", *[f"{stage}.{o}" for o in small]]


def overrides(model_dir: Path, output_root: Path) -> list[str]:
    # Checkpoints every 2 steps, so that training stages are killed between checkpoints and resume from one.
    base = [o for o in tiny_overrides(model_dir, output_root, RUN)
            if ".save_steps=" not in o and not o.startswith("calibration.source=")]
    # calibrate's human pairs beside the output root, not in it: each trial replaces the output root's contents.
    calibration = write_tiny_counselchat(output_root.parent / "counselchat_val.csv")
    return [*base, f"calibration.source={calibration}", "train.save_steps=2", "reward_train.save_steps=2"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> tuple[Path, list[str]]:
    """An uninterrupted pipeline run, moved aside; trials run at the same path (paths are written into outputs)."""
    base = tmp_path_factory.mktemp("kill")
    args = overrides(tiny_model_dir, base / "out")
    run_ok("pipeline", args)  # a subprocess too: the same hash seed as the trials (see tests/kill_resume.py)
    (base / "out").rename(base / "ref")
    return base, args


@pytest.fixture(scope="module")
def extra_reference(reference) -> tuple[Path, dict[str, list[str]]]:
    """The reference run with sft, kto, grpo and rloo added, each with its own overrides."""
    from tests.human_data import write_counselchat_like

    base, args = reference
    human_csv = write_counselchat_like(base / "counselchat.csv")
    stage_args = {stage: extra_overrides(stage, human_csv, args) for stage in ("sft", "kto", *ONLINE)}
    (base / "ref").rename(base / "out")
    try:
        for stage, command in stage_args.items():
            run_ok(stage, command)
    finally:
        (base / "out").rename(base / "ref")
    return base, stage_args


def check_kill(reference: tuple[Path, list[str]], stage: str, kill_at: str) -> None:
    base, args = reference
    run_dir = base / "out" / RUN
    copy_upstream(stage, base / "ref" / RUN, run_dir)
    try:
        _, rerun = kill_then_rerun(stage, args, kill_at)
        assert f"{stage}: running" in rerun.output  # the kill left no manifest that would skip the rerun
        assert compare_stage_dirs(base / "ref" / RUN / stage, run_dir / stage) == []
    finally:
        shutil.rmtree(base / "out", ignore_errors=True)


def test_reading_stages_leave_the_pairs_folder_as_its_manifest_hashed_it(reference):
    pairs = reference[0] / "ref" / RUN / "pairs"
    assert not list(pairs.rglob("cache-*.arrow"))  # reward and dpo wrote their map caches there
    assert sha256_tree(pairs) == json.loads((pairs / "manifest.json").read_text())["outputs_sha256"]


@pytest.mark.parametrize(("stage", "kill_at"), QUICK, ids=[f"{s}-{k}" for s, k in QUICK])
def test_killed_stage_reruns_to_the_same_outputs(reference, stage, kill_at):
    check_kill(reference, stage, kill_at)


@pytest.mark.multiprocess
@pytest.mark.parametrize(("stage", "kill_at"), FULL, ids=[f"{s}-{k}" for s, k in FULL])
def test_every_stage_killed_anywhere_reruns_to_the_same_outputs(reference, stage, kill_at):
    check_kill(reference, stage, kill_at)


def test_a_temp_file_left_by_a_killed_atomic_write_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "metrics.json"
    code = f"from rewards.artifacts import atomic_write_text, sha256_tree; atomic_write_text({str(target)!r}, 'new')"
    env = {**os.environ, KILL_ENV: "atomic.write:1"}
    killed = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env)
    assert killed.returncode == -9 and not target.exists()
    assert [p.name for p in tmp_path.iterdir()]  # the killed writer's temp file
    atomic_write_text(target, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_resume_skips_a_final_checkpoint_and_resumes_from_the_one_before(tmp_path):
    """Resumed from the checkpoint of its last step, the Trainer trains one step too many (kill before manifest)."""
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step,
                                                                                        "max_steps": 4}))
    assert resume_checkpoint(tmp_path, "auto") == str(tmp_path / "checkpoint-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert resume_checkpoint(tmp_path, "true") == str(tmp_path / "checkpoint-2")  # an unfinished one is kept


@pytest.mark.multiprocess
@pytest.mark.parametrize(("stage", "kill_at"), EXTRA, ids=[f"{s}-{k}" for s, k in EXTRA])
def test_training_stages_outside_the_pipeline_killed_rerun_to_the_same_outputs(extra_reference, stage, kill_at):
    base, stage_args = extra_reference
    check_kill((base, stage_args[stage]), stage, kill_at)
