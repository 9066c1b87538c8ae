"""Resume after a kill gives the same weights as an uninterrupted run; a NaN loss stops training cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

import recipes.dpo as dpo_recipe
from recipes._entry import compose_config, run_stage
from tests.conftest import tiny_overrides, with_trainer_callback

STEPS = 4


class Killed(RuntimeError):
    """Stands in for a preemption: the process dies between checkpoints."""


class KillAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed at step {self.step}")


class PoisonAtStep(TrainerCallback):
    """Fills one weight with NaN before the given step, as a diverging run would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


def write_pairs(overrides: list[str]) -> None:
    """A finished `pairs` stage with 8 small conversational pairs (no generation or judging needed)."""
    from datasets import Dataset, DatasetDict

    def work(ctx):
        rows = [{"prompt": [{"role": "user", "content": f"I feel anxious ({i}) and I cannot sleep at night."}],
                 "chosen": [{"role": "assistant", "content": "That sounds really hard. What goes through your mind?"}],
                 "rejected": [{"role": "assistant", "content": "Score: 1 Just sleep."}],
                 "margin": 0.5} for i in range(8)]
        DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:2])}).save_to_disk(
            str(ctx.dir / "dataset"))
        return {"counts": {"train_pairs": len(rows)}}

    run_stage(compose_config(overrides), "pairs", work, ["seed"], inputs=[])


def dpo_overrides(model_dir: Path, root: Path, run: str) -> list[str]:
    return [*tiny_overrides(model_dir, root, run), "dpo=full", f"dpo.max_steps={STEPS}", "dpo.save_steps=1",
            "dpo.save_total_limit=null", "dpo.learning_rate=1e-3", "dpo.max_length=64",
            "dpo.per_device_train_batch_size=2"]


def load_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def losses(stage_dir: Path) -> list[float]:
    return [h["loss"] for h in json.loads((stage_dir / "log_history.json").read_text()) if "loss" in h]


def test_resume_after_kill_matches_uninterrupted_run(tiny_model_dir, tmp_path, monkeypatch):
    straight = dpo_overrides(tiny_model_dir, tmp_path, "straight")
    write_pairs(straight)
    assert dpo_recipe.main(straight) == 0

    killed = dpo_overrides(tiny_model_dir, tmp_path, "killed")
    write_pairs(killed)
    with monkeypatch.context() as patch:
        with_trainer_callback(patch, dpo_recipe, "build_dpo_trainer", KillAtStep(3))
        with pytest.raises(Killed):
            dpo_recipe.main(killed)
    stage = tmp_path / "killed" / "dpo"
    assert not (stage / "manifest.json").exists()
    assert sorted(p.name for p in (stage / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]

    assert dpo_recipe.main([*killed, "resume=true"]) == 0
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == STEPS and manifest["metrics"]["resumed_from_step"] == 2
    assert_training_card(stage / "model", STEPS)
    assert losses(stage) == pytest.approx(losses(tmp_path / "straight" / "dpo"), rel=1e-5)  # same data order

    resumed, reference = load_weights(stage / "model"), load_weights(tmp_path / "straight" / "dpo" / "model")
    initial = load_weights(tiny_model_dir)
    assert resumed.keys() == reference.keys()
    assert any(not torch.allclose(resumed[k], initial[k]) for k in resumed)  # training moved the weights
    for key in resumed:
        assert torch.allclose(resumed[key], reference[key], atol=1e-6), key


def assert_training_card(model_dir: Path, steps: int) -> None:
    """The DPO model folder carries a card with the rubric hash, the input hash and the code version."""
    from rewards.rubric import load_rubric
    from tests.conftest import PROJECT_ROOT

    card = json.loads((model_dir / "model_card.json").read_text())
    rubric = load_rubric(PROJECT_ROOT / "principles" / "psychocounsel.yaml").content_hash()
    assert card["rubric"]["sha256"] == rubric and card["method"] == "dpo" and card["metrics"]["steps"] == steps
    assert card["data"]["pairs"] and len(card["code"]["commit"]) == 40 and card["versions"]["trl"]
    readme = (model_dir / "README.md").read_text()
    assert rubric in readme and card["code"]["commit"] in readme and "not a therapist" in readme


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("counsel-align dpo: error:")]


def test_resume_true_without_checkpoint_is_a_user_error(tiny_model_dir, tmp_path, capsys):
    overrides = dpo_overrides(tiny_model_dir, tmp_path, "fresh")
    write_pairs(overrides)
    assert dpo_recipe.main([*overrides, "resume=true"]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "resume=true: no checkpoint under" in err[0]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_model_dir, tmp_path, monkeypatch, capsys):
    overrides = dpo_overrides(tiny_model_dir, tmp_path, "diverge")
    write_pairs(overrides)
    with_trainer_callback(monkeypatch, dpo_recipe, "build_dpo_trainer", PoisonAtStep(3))
    assert dpo_recipe.main(overrides) == 2
    err = error_lines(capsys)
    stage = tmp_path / "diverge" / "dpo"
    assert len(err) == 1, err
    assert "loss became nan at step 3" in err[0] and "checkpoint-2" in err[0]
    assert sorted(p.name for p in (stage / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert all(torch.isfinite(t).all() for t in load_weights(stage / "checkpoints" / "checkpoint-2").values())
    assert not (stage / "manifest.json").exists() and not (stage / "model").exists()
