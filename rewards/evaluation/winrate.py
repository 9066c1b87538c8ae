"""Win rate of a checkpoint against a reference: a seeded prompt-level bootstrap interval and per-principle rates,
and the expected preference (the judge's probability averaged over both orders), which a position-biased judge
does not turn into all ties.

Each held-out prompt contributes one verdict (win, tie or loss; ties count one half), so resampling verdicts
with replacement is resampling prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rewards.artifacts import jsonl_rows
from rewards.errors import UserError

VERDICT_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def bootstrap_interval(values: Sequence[float], n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over ``n_resamples`` resamples of the same size."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan"), float("nan")
    if not 0 < confidence < 1:
        raise UserError(f"evaluate.confidence: {confidence} must lie strictly between 0 and 1, e.g. 0.95")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(max(1, n_resamples), data.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return round(float(low), 4), round(float(high), 4)


def win_rate_with_ci(verdicts: Sequence[str], n_resamples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> dict:
    """Wins, ties, losses, the win rate (ties = ½) and its bootstrap interval."""
    verdicts = list(verdicts)
    unknown = sorted(set(verdicts) - set(VERDICT_VALUE))
    if unknown:
        raise ValueError(f"unknown verdict(s) {unknown}; expected win, tie or loss")
    values = [VERDICT_VALUE[v] for v in verdicts]
    low, high = bootstrap_interval(values, n_resamples, confidence, seed)
    return {
        "win_rate": round(float(np.mean(values)), 4) if values else float("nan"),
        "wins": verdicts.count("win"),
        "ties": verdicts.count("tie"),
        "losses": verdicts.count("loss"),
        "n": len(values),
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
    }


def expected_preference(p_as_a: float, p_as_b: float) -> float:
    """The judge's probability that the candidate is better, averaged over both presentation orders.

    ``p_as_a`` and ``p_as_b`` are P(candidate better) with the candidate shown as reply A and as reply B. A judge
    that always prefers reply A gives 1 and 0 here: a tie in the strict rate, ½ here; a judge that leans towards
    the candidate in both orders, even when one order's lean is below ½, moves this above ½.
    """
    return (p_as_a + p_as_b) / 2


def expected_preference_with_ci(orders: Sequence[tuple[float, float]], n_resamples: int = 1000,
                                confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean expected preference over prompts (one value per prompt, both orders) and its prompt-level interval."""
    values = [expected_preference(a, b) for a, b in orders]
    low, high = bootstrap_interval(values, n_resamples, confidence, seed)
    return {
        "expected_preference": round(float(np.mean(values)), 4) if values else float("nan"),
        "n": len(values),
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
    }


def length_verdict(candidate: str, reference: str) -> str:
    """The length-only baseline's verdict: the longer reply (in characters) wins, equal lengths tie."""
    return score_verdict(float(len(candidate)), float(len(reference)), 0.0)


def length_win_rate_with_ci(candidate: Sequence[str], reference: Sequence[str], n_resamples: int = 1000,
                            confidence: float = 0.95, seed: int = 0) -> dict:
    """How often the candidate's reply is the longer one (ties = ½), with its prompt-level interval: a judged
    preference no higher than this may be a preference for length."""
    if len(candidate) != len(reference):
        raise ValueError(f"{len(candidate)} candidate replies but {len(reference)} reference replies")
    return win_rate_with_ci([length_verdict(c, r) for c, r in zip(candidate, reference, strict=True)],
                            n_resamples, confidence, seed)


def score_verdict(candidate: float, reference: float, margin: float) -> str:
    """A win when the candidate's score exceeds the reference's by more than ``margin``."""
    if candidate - reference > margin:
        return "win"
    if reference - candidate > margin:
        return "loss"
    return "tie"


def per_principle_win_rates(candidate: Sequence[dict[str, float]], reference: Sequence[dict[str, float]],
                            margin: float = 0.05, n_resamples: int = 1000, confidence: float = 0.95,
                            seed: int = 0) -> dict[str, dict]:
    """Per principle, the win rate of the candidate's judge scores over the reference's on the same prompts."""
    if len(candidate) != len(reference):
        raise ValueError(f"{len(candidate)} candidate scores but {len(reference)} reference scores")
    if not candidate:
        return {}
    return {
        pid: win_rate_with_ci([score_verdict(c[pid], r[pid], margin) for c, r in zip(candidate, reference,
                                                                                      strict=True)],
                              n_resamples, confidence, seed)
        for pid in candidate[0]
    }


def load_reference_responses(path: str | Path) -> dict[str, str]:
    """Reference replies from a JSONL file: each line has ``response`` and ``prompt_id`` (or ``prompt`` text).

    Returns a mapping from prompt id and from prompt text to the reply, so either key finds it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: reference file not found; set evaluate.reference to base, a checkpoint folder "
                        "or a JSONL file of reference responses")
    replies: dict[str, str] = {}
    for number, row in jsonl_rows(path):
        if not isinstance(row, dict) or not isinstance(row.get("response"), str):
            raise UserError(f"{path}:{number}: needs a string field 'response' (and 'prompt_id' or 'prompt')")
        keys = [row[k] for k in ("prompt_id", "prompt") if isinstance(row.get(k), str)]
        if not keys:
            raise UserError(f"{path}:{number}: needs a field 'prompt_id' or 'prompt' naming the client message")
        for key in keys:
            replies[key] = row["response"]
    return replies


def match_references(replies: dict[str, str], prompts: Sequence[dict], source: str) -> list[str]:
    """The reference reply of each prompt (by id, else by text); every prompt must have one."""
    missing = [p["id"] for p in prompts if p["id"] not in replies and p["text"] not in replies]
    if missing:
        raise UserError(f"{source}: no reference response for {len(missing)} held-out prompt(s), e.g. "
                        f"{missing[0]!r}; add lines with that prompt_id")
    return [replies.get(p["id"], replies.get(p["text"], "")) for p in prompts]
