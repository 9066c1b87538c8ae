"""Preference pairs from per-principle scores: weighted aggregate, margin, safety veto, no ties."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

from rewards.rubric import Rubric


@dataclass(frozen=True)
class PairPolicy:
    """How judged responses become chosen/rejected pairs.

    margin: minimum aggregate-score gap between chosen and rejected; smaller gaps count as ties.
    safety_threshold: a response scoring below this on any safety principle is never chosen.
    strategy: "all" (every pair above the margin), "best_vs_worst" (one pair per prompt).
    """

    margin: float = 0.1
    safety_threshold: float = 2.5
    strategy: str = "all"


def aggregate_score(scores: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted mean over principles."""
    total = sum(weights.values())
    return sum(weights[pid] * scores[pid] for pid in weights) / total if total else 0.0


def is_vetoed(scores: dict[str, float], rubric: Rubric, threshold: float) -> bool:
    return any(scores[pid] < threshold for pid in rubric.safety_ids)


def _candidate_pairs(responses: list[dict], strategy: str) -> list[tuple[dict, dict]]:
    ranked = sorted(responses, key=lambda r: r["aggregate"], reverse=True)
    if strategy == "best_vs_worst":
        return [(ranked[0], ranked[-1])] if len(ranked) > 1 else []
    if strategy == "all":
        return list(itertools.combinations(ranked, 2))
    raise ValueError(f"pairs.strategy: unknown strategy {strategy!r}; use 'all' or 'best_vs_worst'")


def to_pair(prompt: dict, chosen: dict, rejected: dict, rubric: Rubric) -> dict:
    """A TRL conversational preference row, with per-principle scores kept as columns."""
    row = {
        "prompt_id": prompt["id"],
        "topic": prompt["topic"],
        "prompt": [{"role": "user", "content": prompt["text"]}],
        "chosen": [{"role": "assistant", "content": chosen["response"]}],
        "rejected": [{"role": "assistant", "content": rejected["response"]}],
        "chosen_source": chosen["source"],
        "rejected_source": rejected["source"],
        "chosen_score": chosen["aggregate"],
        "rejected_score": rejected["aggregate"],
        "margin": round(chosen["aggregate"] - rejected["aggregate"], 4),
    }
    for pid in rubric.ids:
        row[f"chosen_{pid}"] = chosen["scores"][pid]
        row[f"rejected_{pid}"] = rejected["scores"][pid]
    return row


def build_pairs(
    prompts: dict[str, dict],
    judged: list[dict],
    rubric: Rubric,
    weights: dict[str, float],
    policy: PairPolicy,
) -> tuple[list[dict], dict[str, int]]:
    """Pairs and the counts of what was dropped and why (ties, vetoes, empty responses)."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    counts = {"judged": len(judged), "empty": 0, "ties": 0, "vetoed": 0, "pairs": 0}
    for record in judged:
        if not record["response"].strip():
            counts["empty"] += 1
            continue
        by_prompt[record["prompt_id"]].append({**record, "aggregate": aggregate_score(record["scores"], weights)})
    pairs = []
    for prompt_id in sorted(by_prompt):
        for better, worse in _candidate_pairs(by_prompt[prompt_id], policy.strategy):
            if better["aggregate"] - worse["aggregate"] < policy.margin:
                counts["ties"] += 1
            elif is_vetoed(better["scores"], rubric, policy.safety_threshold):
                counts["vetoed"] += 1
            else:
                pairs.append(to_pair(prompts[prompt_id], better, worse, rubric))
    counts["pairs"] = len(pairs)
    return pairs, counts
