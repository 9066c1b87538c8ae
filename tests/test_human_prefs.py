"""Human preference import (CounselChat from the shared copy, any CSV/JSONL by column map) and the agreement report."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from recipes import agreement
from rewards.errors import UserError
from rewards.human_prefs import load_counselchat, load_human_pairs, sample_pairs
from rewards.judges.agreement import agreement_report, length_verdict, pairwise_verdict, score_verdict
from tests.conftest import PROJECT_ROOT
from tests.fake_openai_server import FakeOpenAIServer

COUNSELCHAT = PROJECT_ROOT.parent / "shared" / "datasets" / "counselchat" / "counsel_chat.csv"


@pytest.fixture(scope="module")
def counselchat_pairs() -> list[dict]:
    if not COUNSELCHAT.exists():
        pytest.skip("shared CounselChat copy not present")
    return load_counselchat(COUNSELCHAT)


@pytest.fixture(scope="module")
def tiny_counselchat(tmp_path_factory) -> Path:
    """The rows of three test-split questions with differing upvotes, copied into a temp CSV (never into the repo)."""
    if not COUNSELCHAT.exists():
        pytest.skip("shared CounselChat copy not present")
    with open(COUNSELCHAT, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_link: dict[str, list[dict]] = {}
    for row in rows:
        by_link.setdefault(row["questionLink"], []).append(row)
    links = [link for link, group in by_link.items() if len({r["upvotes"] for r in group}) > 1
             and all(r["split"] == "test" for r in group)][:3]
    path = tmp_path_factory.mktemp("cc") / "tiny.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for link in links for r in by_link[link])
    return path


def test_counselchat_pairs_match_the_dataset_card(counselchat_pairs):
    # The README of the shared copy: 1,775 pairs grouped by question link after dropping duplicate answers;
    # with held-out questions that also occur in train moved out: 1,637 / 78 / 60 from 175 / 20 / 6 questions.
    pairs = counselchat_pairs
    assert len(pairs) == 1775
    assert Counter(p["split"] for p in pairs) == {"train": 1637, "val": 78, "test": 60}
    questions = {p["prompt_id"]: p["split"] for p in pairs}
    assert Counter(questions.values()) == {"train": 175, "val": 20, "test": 6}
    assert all(p["chosen_score"] > p["rejected_score"] and p["chosen"] != p["rejected"] for p in pairs)
    assert len({p["pair_id"] for p in pairs}) == len(pairs)


def test_sampling_is_seeded_capped_per_question_and_by_split(counselchat_pairs):
    sample = sample_pairs(counselchat_pairs, 50, "train", max_per_prompt=2, seed=3)
    assert len(sample) == 50 and all(p["split"] == "train" for p in sample)
    assert max(Counter(p["prompt_id"] for p in sample).values()) <= 2
    assert sample == sample_pairs(counselchat_pairs, 50, "train", max_per_prompt=2, seed=3)
    assert sample != sample_pairs(counselchat_pairs, 50, "train", max_per_prompt=2, seed=4)


def test_any_table_with_a_column_mapping(tmp_path):
    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text("\n".join(json.dumps(r) for r in [
        {"q": "I feel alone.", "a": "Tell me more.", "votes": 3, "t": "loneliness"},
        {"q": "I feel alone.", "a": "Go out more.", "votes": 0, "t": "loneliness"},
        {"q": "I feel alone.", "a": "Same votes.", "votes": 0, "t": "loneliness"},
    ]))
    columns = {"prompt": "q", "response": "a", "score": "votes", "group": None, "topic": "t", "split": None}
    pairs = load_human_pairs(ranked, "ranked", columns)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("Tell me more.", "Go out more."),
                                                             ("Tell me more.", "Same votes.")]
    assert pairs[0]["topic"] == "loneliness" and pairs[0]["split"] == "train"

    paired = tmp_path / "paired.csv"
    paired.write_text('prompt,good,bad\n"I feel, alone.","Tell me more.","Go out."\n')
    pairs = load_human_pairs(paired, "pairs", {"prompt": "prompt", "chosen": "good", "rejected": "bad"})
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("I feel, alone.", "Tell me more.",
                                                                            "Go out.")]


def test_missing_column_is_one_line_naming_it(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("question,answer,votes\nq,a,1\n")
    with pytest.raises(UserError) as error:
        load_human_pairs(path, "ranked", {"prompt": "question", "response": "answer", "score": "upvotes"})
    message = str(error.value)
    assert "'upvotes' (agreement.columns.score) not found" in message and "\n" not in message
    assert "['question', 'answer', 'votes']" in message
    with pytest.raises(UserError, match="not found; give a CSV/JSONL path"):
        load_human_pairs(tmp_path / "nope.csv", "ranked")


def test_verdicts_and_report():
    assert score_verdict(4.0, 3.0) == "correct" and score_verdict(3.0, 3.05, margin=0.1) == "tie"
    assert length_verdict("long reply", "short") == "correct" and length_verdict("a", "bb") == "wrong"
    assert pairwise_verdict(0.9, 0.8) == "correct" and pairwise_verdict(0.9, 0.2) == "tie"
    rows = [{"prompt_id": f"q{i % 3}", "topic": "a" if i < 4 else "b", "judge": v, "length": "wrong"}
            for i, v in enumerate(["correct", "correct", "tie", "wrong", "correct", "correct"])]
    report = agreement_report(rows)
    assert report["judge"]["accuracy"] == pytest.approx(4.5 / 6) and report["judge"]["ties"] == 1
    assert report["judge"]["accuracy_excluding_ties"] == pytest.approx(0.8)
    assert report["length_baseline"]["accuracy"] == 0.0
    assert report["per_topic"]["a"]["judge"]["n"] == 4 and report["per_topic"]["b"]["judge"]["accuracy"] == 1.0
    low, high = report["judge"]["ci95"]
    assert 0.0 <= low <= report["judge"]["accuracy"] <= high <= 1.0


def _agreement_args(root: Path, source: Path, *extra: str) -> list[str]:
    return [f"output_root={root}", "run=a", f"agreement.source={source}", "agreement.n_pairs=6",
            "agreement.max_chars=300", "device=cpu", *extra]


def test_agreement_command_with_the_tiny_local_judge(tiny_model_dir, tiny_counselchat, tmp_path, capsys):
    args = _agreement_args(tmp_path, tiny_counselchat, f"model.name_or_path={tiny_model_dir}")
    assert agreement.main(args) == 0
    out_dir = tmp_path / "a" / "agreement"
    report = json.loads((out_dir / "agreement.json").read_text())
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["counts"]["n_pairs"] == 6 == report["n_pairs"] == manifest["counts"]["n_judged_pairs"]
    judge, length = report["judge"], report["length_baseline"]
    assert judge["correct"] + judge["wrong"] + judge["ties"] == 6
    pairs = [json.loads(line) for line in (out_dir / "pairs.jsonl").read_text().splitlines()]
    expected_length = sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs)
    assert length["correct"] == expected_length
    assert set(report["per_principle"]) >= {"empathy", "harm_avoidance"} and report["per_topic"]
    text = (out_dir / "report.md").read_text()
    assert "length baseline" in text and "| judge | 6 |" in text
    assert agreement.main(args) == 0 and "up to date, skipped" in capsys.readouterr().out


def test_agreement_with_a_remote_pairwise_judge_and_failures(tiny_counselchat, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COUNSEL_AGREE_KEY", "sk-agree")
    with FakeOpenAIServer(latency=0.001) as server:
        base = _agreement_args(tmp_path, tiny_counselchat, "judge=openai_compatible",
                               f"judge.base_url={server.base_url}", "judge.api_key_env=COUNSEL_AGREE_KEY",
                               "judge.retry_wait=0.001", "judge.max_retries=1")
        assert agreement.main([*base, "agreement.mode=pairwise"]) == 0
        assert server.requests == 2 * 6  # both orders of every pair
        report = json.loads((tmp_path / "a" / "agreement" / "agreement.json").read_text())
        assert report["n_pairs"] == 6 and report["per_principle"] == {}

        server.always["Counselor reply:"] = "500"  # every pointwise request fails: an error, not a report
        assert agreement.main([*base, "run=b"]) == 2
    assert not (tmp_path / "b" / "agreement" / "manifest.json").exists()
    assert "the judge failed on" in capsys.readouterr().err
