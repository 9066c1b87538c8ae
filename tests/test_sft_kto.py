"""SFT and KTO stages on human counselor replies, and DPO starting from the SFT model; tiny model, tiny CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from recipes._entry import compose_config
from rewards.errors import UserError
from rewards.training.sft_kto import kto_examples, load_train_questions, sft_examples
from tests.conftest import tiny_overrides
from tests.human_data import COLUMNS, answer, judged_run, write_counselchat_like


@pytest.fixture
def human_csv(tmp_path) -> Path:
    return write_counselchat_like(tmp_path / "counsel_chat.csv")


def test_sft_examples_are_the_best_voted_train_answer_per_question(human_csv):
    examples = sft_examples(load_train_questions(human_csv), min_score=1)
    replies = sorted(e["completion"][0]["content"] for e in examples)
    assert replies == ["Feeling alone at work is hard.", "That sounds lonely. Tell me more.",
                       "What goes through your mind at night?"]  # no val/test, no unvoted question, no duplicate
    assert examples[0]["prompt"][0]["role"] == "user" and examples[0]["completion"][0]["role"] == "assistant"


def test_kto_labels_top_voted_good_and_unvoted_of_the_same_question_bad(human_csv):
    examples = kto_examples(load_train_questions(human_csv), min_score=1, max_undesirable_per_question=1, seed=0)
    good = {e["completion"][0]["content"] for e in examples if e["label"]}
    bad = [e for e in examples if not e["label"]]
    assert good == {"Feeling alone at work is hard.", "That sounds lonely. Tell me more.",
                    "What goes through your mind at night?"}
    assert len(bad) == 3 and len({e["prompt_id"] for e in bad}) == 3  # one per voted question (capped)
    assert not any("cry" in e["prompt"][0]["content"] for e in examples)  # a question nobody voted on says nothing


def test_missing_data_file_is_refused_before_the_stage_starts(tiny_model_dir, tmp_path):
    from recipes import sft

    with pytest.raises(UserError, match="missing.csv: file not found"):
        sft.run(compose_config([*tiny_overrides(tiny_model_dir, tmp_path), f"sft.data.source={tmp_path}/missing.csv"]))
    assert not (tmp_path / "t" / "sft").exists()


def test_held_out_split_is_refused_for_training(human_csv):
    with pytest.raises(UserError, match="sft.data.split=test"):
        load_train_questions(human_csv, split="test")


def stage_overrides(model_dir: Path, root: Path, csv_path: Path) -> list[str]:
    small = ["max_steps=2", "per_device_train_batch_size=2", "max_length=128", "save_steps=1000", "logging_steps=1"]
    return [*tiny_overrides(model_dir, root), f"sft.data.source={csv_path}", f"kto.data.source={csv_path}",
            *[f"sft.{o}" for o in small], *[f"kto.{o}" for o in small]]


def test_sft_stage_trains_and_writes_an_adapter_and_merged_model(tiny_model_dir, tmp_path, human_csv):
    from recipes import sft

    manifest = sft.run(compose_config(stage_overrides(tiny_model_dir, tmp_path, human_csv)))
    out = tmp_path / "t" / "sft"
    assert (out / "model" / "adapter_config.json").exists()
    assert (out / "merged" / "config.json").exists() and (out / "merged" / "model.safetensors").exists()
    assert manifest["counts"]["n_train_examples"] == 3 and manifest["metrics"]["steps"] == 2
    assert manifest["input_files"] == {str(human_csv): manifest["metrics"]["data_sha256"]}
    assert len((out / "train.jsonl").read_text().splitlines()) == 3


def test_full_sft_writes_a_full_model_that_dpo_starts_from(tiny_model_dir, tmp_path, human_csv):
    from recipes import sft
    from rewards.training.sft_kto import sft_policy_path

    sft.run(compose_config([*stage_overrides(tiny_model_dir, tmp_path, human_csv), "sft=full"]))
    out = tmp_path / "t" / "sft"
    assert (out / "model" / "model.safetensors").exists() and not (out / "merged").exists()
    assert sft_policy_path(out) == out / "model"


def test_sft_reruns_when_the_data_file_changes(tiny_model_dir, tmp_path, human_csv):
    from recipes import sft

    overrides = stage_overrides(tiny_model_dir, tmp_path, human_csv)
    first = sft.run(compose_config(overrides))
    assert sft.run(compose_config(overrides))["fingerprint"] == first["fingerprint"]
    with open(human_csv, "a", encoding="utf-8", newline="") as handle:
        csv.DictWriter(handle, fieldnames=COLUMNS).writerow(answer("q/new", "New question?", "New answer.", 2))
    second = sft.run(compose_config(overrides))
    assert second["fingerprint"] != first["fingerprint"] and second["counts"]["n_train_examples"] == 4


def test_kto_stage_trains_and_writes_an_adapter(tiny_model_dir, tmp_path, human_csv):
    from recipes import kto

    manifest = kto.run(compose_config(stage_overrides(tiny_model_dir, tmp_path, human_csv)))
    out = tmp_path / "t" / "kto"
    assert (out / "model" / "adapter_config.json").exists()
    assert manifest["counts"]["n_desirable"] == 3 and manifest["counts"]["n_undesirable"] == 4
    assert manifest["metrics"]["steps"] == 2
    history = json.loads((out / "log_history.json").read_text())
    assert any("loss" in h for h in history)


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_dpo_from_sft_starts_from_the_sft_weights(tiny_model_dir, tmp_path, human_csv, rubric):
    import torch

    from recipes import dpo, pairs, sft
    from recipes.stages import pipeline_stages

    judged_run(tmp_path / "t", rubric)
    overrides = [*stage_overrides(tiny_model_dir, tmp_path, human_csv), "sft.learning_rate=0.05",
                 "dpo.init_from=sft", "dpo.max_steps=1", "dpo.learning_rate=0.0"]
    cfg = compose_config(overrides)
    assert pipeline_stages(cfg)[0].name == "sft"  # the pipeline runs sft first when DPO starts from it
    assert "sft" not in [s.name for s in pipeline_stages(compose_config(overrides[:-3]))]
    pairs.run(cfg)
    with pytest.raises(UserError, match="run `counsel-align sft` first"):
        dpo.run(compose_config(overrides))
    sft.run(compose_config(overrides))
    manifest = dpo.run(compose_config(overrides))
    assert "sft" in manifest["inputs"] and manifest["metrics"]["init_from"] == "sft"
    model = tmp_path / "t" / "dpo" / "model"
    assert not (model / "adapter_config.json").exists()  # merged over the SFT model: loadable without it
    trained, start, base = weights(model), weights(tmp_path / "t" / "sft" / "merged"), weights(tiny_model_dir)
    name = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(trained[name], start[name])  # learning rate 0: the DPO policy is exactly the SFT model
    assert not torch.equal(start[name], base[name])


@pytest.mark.parametrize("loss_type", ["ipo", "robust"])
def test_dpo_loss_type_passes_through_to_trl(tiny_model_dir, tiny_tokenizer, tmp_path, loss_type):
    import math

    from datasets import Dataset

    from rewards.training.policy import build_dpo_trainer

    cfg = compose_config([*tiny_overrides(tiny_model_dir, tmp_path), f"dpo.loss_type={loss_type}",
                          "dpo.max_steps=1", "dpo.label_smoothing=0.1" if loss_type == "robust" else "seed=1"])
    train_cfg = {k: v for k, v in cfg.dpo.items()}
    rows = [{"prompt": [{"role": "user", "content": "I feel anxious."}],
             "chosen": [{"role": "assistant", "content": "That sounds hard."}],
             "rejected": [{"role": "assistant", "content": "Stop it."}]}] * 2
    trainer = build_dpo_trainer(str(tiny_model_dir), tiny_tokenizer, Dataset.from_list(rows), train_cfg,
                                tmp_path / "ckpt", [], 0)
    assert trainer.args.loss_type == [loss_type]
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])


def test_unknown_loss_type_is_one_line_naming_the_key(tiny_model_dir, tiny_tokenizer, tmp_path):
    from rewards.training.policy import build_dpo_trainer

    with pytest.raises(UserError, match="dpo.loss_type: 'dpo' is not a TRL DPO loss"):
        build_dpo_trainer(str(tiny_model_dir), tiny_tokenizer, None, {"loss_type": ["sigmoid", "dpo"]}, tmp_path, [])
