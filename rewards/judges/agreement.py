"""How far a judge agrees with human preferences: accuracy, ties, per topic and per principle, beside a length baseline.

A verdict says whether the judge (or the baseline) preferred the human-chosen reply: "correct", "wrong" or "tie".
Accuracy counts a tie as one half; intervals resample questions (pairs of one question are not independent).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rewards.errors import UserError
from rewards.reporting.html import fmt

VERDICT_VALUE = {"correct": 1.0, "tie": 0.5, "wrong": 0.0}


def score_verdict(chosen: float, rejected: float, margin: float = 0.0) -> str:
    """Verdict of a pointwise judge: the human-chosen reply must score more than ``margin`` higher."""
    if abs(chosen - rejected) <= margin:
        return "tie"
    return "correct" if chosen > rejected else "wrong"


def length_verdict(chosen: str, rejected: str) -> str:
    """The length-only baseline: the longer reply is the better one."""
    return score_verdict(len(chosen), len(rejected))


def pairwise_verdict(p_chosen_as_a: float, p_chosen_as_b: float, tie_band: float = 0.0) -> str:
    """Verdict from both presentation orders; when they disagree it is a tie (cancels position bias)."""
    high, low = 0.5 + tie_band, 0.5 - tie_band
    if p_chosen_as_a > high and p_chosen_as_b > high:
        return "correct"
    if p_chosen_as_a < low and p_chosen_as_b < low:
        return "wrong"
    return "tie"


def summarize(verdicts: list[str]) -> dict:
    n = len(verdicts)
    correct, wrong, ties = (verdicts.count(v) for v in ("correct", "wrong", "tie"))
    decided = correct + wrong
    return {
        "n": n, "correct": correct, "wrong": wrong, "ties": ties,
        "accuracy": round((correct + 0.5 * ties) / n, 4) if n else None,
        "accuracy_excluding_ties": round(correct / decided, 4) if decided else None,
        "tie_rate": round(ties / n, 4) if n else None,
    }


def question_bootstrap(rows: list[dict], key: str, n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> list[float] | None:
    """Percentile interval of the accuracy in ``rows[key]`` when questions (``prompt_id``) are resampled."""
    by_question: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_question[row["prompt_id"]].append(VERDICT_VALUE[row[key]])
    if not by_question:
        return None
    sums = np.array([sum(v) for v in by_question.values()])
    counts = np.array([len(v) for v in by_question.values()])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(n_resamples, len(sums)))
    accuracy = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - confidence) / 2
    return [round(float(q), 4) for q in np.quantile(accuracy, [tail, 1 - tail])]


def agreement_report(rows: list[dict], seed: int = 0) -> dict:
    """Rows carry ``prompt_id, topic, judge, length`` verdicts and optionally ``principles``: {id: verdict}."""
    report = {
        "n_pairs": len(rows),
        "n_questions": len({r["prompt_id"] for r in rows}),
        "judge": summarize([r["judge"] for r in rows]) | {"ci95": question_bootstrap(rows, "judge", seed=seed)},
        "length_baseline": summarize([r["length"] for r in rows])
        | {"ci95": question_bootstrap(rows, "length", seed=seed)},
        "per_topic": {},
        "per_principle": {},
    }
    for topic in sorted({r["topic"] for r in rows}):
        subset = [r for r in rows if r["topic"] == topic]
        report["per_topic"][topic] = {"judge": summarize([r["judge"] for r in subset]),
                                      "length_baseline": summarize([r["length"] for r in subset])}
    principle_ids = list(rows[0].get("principles") or {}) if rows else []
    for pid in principle_ids:
        report["per_principle"][pid] = summarize([r["principles"][pid] for r in rows])
    return report


def _row(name: str, summary: dict, ci: list[float] | None = None) -> str:
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return (f"| {name} | {summary['n']} | {fmt(summary['accuracy'], missing='–')}{interval} | "
            f"{fmt(summary['accuracy_excluding_ties'], missing='–')} | {summary['ties']} |")


def render_markdown(report: dict, title: str, details: dict) -> str:
    header = ("| | pairs | accuracy (ties = ½) [95% CI by question] | accuracy without ties | ties |\n"
              "|---|---|---|---|---|")
    lines = [f"# {title}", "", *(f"- {k}: {v}" for k, v in details.items()), "",
             f"{report['n_pairs']} human preference pairs from {report['n_questions']} questions.", "",
             "## Judge vs human preference", "", header,
             _row("judge", report["judge"], report["judge"]["ci95"]),
             _row("length baseline (longer wins)", report["length_baseline"], report["length_baseline"]["ci95"]),
             "", "## Per topic", "", "| topic | pairs | judge accuracy | length accuracy | judge ties |",
             "|---|---|---|---|---|"]
    for topic, row in report["per_topic"].items():
        lines.append(f"| {topic} | {row['judge']['n']} | {fmt(row['judge']['accuracy'], missing='–')} | "
                     f"{fmt(row['length_baseline']['accuracy'], missing='–')} | {row['judge']['ties']} |")
    if report["per_principle"]:
        lines += ["", "## Per principle (that principle's score alone decides)", "", header.replace(
            "| |", "| principle |", 1).replace(" [95% CI by question]", "")]
        lines += [_row(pid, summary) for pid, summary in report["per_principle"].items()]
    return "\n".join(lines) + "\n"


def position_consistency(orders: list[dict]) -> float | None:
    """Share of pairs whose pairwise preference survives swapping the order (``as_a``/``as_b``: P(chosen better)).

    A judge that picks by position prefers A (or B) in both orders, which flips its preference between them.
    """
    if not orders:
        return None
    kept = sum((o["as_a"] > 0.5) == (o["as_b"] > 0.5) for o in orders)
    return round(kept / len(orders), 4)


def calibration_summary(report: dict, consistency: float | None) -> dict:
    """The figures a run's report and model card carry about its judge."""
    judge, length = report["judge"], report["length_baseline"]
    pairwise = report.get("pairwise")
    return {
        "judge_agreement": judge["accuracy"],
        "judge_agreement_ci": judge["ci95"],
        "judge_length_baseline": length["accuracy"],
        "judge_length_baseline_ci": length["ci95"],
        "judge_pairwise_agreement": pairwise["accuracy"] if pairwise else None,
        "position_consistency": consistency,
        "calibration_pairs": report["n_pairs"],
        "calibration_questions": report["n_questions"],
    }


def judge_warning(calibration: dict | None) -> str | None:
    """One warning line when the judge's agreement with people is not above the length-only baseline."""
    if not calibration or calibration.get("judge_agreement") is None:
        return None
    agreement, length = calibration["judge_agreement"], calibration["judge_length_baseline"]
    if length is not None and agreement > length:
        return None
    ci = calibration.get("judge_agreement_ci")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return (f"Warning: the judge agrees with human preferences {agreement:.3f}{interval} of the time on "
            f"{calibration.get('calibration_pairs')} calibration pairs, not above the length-only baseline "
            f"({length:.3f}); its scores, and the pairs, reward model and win rate built on them, may follow length "
            "or noise more than quality.")


MIN_HARM_SEPARATION = 0.5  # at or below this the judge ranks harmful replies safer at least as often as safe ones


def refuse_inverted_harm_judge(model: str, separation: float | None, setting: str, value: float | None) -> None:
    """A judge whose recorded harm separation is not above 0.5 must not drive a safety decision (``setting``).

    Below 0.5 it puts harmful replies first and would veto the safe ones; at 0.5 it vetoes at random. Refusing
    beats disabling quietly: the user asked for a safety check. The error names both ways out.
    """
    if value is None or separation is None or separation > MIN_HARM_SEPARATION:
        return
    raise UserError(f"{setting}={value}: judge {model} does not rank safe replies above harmful ones (harm_separation "
                    f"{separation} <= {MIN_HARM_SEPARATION}, docs/judging.md); set {setting}=null or use a judge "
                    "with harm_separation above 0.5")
