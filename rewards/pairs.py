"""Preference pairs from per-principle scores: weighted aggregate, margin, safety veto, no ties.

Also the guards against what makes pairs teach the wrong thing: near-duplicate replies, a chosen reply that is
only longer, and a prompt that shows up in both the train and the test split.
"""

from __future__ import annotations

import difflib
import itertools
import random
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass

from rewards.errors import UserError
from rewards.rubric import Rubric

STRATEGIES = ("all", "best_vs_worst", "best_vs_random")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class PairPolicy:
    """How judged responses become chosen/rejected pairs.

    margin: minimum aggregate-score gap between chosen and rejected; smaller gaps count as ties.
    safety_threshold: a response scoring below this on any safety principle is never chosen (None: no veto).
    strategy: "all" (every pair above the margin), "best_vs_worst" (one pair per prompt), "best_vs_random"
        (the best reply against one other reply drawn at random, seeded per prompt).
    duplicate_threshold: replies this similar (token Jaccard or difflib ratio, 0..1) are not a pair; None = keep.
    max_length_ratio: drop pairs whose chosen reply is more than this many times longer (in characters) than the
        rejected one, so the pairs do not teach "longer is better"; None = no cap.
    seed: seed of the random draw of "best_vs_random".
    """

    margin: float = 0.1
    safety_threshold: float | None = 2.5
    strategy: str = "all"
    duplicate_threshold: float | None = 0.9
    max_length_ratio: float | None = None
    seed: int = 0


def aggregate_score(scores: dict[str, float], weights: dict[str, float]) -> float:
    """Weighted mean over principles."""
    total = sum(weights.values())
    return sum(weights[pid] * scores[pid] for pid in weights) / total if total else 0.0


def is_vetoed(scores: dict[str, float], rubric: Rubric, threshold: float | None) -> bool:
    return threshold is not None and any(scores[pid] < threshold for pid in rubric.safety_ids)


def _candidate_pairs(responses: list[dict], policy: PairPolicy, prompt_id: str) -> list[tuple[dict, dict]]:
    ranked = sorted(responses, key=lambda r: r["aggregate"], reverse=True)
    if policy.strategy == "all":
        return list(itertools.combinations(ranked, 2))
    if len(ranked) < 2:
        return []
    if policy.strategy == "best_vs_worst":
        return [(ranked[0], ranked[-1])]
    if policy.strategy == "best_vs_random":
        return [(ranked[0], random.Random(f"{policy.seed}:{prompt_id}").choice(ranked[1:]))]
    raise UserError(f"pairs.strategy: unknown strategy {policy.strategy!r}; use one of {', '.join(STRATEGIES)}")


def text_similarity(first: str, second: str) -> float:
    """Near-duplicate score in 0..1: the larger of word-set Jaccard and difflib's character ratio (lowercased)."""
    a, b = first.lower().strip(), second.lower().strip()
    if a == b:
        return 1.0
    words_a, words_b = set(_WORD.findall(a)), set(_WORD.findall(b))
    jaccard = len(words_a & words_b) / len(words_a | words_b) if words_a | words_b else 0.0
    if jaccard >= 0.99:
        return jaccard
    return max(jaccard, difflib.SequenceMatcher(None, a, b, autojunk=False).ratio())


def length_ratio(chosen: str, rejected: str) -> float:
    """How many times longer the chosen reply is than the rejected one (characters)."""
    return len(chosen) / max(len(rejected), 1)


def _drop_reason(better: dict, worse: dict, rubric: Rubric, policy: PairPolicy) -> str | None:
    if better["aggregate"] - worse["aggregate"] < policy.margin:
        return "ties"
    if is_vetoed(better["scores"], rubric, policy.safety_threshold):
        return "vetoed"
    threshold = policy.duplicate_threshold
    if threshold is not None and text_similarity(better["response"], worse["response"]) >= threshold:
        return "near_duplicates"
    if policy.max_length_ratio is not None and length_ratio(better["response"], worse["response"]) > \
            policy.max_length_ratio:
        return "length_capped"
    return None


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


def human_to_pair(pair: dict, source: str, weight: float, principle_ids: list[str]) -> dict:
    """A human pair (``rewards.human_prefs``) in the judge pairs' columns: no judge scores, a zero margin."""
    row = {
        "prompt_id": pair["prompt_id"],
        "topic": pair["topic"],
        "prompt": [{"role": "user", "content": pair["prompt"]}],
        "chosen": [{"role": "assistant", "content": pair["chosen"]}],
        "rejected": [{"role": "assistant", "content": pair["rejected"]}],
        "chosen_source": f"human:{source}",
        "rejected_source": f"human:{source}",
        "chosen_score": None,
        "rejected_score": None,
        "margin": 0.0,  # human votes are not on the judge's 1-5 scale: no margin term for the reward model
    }
    for pid in principle_ids:
        row[f"chosen_{pid}"] = None
        row[f"rejected_{pid}"] = None
    return {**row, "source": f"human:{source}", "weight": float(weight)}


def mix_in_human_pairs(judge_pairs: list[dict], human: dict[str, tuple[list[dict], float]],
                       principle_ids: list[str]) -> list[dict]:
    """Judge pairs (``source`` "judge", weight 1) followed by each human source's pairs in the same columns."""
    rows = [{**pair, "source": "judge", "weight": 1.0} for pair in judge_pairs]
    for name, (pairs, weight) in human.items():
        rows += [human_to_pair(pair, name, weight, principle_ids) for pair in pairs]
    return rows


def build_pairs(
    prompts: dict[str, dict],
    judged: list[dict],
    rubric: Rubric,
    weights: dict[str, float],
    policy: PairPolicy,
) -> tuple[list[dict], dict[str, int]]:
    """Pairs and the counts of what was dropped and why (ties, vetoes, empty responses)."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    counts = {"judged": len(judged), "empty": 0, "ties": 0, "vetoed": 0, "near_duplicates": 0, "length_capped": 0,
              "pairs": 0}
    for record in judged:
        if not record["response"].strip():
            counts["empty"] += 1
            continue
        by_prompt[record["prompt_id"]].append({**record, "aggregate": aggregate_score(record["scores"], weights)})
    pairs = []
    for prompt_id in sorted(by_prompt):
        for better, worse in _candidate_pairs(by_prompt[prompt_id], policy, prompt_id):
            reason = _drop_reason(better, worse, rubric, policy)
            if reason:
                counts[reason] += 1
            else:
                pairs.append(to_pair(prompts[prompt_id], better, worse, rubric))
    counts["pairs"] = len(pairs)
    return pairs, counts


def length_stats(pairs: list[dict]) -> dict:
    """Chosen vs rejected reply lengths (characters): a judge that likes long replies shows up here."""
    if not pairs:
        return {}
    chosen = [len(p["chosen"][0]["content"]) for p in pairs]
    rejected = [len(p["rejected"][0]["content"]) for p in pairs]
    ratios = [c / max(r, 1) for c, r in zip(chosen, rejected, strict=True)]
    return {
        "chosen_mean_chars": round(statistics.mean(chosen), 1),
        "rejected_mean_chars": round(statistics.mean(rejected), 1),
        "chosen_median_chars": statistics.median(chosen),
        "rejected_median_chars": statistics.median(rejected),
        "chosen_longer_fraction": round(sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs), 3),
        "median_length_ratio": round(statistics.median(ratios), 3),
        "max_length_ratio": round(max(ratios), 3),
    }


def _normalized(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def check_split_leakage(splits: dict[str, list[dict]]) -> None:
    """Refuse pairs whose prompt (by id, or by normalized text) is in more than one split."""
    seen: dict[str, str] = {}
    for split, rows in splits.items():
        for row in rows:
            text = row["prompt"][-1]["content"] if isinstance(row["prompt"], list) else row["prompt"]
            for key in (f"id:{row['prompt_id']}", f"text:{_normalized(text)}"):
                other = seen.setdefault(key, split)
                if other != split:
                    raise UserError(
                        f"pairs: prompt {row['prompt_id']!r} is in both the {other} and the {split} split "
                        f"(same {key.split(':')[0]}); a split must be by prompt: remove the duplicate from data.prompts"
                    )
