"""The report's validity figures: each measurement of the run beside its baseline, with its interval.

Judge agreement with people vs length-only (calibrate), reward-model accuracy on held-out human pairs vs length-only
(reward_eval), and the trained policy's judged preference over each reference vs chance (0.5) and vs "the trained
reply is longer" (evaluate). Plain dicts in, metrics.json keys and table rows out.
"""

from __future__ import annotations

from rewards.reporting.html import fmt

# References whose comparison gets named metrics.json keys (others stay under evaluate's metrics.comparisons).
NAMED_REFERENCES = ("sft", "base")


def validity_metrics(calibration: dict, calibration_pairwise: dict | None, rm_counselchat: dict | None,
                     comparisons: dict[str, dict]) -> dict:
    """metrics.json keys for the figures that exist; a reference not compared (or reward_eval not run) adds none.

    ``calibration_pairwise``: the judge's both-orders verdicts on the calibration pairs (calibrate's report), the
    way evaluate judges the trained policy.
    """
    metrics: dict = {key: calibration.get(key) for key in ("judge_agreement", "judge_agreement_ci",
                                                           "judge_length_baseline", "judge_length_baseline_ci",
                                                           "calibration_pairs")}
    if calibration_pairwise:
        metrics |= {"judge_pairwise_agreement": calibration_pairwise["accuracy"],
                    "judge_pairwise_agreement_ci": calibration_pairwise.get("ci95"),
                    "judge_pairwise_tie_rate": calibration_pairwise.get("tie_rate")}
    if rm_counselchat:
        metrics |= {"rm_counselchat_accuracy": rm_counselchat["accuracy"],
                    "rm_counselchat_accuracy_ci": rm_counselchat["ci95_by_question"],
                    "rm_counselchat_length_baseline": rm_counselchat["length_baseline"],
                    "rm_counselchat_pairs": rm_counselchat["pairs"],
                    "rm_counselchat_split": rm_counselchat["split"]}
    return metrics | comparison_metrics(comparisons)


def comparison_metrics(comparisons: dict[str, dict]) -> dict:
    """The named keys (``preference_over_sft``, ``win_rate_over_base_ci``, ...) of evaluate's comparisons with the
    references in NAMED_REFERENCES (metrics.json and the model card)."""
    metrics: dict = {}
    for name in NAMED_REFERENCES:
        got = comparisons.get(name)
        if got is None:
            continue
        metrics |= {f"preference_over_{name}": got["expected_preference"],
                    f"preference_over_{name}_ci": got["expected_preference_ci"],
                    f"win_rate_over_{name}": got["win_rate"],
                    f"win_rate_over_{name}_ci": got["win_rate_ci"],
                    f"length_baseline_over_{name}": got["length_baseline"],
                    f"length_baseline_over_{name}_ci": got.get("length_baseline_ci"),
                    f"prompts_over_{name}": got["n"]}
    return metrics


def _interval(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def validity_rows(metrics: dict) -> list[list[str]]:
    """(figure, value [interval], baseline, n) rows for the figures in ``metrics``."""
    rows = []
    if metrics.get("judge_agreement") is not None:
        rows.append(["judge agreement with people (CounselChat calibration pairs, by question)",
                     _interval(metrics["judge_agreement"], metrics.get("judge_agreement_ci")),
                     "length-only " + _interval(metrics.get("judge_length_baseline"),
                                                metrics.get("judge_length_baseline_ci")),
                     fmt(metrics.get("calibration_pairs"))])
    if metrics.get("judge_pairwise_agreement") is not None:
        rows.append([f"judge pairwise agreement with people (both orders must agree, ties ½; "
                     f"{fmt(metrics.get('judge_pairwise_tie_rate'))} ties)",
                     _interval(metrics["judge_pairwise_agreement"], metrics.get("judge_pairwise_agreement_ci")),
                     "chance 0.500; length-only " + _interval(metrics.get("judge_length_baseline"),
                                                              metrics.get("judge_length_baseline_ci")),
                     fmt(metrics.get("calibration_pairs"))])
    if metrics.get("rm_counselchat_accuracy") is not None:
        rows.append([f"reward-model accuracy on CounselChat {metrics['rm_counselchat_split']} pairs (by question)",
                     _interval(metrics["rm_counselchat_accuracy"], metrics.get("rm_counselchat_accuracy_ci")),
                     f"length-only {fmt(metrics['rm_counselchat_length_baseline'])}",
                     fmt(metrics["rm_counselchat_pairs"])])
    for name in NAMED_REFERENCES:
        if metrics.get(f"preference_over_{name}") is None:
            continue
        length = "length-only " + _interval(metrics[f"length_baseline_over_{name}"],
                                            metrics.get(f"length_baseline_over_{name}_ci"))
        n = fmt(metrics[f"prompts_over_{name}"])
        rows.append([f"trained over {name.upper() if name == 'sft' else name}: expected judged preference",
                     _interval(metrics[f"preference_over_{name}"], metrics[f"preference_over_{name}_ci"]),
                     f"chance 0.500; {length}", n])
        rows.append([f"trained over {name.upper() if name == 'sft' else name}: strict win rate (both orders, ties ½)",
                     _interval(metrics[f"win_rate_over_{name}"], metrics[f"win_rate_over_{name}_ci"]),
                     f"chance 0.500; {length}", n])
    return rows


VALIDITY_NOTE = ("Each figure beside its baseline, with its 95% bootstrap interval. An interval that contains its "
                 "baseline (0.5, or the length-only rate) shows no detectable effect. The preferences of the trained "
                 "policy are the judge's, the same judge whose agreement with people is the first row; the "
                 "length-only baseline of a comparison is how often the trained reply is the longer one.")


def render_validity(metrics: dict) -> str:
    """The report.md section; empty when the run has none of the figures."""
    rows = validity_rows(metrics)
    if not rows:
        return ""
    table = "\n".join(f"| {' | '.join(row)} |" for row in rows)
    return f"""## Validity: each figure beside its baseline

{VALIDITY_NOTE}

| figure | value [95% CI] | baseline | n |
|---|---|---|---|
{table}
"""
