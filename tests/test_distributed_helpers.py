"""Helpers for launches under DeepSpeed on CPU: the gloo backend and the warning about stale extension build locks."""

from __future__ import annotations

import dataclasses
import os
import time

from rewards.distributed import stale_build_locks
from rewards.training.arguments import TRAINING_KEYS, training_arguments

# Stands in for DPOConfig: with ddp_backend set, the real one joins a process group as it is built. It takes every
# shared training option, since a partial dict is completed with TrainingOptions' defaults.
RecordedArguments = dataclasses.make_dataclass(
    "RecordedArguments",
    [("output_dir", str), ("report_to", list), ("seed", int), ("save_strategy", str), ("eval_strategy", str),
     ("use_cpu", bool), ("disable_tqdm", bool), *[(key, object, None) for key in TRAINING_KEYS]])


def make_lock(root, *parts: str, age_s: float):
    lock = root.joinpath(*parts, "lock")
    lock.parent.mkdir(parents=True)
    lock.touch()
    then = time.time() - age_s
    os.utime(lock, (then, then))
    return lock


def test_only_old_locks_are_stale(tmp_path):
    killed = make_lock(tmp_path, "py311_cpu", "deepspeed_shm_comm", age_s=3600)
    make_lock(tmp_path, "py311_cpu", "building_now", age_s=5)
    in_extensions_dir = make_lock(tmp_path, "cpu_adam", age_s=3600)  # layout under $TORCH_EXTENSIONS_DIR
    assert stale_build_locks(tmp_path) == sorted([killed, in_extensions_dir])


def test_deepspeed_on_cpu_gets_gloo_and_a_warning_about_a_stale_lock(tmp_path, monkeypatch, capsys):
    lock = make_lock(tmp_path, "deepspeed_shm_comm", age_s=3600)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    args = training_arguments(RecordedArguments, {}, tmp_path / "out", [], seed=0)
    assert args.ddp_backend == "gloo"
    warning = capsys.readouterr().err.strip()
    assert str(lock) in warning and "60 min old" in warning and len(warning.splitlines()) == 1


def test_no_warning_without_deepspeed(tmp_path, monkeypatch, capsys):
    make_lock(tmp_path, "deepspeed_shm_comm", age_s=3600)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    args = training_arguments(RecordedArguments, {}, tmp_path / "out", [], seed=0)
    assert args.ddp_backend is None and capsys.readouterr().err == ""


def test_a_user_chosen_backend_still_gets_the_warning(tmp_path, monkeypatch, capsys):
    lock = make_lock(tmp_path, "fused_adam", age_s=3600)  # a GPU launch builds other ops under the same locks
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    args = training_arguments(RecordedArguments, {"ddp_backend": "nccl"}, tmp_path / "out", [], seed=0)
    assert args.ddp_backend == "nccl"
    assert str(lock) in capsys.readouterr().err
