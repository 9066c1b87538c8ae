"""The release gate: red-flag pass rates of the base and trained policy, and whether the checkpoint may ship.

A checkpoint is held back (``release: false``) when its pass rate falls below the base model's minus a tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from itertools import zip_longest

from rewards.safety import CATEGORIES, RedFlagScenario, SafetyResult, pass_rates, score_reply

GATE_MODES = ("warn", "strict", "off")


def select_scenarios(scenarios: Sequence[RedFlagScenario], limit: int | None) -> list[RedFlagScenario]:
    """``limit`` scenarios taken in turn from each category (by id), so a small subset still covers them all."""
    if not limit or limit >= len(scenarios):
        return list(scenarios)
    by_category: dict[str, list[RedFlagScenario]] = {}
    for scenario in sorted(scenarios, key=lambda s: s.id):
        by_category.setdefault(scenario.category, []).append(scenario)
    order = [c for c in CATEGORIES if c in by_category] + sorted(set(by_category) - set(CATEGORIES))
    interleaved = [s for group in zip_longest(*(by_category[c] for c in order)) for s in group if s is not None]
    return interleaved[:limit]


def score_suite(scenarios: Sequence[RedFlagScenario], replies: Sequence[str], harm_scores: Sequence[float] | None,
                harm_threshold: float | None) -> tuple[list[SafetyResult], dict]:
    """Every reply checked by rule and by the judge's harm score; results and pass rates.

    With ``harm_threshold`` None (or no harm scores) only the rule checks decide; harm scores are still recorded.
    """
    use_judge = harm_scores is not None and harm_threshold is not None
    harms: Sequence[float | None] = harm_scores if use_judge else [None] * len(scenarios)
    threshold = harm_threshold if harm_threshold is not None else 0.0
    results = [score_reply(s, r, h, threshold) for s, r, h in zip(scenarios, replies, harms, strict=True)]
    summary = pass_rates(results)
    summary["rules_only_pass_rate"] = pass_rates([score_reply(s, r) for s, r in zip(scenarios, replies,
                                                                                     strict=True)])["pass_rate"]
    return results, summary


def release_decision(base_pass_rate: float, trained_pass_rate: float, tolerance: float) -> dict:
    """``release`` is false when the trained pass rate is below the base pass rate minus ``tolerance``."""
    threshold = base_pass_rate - tolerance
    release = trained_pass_rate >= threshold - 1e-12
    comparison = ">=" if release else "<"
    return {
        "release": release,
        "base_pass_rate": round(base_pass_rate, 4),
        "trained_pass_rate": round(trained_pass_rate, 4),
        "tolerance": tolerance,
        "reason": (f"red-flag pass rate trained {trained_pass_rate:.3f} {comparison} base {base_pass_rate:.3f} "
                   f"- tolerance {tolerance:.3f}"),
    }


def gate_line(decision: dict) -> str:
    """One line for the console and for exit messages."""
    verdict = "release" if decision["release"] else "do NOT release"
    return f"release gate: {verdict} ({decision['reason']})"


def result_rows(scenarios: Sequence[RedFlagScenario], replies: dict[str, Sequence[str]],
                results: dict[str, Sequence[SafetyResult]], harms: dict[str, Sequence[float] | None]) -> list[dict]:
    """One row per scenario with each policy's reply, failures and harm score, for redflags.jsonl."""
    rows = []
    for index, scenario in enumerate(scenarios):
        row = {"id": scenario.id, "category": scenario.category, "message": scenario.message}
        for name in replies:
            result = asdict(results[name][index])
            row[name] = {"reply": replies[name][index], "passed": result["passed"], "failures": result["failures"],
                         "harm_score": None if harms[name] is None else harms[name][index]}
        rows.append(row)
    return rows
