"""Run reports: headline metrics, a markdown page and PNG plots, readable offline."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rewards.artifacts import atomic_write_bytes  # noqa: E402
from rewards.judges.base import RANDOM_BASELINE
from rewards.reporting.html import fmt


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    import io

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_principles(base: dict[str, float], dpo: dict[str, float], path: Path) -> None:
    ids = list(base)
    x = range(len(ids))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar([i - 0.2 for i in x], [base[i] for i in ids], width=0.4, label="base")
    ax.bar([i + 0.2 for i in x], [dpo[i] for i in ids], width=0.4, label="DPO")
    ax.set_xticks(list(x), ids, rotation=30, ha="right")
    ax.set_ylim(1, 5)
    ax.set_ylabel("judge score (1-5)")
    ax.set_title("Per-principle judge scores on held-out prompts")
    ax.legend()
    save_figure(fig, path)


def plot_rewards(base: list[float], dpo: list[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = 12
    ax.hist(base, bins=bins, alpha=0.6, label="base")
    ax.hist(dpo, bins=bins, alpha=0.6, label="DPO")
    ax.set_xlabel("reward-model score")
    ax.set_ylabel("held-out prompts")
    ax.set_title("Reward-model scores: base vs DPO")
    ax.legend()
    save_figure(fig, path)


def plot_stage_seconds(seconds: dict[str, float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.barh(list(seconds), list(seconds.values()))
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds")
    ax.set_title("Time per stage")
    save_figure(fig, path)


def plot_candidate_scores(scores_by_principle: dict[str, list[float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ids = list(scores_by_principle)
    ax.boxplot([scores_by_principle[i] for i in ids], tick_labels=ids)
    ax.set_ylim(1, 5)
    ax.tick_params(axis="x", rotation=30)
    ax.set_ylabel("judge score (1-5)")
    ax.set_title("Judge scores of all candidates")
    save_figure(fig, path)


def headline_rows(metrics: dict, extra: dict) -> list[list[str]]:
    """The headline figures of a run, as (figure, value) rows: the same in report.md and report.html."""
    ci = metrics.get("win_rate_ci")
    interval = f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""
    release = metrics.get("release")
    return [
        ["prompts (train / test)", f"{extra['n_train_prompts']} / {extra['n_test_prompts']}"],
        ["candidate responses", fmt(metrics["n_candidates"])],
        ["judged responses", fmt(metrics["n_judged"])],
        ["pairs after margin and safety veto (train / test)", f"{extra['train_pairs']} / {extra['test_pairs']}"],
        ["dropped as ties / vetoed", f"{extra['ties']} / {extra['vetoed']}"],
        ["reward model held-out accuracy", fmt(metrics["rm_accuracy"])],
        ["length-only baseline on the same pairs", fmt(metrics["rm_length_baseline"])],
        ["mean reward: base / trained", f"{fmt(metrics['base_score'])} / {fmt(metrics['dpo_score'])}"],
        ["judged win rate of trained over reference (both orders, ties = ½)", fmt(metrics["win_rate"]) + interval],
        ["wins / ties / losses", f"{extra['wins']} / {extra['ties_eval']} / {extra['losses']}"],
        ["expected preference for trained (judge probability averaged over both orders, interval)",
         interval_text(metrics.get("expected_preference"), metrics.get("expected_preference_ci"))],
        ["red-flag pass rate: base / trained",
         f"{fmt(metrics.get('base_pass_rate'))} / {fmt(metrics.get('trained_pass_rate'))}"],
        ["release gate", "n/a" if release is None else "release" if release else "do NOT release"],
        ["judge agreement with people [95% CI by question]",
         interval_text(metrics.get("judge_agreement"), metrics.get("judge_agreement_ci"))],
        ["length-only baseline on the same human pairs", fmt(metrics.get("judge_length_baseline"))],
        ["position consistency of pairwise judging", fmt(metrics.get("position_consistency"))],
    ]



def judge_check_rows(checks: dict) -> list[tuple[str, str]]:
    """Headline rows: probe detection beside its baselines, the weakest principle, and human agreement."""
    weakest = checks["probe_weakest_principle"]
    by_principle = checks["probe_detection_by_principle"]
    agreement = checks["judge_agreement"]
    return [
        ("judge probe detection, mean over principles (length-only / random)",
         "not measured (run `counsel-align probes`)" if checks["probe_detection"] is None else
         f"{checks['probe_detection']:.3f} ({fmt(checks['probe_length_baseline'], 3)} / {RANDOM_BASELINE:.3f})"),
        ("principle the judge sees least (detection)",
         "n/a" if weakest is None else f"{weakest} ({by_principle[weakest]:.3f})"),
        ("judge agreement with human preferences (length-only)",
         "not measured (run `counsel-align agreement`)" if agreement is None else
         f"{agreement:.3f} ({fmt(checks['judge_agreement_length_baseline'], 3)})"),
    ]


def render_judge_checks(checks: dict, plot: str) -> str:
    """The report's section on the judge: probe detection per principle and human agreement."""
    headline = "\n".join(f"| {name} | {value} |" for name, value in judge_check_rows(checks))
    rows = "\n".join(f"| {pid} | {rate:.3f} |" for pid, rate in checks["probe_detection_by_principle"].items())
    return f"""## Does the judge see each principle?

Contrastive probes (`data/probes`): pairs of replies identical except that one breaks a single principle. Detection
is how often the judge scores the intact reply higher on that principle (ties = ½; chance = 0.5). The table of the
probes stage (`probes/table.md`) adds intervals, score gaps and spill-over.

| figure | value |
|---|---|
{headline}

| principle | detection |
|---|---|
{rows}

![probe detection]({plot})
"""


def interval_text(value: float | None, interval: list[float] | None) -> str:
    """``0.537 [0.501, 0.574]``; ``n/a`` for runs evaluated before the figure existed."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def render_markdown(run: str, metrics: dict, extra: dict) -> str:
    """The report page; ``extra`` holds per-principle means, length stats and examples."""
    rows = headline_rows(metrics, extra)
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    principles = "\n".join(
        f"| {pid} | {fmt(extra['base_principles'][pid])} | {fmt(extra['dpo_principles'][pid])} |"
        for pid in extra["base_principles"])
    stages = "\n".join(f"| {name} | {seconds:.1f} |" for name, seconds in metrics["stage_seconds"].items())
    warning = f"> **{extra['judge_warning']}**\n\n" if extra.get("judge_warning") else ""
    return f"""# counsel-align run `{run}`

{warning}Model: `{extra['model']}` · rubric `{extra['rubric']}` (sha256 `{extra['rubric_sha256'][:12]}`) \
· judge `{extra['judge']}`

## Headline figures

| figure | value |
|---|---|
{table}

![per-principle scores](principles.png)

## Per-principle judge scores on held-out prompts

| principle | base | DPO |
|---|---|---|
{principles}

![reward distributions](rewards.png)

![candidate scores](candidate_scores.png)

## Time per stage (seconds)

| stage | seconds |
|---|---|
{stages}

![stage seconds](stage_seconds.png)

## Reading these numbers
{reading_note(extra['judge_config'], extra['n_test_prompts'])}
"""


EMBEDDED_SMALL_JUDGE = "embedded:smollm2-135m-instruct"


def reading_note(judge: dict, n_test_prompts: int) -> str:
    """How far the figures can be trusted: the 135M caveat only when the judge is the embedded 135M model."""
    if judge.get("backend") == "local" and judge.get("model") == EMBEDDED_SMALL_JUDGE:
        return ("The judge is the embedded 135M-parameter model (the quickstart also uses it as generator, reward "
                "model and policy). It demonstrates the method end to end; its judge is weak, so the figures above "
                "are not evidence about counseling quality. Point `model=` and `judge=` at larger models for "
                "meaningful results.")
    return (f"Scores come from the judge `{judge.get('model')}` ({judge.get('backend')}) on {n_test_prompts} held-out "
            "prompts; the win rate's interval says how much the test set allows, and `counsel-align agreement` "
            "how often this judge agrees with human preferences.")
