"""SFT and KTO stages on human counselor replies, and DPO starting from the SFT model; tiny model, tiny CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from recipes._entry import compose_config
from rewards.errors import UserError
from rewards.human_training import kto_examples, load_train_questions, sft_examples
from tests.conftest import tiny_overrides

COLUMNS = ["questionID", "questionTitle", "questionText", "questionLink", "topic", "therapistInfo", "therapistURL",
           "answerText", "upvotes", "views", "split"]


def answer(link: str, question: str, text: str, upvotes: int, split: str = "train", qid: str = "1") -> dict:
    return {"questionID": qid, "questionTitle": question[:20], "questionText": question, "questionLink": link,
            "topic": "anxiety", "therapistInfo": "T", "therapistURL": f"u/{text[:8]}", "answerText": text,
            "upvotes": str(upvotes), "views": "10", "split": split}


def write_counselchat_like(path: Path) -> Path:
    """Four train questions (one nobody voted on, one listed twice under a second id), one val and one test question."""
    money = "My partner and I argue about money and I feel alone."
    rows = [
        answer("q/sleep", "I feel anxious and I cannot sleep at night.", "What goes through your mind at night?", 3),
        answer("q/sleep", "I feel anxious and I cannot sleep at night.", "Try to sleep more.", 0),
        answer("q/sleep", "I feel anxious and I cannot sleep at night.", "Sleep is overrated.", 0),
        answer("q/sleep", "I feel anxious and I cannot sleep at night.", "What goes through your mind at night?", 3,
               qid="7"),
        answer("q/money", money, "That sounds lonely. Tell me more.", 2),
        answer("q/money", money, "Leave them.", 0),
        answer("q/alone", "I feel alone at work.", "Feeling alone at work is hard.", 1),
        answer("q/alone", "I feel alone at work.", "Everyone feels that.", 0),
        answer("q/novote", "Is it normal to cry?", "Yes.", 0),
        answer("q/novote", "Is it normal to cry?", "It is very normal.", 0),
        answer("q/val", "A held-out val question.", "A val answer with votes.", 5, split="val"),
        answer("q/val", "A held-out val question.", "Another val answer.", 0, split="val"),
        answer("q/test", "A held-out test question.", "A test answer with votes.", 4, split="test"),
    ]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


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
    assert manifest["config"]["sft"]["data"]["source_sha256"] == manifest["metrics"]["data_sha256"]
    assert len((out / "train.jsonl").read_text().splitlines()) == 3


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
