"""Tiny human and judged data written by the tests: a CounselChat-shaped CSV and a finished generate + judge."""

from __future__ import annotations

import csv
from pathlib import Path

from rewards.artifacts import atomic_write_json, atomic_write_jsonl, sha256_tree

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


PROMPTS = [
    {"id": "p1", "topic": "grief", "text": "My dog died and the house feels empty.", "split": "train"},
    {"id": "p2", "topic": "work", "text": "My manager shouts at me in meetings.", "split": "train"},
    {"id": "p3", "topic": "sleep", "text": "I wake up at four every night.", "split": "test"},
]


def finish_stage(stage_dir: Path) -> None:
    """Stand in for a finished stage: its files plus a manifest with their hash."""
    atomic_write_json(stage_dir / "manifest.json", {"stage": stage_dir.name, "outputs_sha256": sha256_tree(stage_dir)})


def judged_run(run_dir: Path, rubric) -> None:
    """A finished generate + judge: two scored replies per prompt, the first always better."""
    atomic_write_jsonl(run_dir / "generate" / "prompts.jsonl", PROMPTS)
    finish_stage(run_dir / "generate")
    judged = [{"prompt_id": p["id"], "source": source, "response": f"{source} reply to {p['id']}",
               "scores": {pid: score for pid in rubric.ids}}
              for p in PROMPTS for source, score in (("counselor", 4.5), ("assistant", 2.0))]
    atomic_write_jsonl(run_dir / "judge" / "judged.jsonl", judged)
    finish_stage(run_dir / "judge")
