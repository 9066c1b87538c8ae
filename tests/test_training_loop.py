"""Every training stage goes through one loop: resume=auto|true|false, the NaN/inf guard, log_history.json and a model
card with provenance, for the reward stage (scalar and multi-head), GRPO and RLOO as for DPO."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

import recipes.online as online_recipe
import recipes.reward as reward_recipe
from recipes._entry import compose_config, run_stage
from tests.conftest import PROJECT_ROOT, count_reward_calls, tiny_overrides, with_trainer_callback
from tests.test_resume_guard import KillAtStep, Killed, PoisonAtStep

STEPS = 4


def write_scored_pairs(overrides: list[str]) -> dict:
    """A finished `pairs` stage (rubric hash in its manifest) whose 8 pairs carry a judge score per principle."""
    from datasets import Dataset, DatasetDict

    from rewards.rubric import load_rubric

    ids = load_rubric(PROJECT_ROOT / "principles" / "psychocounsel.yaml").ids

    def work(ctx):
        rows = [{"prompt": [{"role": "user", "content": f"I feel anxious ({i}) and I cannot sleep at night."}],
                 "chosen": [{"role": "assistant", "content": "That sounds really hard. What goes through your mind?"}],
                 "rejected": [{"role": "assistant", "content": "Score: 1 Just sleep."}], "margin": 0.5,
                 **{f"chosen_{pid}": 4 for pid in ids}, **{f"rejected_{pid}": 2 for pid in ids}} for i in range(8)]
        DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:2])}).save_to_disk(
            str(ctx.dir / "dataset"))
        return {"counts": {"train_pairs": len(rows)}}

    return run_stage(compose_config(overrides), "pairs", work, ["seed"], inputs=[], uses_rubric=True)


def reward_overrides(model_dir: Path, root: Path, run: str, *extra: str) -> list[str]:
    return [*tiny_overrides(model_dir, root, run), f"reward.max_steps={STEPS}", "reward.save_steps=1",
            "reward.save_total_limit=null", "reward.max_length=64", "reward.learning_rate=1e-3",
            "reward.per_device_train_batch_size=2", *extra]


def online_run(model_dir: Path, tokenizer, root: Path, method: str, **provenance: str) -> list[str]:
    """A finished run "rl" with an exported LoRA reward model; the overrides of a 4-step ``method`` stage on it."""
    from rewards.reward_models.io import export_reward_model
    from tests.test_reward_io import fake_finished_run, lora_reward_model

    export_reward_model(lora_reward_model(model_dir, tokenizer), tokenizer, root / "rl" / "reward" / "model",
                        base_model=str(model_dir), weights={}, max_length=256, provenance=provenance or None)
    fake_finished_run(root, "rl")
    return [f"model.name_or_path={model_dir}", f"output_root={root}", "run=rl", "device=cpu", "wandb.mode=disabled",
            f"{method}.max_steps={STEPS}", f"{method}.num_generations=2", f"{method}.per_device_train_batch_size=2",
            f"{method}.max_completion_length=8", f"{method}.save_steps=1", f"{method}.save_total_limit=null"]


def checkpoints(stage: Path) -> list[str]:
    return sorted(p.name for p in (stage / "checkpoints").glob("checkpoint-*"))


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's modification time and bytes: a rewritten checkpoint differs in at least the times."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*")
            if p.is_file()}


def logged_steps(stage: Path) -> list[int]:
    return [row["step"] for row in json.loads((stage / "log_history.json").read_text()) if "loss" in row]


def assert_card(model_dir: Path, rubric_sha256: str, steps: int) -> dict:
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["rubric"]["sha256"] == rubric_sha256
    assert re.fullmatch(r"[0-9a-f]{40}", card["code"]["commit"]) and isinstance(card["code"]["dirty"], bool)
    assert card["versions"]["trl"] and card["metrics"]["steps"] == steps and card["base_model"]
    readme = (model_dir / "README.md").read_text()
    assert card["code"]["commit"] in readme and rubric_sha256 in readme
    return card


def error_lines(capsys, stage: str) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith(f"counsel-align {stage}: error:")]


def test_reward_stage_honours_resume_true_false_and_auto(tiny_model_dir, tmp_path, monkeypatch, capsys):
    overrides = reward_overrides(tiny_model_dir, tmp_path, "rm")
    pairs = write_scored_pairs(overrides)
    stage = tmp_path / "rm" / "reward"
    assert reward_recipe.main([*overrides, "resume=true"]) == 2  # nothing to resume from
    assert "resume=true: no checkpoint under" in error_lines(capsys, "reward")[0]

    with monkeypatch.context() as patch:
        with_trainer_callback(patch, reward_recipe, "build_trainer", KillAtStep(3))
        with pytest.raises(Killed):
            reward_recipe.main(overrides)
    assert checkpoints(stage) == ["checkpoint-1", "checkpoint-2"]
    with monkeypatch.context() as patch:  # resume=false starts over: checkpoint-2 of the old run must not survive
        with_trainer_callback(patch, reward_recipe, "build_trainer", KillAtStep(2))
        with pytest.raises(Killed):
            reward_recipe.main([*overrides, "resume=false"])
    assert checkpoints(stage) == ["checkpoint-1"]
    first = snapshot(stage / "checkpoints" / "checkpoint-1")

    assert reward_recipe.main(overrides) == 0  # resume=auto continues from checkpoint-1
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == STEPS and manifest["metrics"]["resumed_from_step"] == 1
    assert snapshot(stage / "checkpoints" / "checkpoint-1") == first
    assert logged_steps(stage) == [1, 2, 3, 4]
    card = json.loads((stage / "model" / "model_card.json").read_text())
    assert card["rubric"] == {"sha256": pairs["rubric_sha256"], "source": "pairs manifest"}
    assert card["data"] == {"pairs": pairs["outputs_sha256"]} and card["weights"] == "lora_adapter"
    assert re.fullmatch(r"[0-9a-f]{40}", card["code"]["commit"])
    readme = (stage / "model" / "README.md").read_text()  # the reward card of reward_io, with the code version
    assert "reward model" in readme and card["code"]["commit"] in readme and pairs["rubric_sha256"] in readme


def test_multihead_reward_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_model_dir, tmp_path, monkeypatch,
                                                                        capsys):
    overrides = reward_overrides(tiny_model_dir, tmp_path, "diverge", "reward=multihead")
    write_scored_pairs(overrides)
    with_trainer_callback(monkeypatch, reward_recipe, "build_trainer", PoisonAtStep(3))
    assert reward_recipe.main(overrides) == 2
    err = error_lines(capsys, "reward")
    stage = tmp_path / "diverge" / "reward"
    assert len(err) == 1, err
    assert "loss became nan at step 3" in err[0] and "checkpoint-2" in err[0]
    assert checkpoints(stage) == ["checkpoint-1", "checkpoint-2"]
    from safetensors.torch import load_file

    adapter = load_file(str(stage / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"))
    assert adapter and all(torch.isfinite(t).all() for t in adapter.values())
    assert not (stage / "manifest.json").exists() and not (stage / "model").exists()


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_online_resume_continues_at_step_3_and_keeps_checkpoint_1(method, tiny_model_dir, tiny_tokenizer, tmp_path,
                                                                   monkeypatch):
    from recipes.grpo import main as grpo_main
    from recipes.rloo import main as rloo_main

    overrides = online_run(tiny_model_dir, tiny_tokenizer, tmp_path, method, rubric_sha256="a" * 64,
                           pairs_sha256="b" * 64)
    stage, main = tmp_path / "rl" / method, grpo_main if method == "grpo" else rloo_main
    with monkeypatch.context() as patch:
        with_trainer_callback(patch, online_recipe, "build_online_trainer", KillAtStep(3))
        with pytest.raises(Killed):
            main(overrides)
    assert checkpoints(stage) == ["checkpoint-1", "checkpoint-2"]
    first = snapshot(stage / "checkpoints" / "checkpoint-1")

    scored = count_reward_calls(monkeypatch)
    assert main([*overrides, "resume=true"]) == 0
    assert sum(scored) == 2 * 2  # steps 3 and 4 only, two completions each: steps 1-2 were not retrained
    assert snapshot(stage / "checkpoints" / "checkpoint-1") == first
    assert checkpoints(stage) == [f"checkpoint-{step}" for step in range(1, STEPS + 1)]
    metrics = json.loads((stage / "manifest.json").read_text())["metrics"]
    assert metrics["steps"] == STEPS and metrics["resumed_from_step"] == 2 and metrics["n_logged_steps"] == STEPS
    assert logged_steps(stage) == [1, 2, 3, 4]
    card = assert_card(stage / "model", "a" * 64, STEPS)
    assert card["rubric"]["source"] == "reward model" and set(card["data"]) == {"generate", "reward"}
    assert card["method"] == method and card["weights"] == "lora_adapter"


class PoisonAfterStep(TrainerCallback):
    """Fills one trained weight with NaN at the end of a step, as an overflowing update with a finite loss would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


def test_grpo_stops_before_saving_or_sampling_from_non_finite_weights(tiny_model_dir, tiny_tokenizer, tmp_path,
                                                                      monkeypatch, capsys):
    from recipes.grpo import main as grpo_main

    overrides = online_run(tiny_model_dir, tiny_tokenizer, tmp_path, "grpo")
    with_trainer_callback(monkeypatch, online_recipe, "build_online_trainer", PoisonAfterStep(2))
    assert grpo_main(overrides) == 2
    err = error_lines(capsys, "grpo")
    assert len(err) == 1, err
    assert "the trained weights became non-finite at step 2" in err[0] and "checkpoint-1" in err[0]
    stage = tmp_path / "rl" / "grpo"
    assert checkpoints(stage) == ["checkpoint-1"]  # the poisoned step 2 was never saved
    assert not (stage / "manifest.json").exists() and not (stage / "model").exists()


def test_push_and_pull_refuse_a_training_model_folder(tmp_path):
    from recipes.assessment import checkpoint_base_model
    from rewards.errors import UserError
    from rewards.reporting.hub import pull_checkpoint, push_checkpoint
    from rewards.reporting.model_card import build_training_card, write_training_card
    from rewards.training.loop import stage_provenance

    model_dir = tmp_path / "dpo" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "adapter_config.json").write_text("{}")
    provenance = stage_provenance(stage="dpo", run="r", base_model="tiny-base", config={"method": "dpo"}, inputs={})
    write_training_card(model_dir, build_training_card(model_dir=model_dir, provenance=provenance, metrics={}))
    for move in (lambda: push_checkpoint(model_dir, str(tmp_path / "pushed")),
                 lambda: pull_checkpoint(str(model_dir), tmp_path / "pulled")):
        with pytest.raises(UserError, match="not evaluated"):
            move()
    assert not (tmp_path / "pushed").exists() and not (tmp_path / "pulled").exists()
    assert checkpoint_base_model(model_dir) == "tiny-base"  # evaluating the folder still finds its base model


def test_provenance_takes_the_rubric_of_the_data_before_the_configured_one():
    from rewards.rubric import load_rubric
    from rewards.training.loop import stage_provenance

    path = PROJECT_ROOT / "principles" / "psychocounsel.yaml"
    common = {"stage": "dpo", "run": "r", "base_model": "m", "config": {"method": "dpo"}, "rubric_path": path}
    judged = stage_provenance(inputs={"pairs": {"outputs_sha256": "p", "rubric_sha256": "r" * 64}}, **common)
    assert (judged["rubric_sha256"], judged["rubric_source"], judged["inputs"]) == ("r" * 64, "pairs manifest",
                                                                                    {"pairs": "p"})
    configured = stage_provenance(inputs={"pairs": {"outputs_sha256": "p"}}, **common)
    assert configured["rubric_sha256"] == load_rubric(path).content_hash()
    assert configured["code"]["commit"] and configured["versions"]["torch"]


def test_resume_skips_and_removes_a_checkpoint_cut_short_while_saving(tmp_path):
    from rewards.training.checkpointing import resume_checkpoint

    for step in (1, 2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"x")
    for step in (1, 2):  # checkpoint-10 was killed before the Trainer wrote its state (it writes that last)
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert resume_checkpoint(tmp_path, "true") == str(tmp_path / "checkpoint-2")  # by step number, not by name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-2"]
    assert resume_checkpoint(tmp_path, "auto") == str(tmp_path / "checkpoint-2")
    assert resume_checkpoint(tmp_path, "false") is None and not any(tmp_path.iterdir())
