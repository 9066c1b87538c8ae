"""Human pairs mixed into the pairs stage: train split only, weighted by sampling, recorded in the manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from recipes._entry import compose_config
from rewards.artifacts import read_jsonl, sha256_file
from rewards.errors import UserError
from rewards.human_prefs import parse_human_sources, weighted_sample
from tests.conftest import tiny_overrides
from tests.human_data import judged_run, write_counselchat_like


@pytest.fixture
def run_root(tmp_path, rubric, tiny_model_dir) -> Path:
    judged_run(tmp_path / "t", rubric)
    return tmp_path


def pairs_config(model_dir: Path, root: Path, *sources: str):
    return compose_config([*tiny_overrides(model_dir, root), f"pairs.human.sources=[{','.join(sources)}]"])


def test_no_source_leaves_the_pairs_as_they_were(run_root, tiny_model_dir):
    from recipes import pairs

    manifest = pairs.run(pairs_config(tiny_model_dir, run_root))
    rows = read_jsonl(run_root / "t" / "pairs" / "train.jsonl")
    assert manifest["counts"]["train_pairs"] == len(rows) == 2
    assert "source" not in rows[0] and "human_sources" not in manifest["metrics"]


def test_human_pairs_join_train_only_weighted_and_recorded(run_root, tiny_model_dir, tmp_path):
    from datasets import load_from_disk

    from recipes import pairs

    table = write_counselchat_like(tmp_path / "chat.csv")  # 4 train pairs (and val/test pairs that must stay out)
    source = f"{{name: chat, path: {table}, weight: 2.0, max_pairs: 3}}"
    manifest = pairs.run(pairs_config(tiny_model_dir, run_root, source))
    out = run_root / "t" / "pairs"
    train, test = read_jsonl(out / "train.jsonl"), read_jsonl(out / "test.jsonl")
    assert Counter(r["source"] for r in train) == {"judge": 2, "human:chat": 6}  # 3 sampled pairs, each twice
    assert [r["source"] for r in test] == ["judge"]
    assert not any("held-out" in r["prompt"][0]["content"] for r in train)  # val/test questions never trained on
    human = [r for r in train if r["source"] == "human:chat"]
    assert all(r["weight"] == 2.0 and r["margin"] == 0.0 and r["chosen_empathy"] is None for r in human)
    counts, info = manifest["counts"], manifest["metrics"]["human_sources"][0]
    assert counts["train_pairs"] == 8 and counts["train_judge_pairs"] == 2 and counts["human_chat_pairs"] == 6
    assert counts["test_pairs"] == 1
    assert info["sha256"] == sha256_file(table) and info["weight"] == 2.0
    assert (info["n_available"], info["n_sampled"], info["n_rows"]) == (4, 3, 6)
    assert sha256_file(table) in manifest["input_files"].values()
    dataset = load_from_disk(str(out / "dataset"))
    assert len(dataset["train"]) == 8 and len(dataset["test"]) == 1


def test_changed_human_file_reruns_the_pairs_stage(run_root, tiny_model_dir, tmp_path):
    from recipes import pairs

    table = write_counselchat_like(tmp_path / "chat.csv")
    first = pairs.run(pairs_config(tiny_model_dir, run_root, f"{{path: {table}}}"))
    table.write_text(table.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert pairs.run(pairs_config(tiny_model_dir, run_root, f"{{path: {table}}}"))["fingerprint"] != \
        first["fingerprint"]


def test_weight_is_applied_by_sampling():
    pairs = [{"pair_id": str(i)} for i in range(10)]
    assert len(weighted_sample(pairs, 1.0)) == 10 and len(weighted_sample(pairs, 0.0)) == 0
    half = weighted_sample(pairs, 0.5, seed=1)
    assert len(half) == 5 and half == weighted_sample(pairs, 0.5, seed=1)
    assert Counter(p["pair_id"] for p in weighted_sample(pairs, 2.5)).most_common(1)[0][1] == 3


@pytest.mark.parametrize(("spec", "message"), [
    ({"path": "x.csv", "split": "test"}, r"sources\[0\].split=test: held-out"),
    ({"path": "x.csv", "weight": -1}, r"sources\[0\].weight=-1"),
    ({"path": "x.csv", "weight": "high"}, r"sources\[0\].weight=high: a weight is a number"),
    ({"path": "x.csv", "wieght": 2}, "unknown key 'wieght'"),
    ({"name": "a"}, "needs a path"),
])
def test_bad_sources_are_refused_in_one_line(spec, message):
    with pytest.raises(UserError, match=message):
        parse_human_sources([spec])


def test_human_pairs_are_refused_for_a_multihead_reward_model(run_root, tiny_model_dir, tmp_path):
    from recipes import pairs

    table = write_counselchat_like(tmp_path / "chat.csv")
    cfg = compose_config([*tiny_overrides(tiny_model_dir, run_root), f"pairs.human.sources=[{{path: {table}}}]",
                          "reward=multihead"])
    with pytest.raises(UserError, match="reward_multihead"):
        pairs.run(cfg)
