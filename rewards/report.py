"""Run reports: headline metrics, a markdown page and PNG plots, readable offline."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rewards.artifacts import atomic_write_bytes  # noqa: E402


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


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def _agreement(metrics: dict) -> str:
    ci = metrics.get("judge_agreement_ci")
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return f"{_fmt(metrics.get('judge_agreement'))}{interval}"


def render_markdown(run: str, metrics: dict, extra: dict) -> str:
    """The report page; ``extra`` holds per-principle means, length stats and examples."""
    rows = [
        ("prompts (train / test)", f"{extra['n_train_prompts']} / {extra['n_test_prompts']}"),
        ("candidate responses", metrics["n_candidates"]),
        ("judged responses", metrics["n_judged"]),
        ("pairs after margin and safety veto (train / test)", f"{extra['train_pairs']} / {extra['test_pairs']}"),
        ("dropped as ties / vetoed", f"{extra['ties']} / {extra['vetoed']}"),
        ("reward model held-out accuracy", _fmt(metrics["rm_accuracy"])),
        ("length-only baseline on the same pairs", _fmt(metrics["rm_length_baseline"])),
        ("mean reward: base", _fmt(metrics["base_score"])),
        ("mean reward: DPO", _fmt(metrics["dpo_score"])),
        ("judged win rate of DPO over base (both orders, ties = ½)", _fmt(metrics["win_rate"])),
        ("wins / ties / losses", f"{extra['wins']} / {extra['ties_eval']} / {extra['losses']}"),
        ("judge agreement with people [95% CI by question]", _agreement(metrics)),
        ("length-only baseline on the same human pairs", _fmt(metrics.get("judge_length_baseline"))),
        ("position consistency of pairwise judging", _fmt(metrics.get("position_consistency"))),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    principles = "\n".join(
        f"| {pid} | {_fmt(extra['base_principles'][pid])} | {_fmt(extra['dpo_principles'][pid])} |"
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
The quickstart uses a 135M-parameter model as generator, judge, reward model and policy, on a few dozen
prompts. It demonstrates the method end to end; its judge is weak and its test set is small, so the
figures above are not evidence about counseling quality. Point `model=` and `judge=` at larger models
for meaningful results.
"""
