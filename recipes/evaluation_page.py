"""Evaluation sections of a report page (plots + tables), shared by the report stage and checkpoint evaluation."""

from __future__ import annotations

import json
from pathlib import Path

from rewards.artifacts import atomic_write_text, read_jsonl
from rewards.evaluation.plots import plot_safety, plot_training_curves, plot_win_rates
from rewards.reporting.html import Section, render_html, render_sections_markdown
from rewards.reporting.report import plot_principles, plot_rewards

TRAINED_STAGES = ("reward", "dpo")


def load_histories(run_dir: Path) -> dict[str, list[dict]]:
    """The trainer log history of each training stage: log_history.json, else the last trainer_state.json."""
    histories: dict[str, list[dict]] = {}
    for stage in TRAINED_STAGES:
        saved = run_dir / stage / "log_history.json"
        states = sorted((run_dir / stage / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                        key=lambda p: int(p.parent.name.split("-")[-1]))
        if saved.exists():
            histories[stage] = json.loads(saved.read_text())
        elif states:
            histories[stage] = json.loads(states[-1].read_text()).get("log_history", [])
    return histories


def _overall(metrics: dict) -> dict:
    low, high = metrics.get("win_rate_ci", [float("nan"), float("nan")])
    return {"win_rate": metrics["win_rate"], "ci_low": low, "ci_high": high, "wins": metrics["wins"],
            "ties": metrics["ties"], "losses": metrics["losses"], "confidence": metrics.get("confidence", 0.95)}


def evaluation_sections(folder: Path, metrics: dict, rows: list[dict], histories: dict[str, list[dict]],
                        with_principle_plot: bool = True) -> list[Section]:
    """Draw the evaluation plots into ``folder`` and describe them as report sections."""
    sections: list[Section] = []
    overall = _overall(metrics)
    plot_win_rates(overall, metrics.get("principle_win_rates", {}), folder / "win_rates.png")
    sections.append(Section(
        "Win rate against the reference",
        f"Reference: {metrics.get('reference', 'base')}. Judged in both orders; a win needs both orders to agree, "
        "anything else is a tie (½). Interval: seeded prompt-level bootstrap. Per-principle rates compare the "
        "judge's scores of the two replies on each principle.",
        ["principle", "win rate", "interval", "wins / ties / losses"],
        [["overall (pairwise)", overall["win_rate"], f"[{overall['ci_low']:.3f}, {overall['ci_high']:.3f}]",
          f"{overall['wins']} / {overall['ties']} / {overall['losses']}"]]
        + ([["expected preference (judge probability, both orders averaged)", metrics["expected_preference"],
             "[{:.3f}, {:.3f}]".format(*metrics["expected_preference_ci"]), "-"]]
           if metrics.get("expected_preference") is not None else [])
        + [[pid, v["win_rate"], f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]", f"{v['wins']} / {v['ties']} / "
            f"{v['losses']}"] for pid, v in metrics.get("principle_win_rates", {}).items()],
        [("win_rates.png", "win rate with bootstrap interval, overall and per principle")]))
    if with_principle_plot and metrics.get("base_principles"):
        plot_principles(metrics["base_principles"], metrics["dpo_principles"], folder / "principles.png")
    sections.append(Section(
        "Per-principle judge scores (held-out prompts)", "",
        ["principle", "base", "trained"],
        [[pid, metrics["base_principles"][pid], metrics["dpo_principles"][pid]] for pid in metrics["base_principles"]],
        [("principles.png", "per-principle judge scores, base vs trained")]))
    rewarded = [r for r in rows if r.get("base_reward") is not None]
    if rewarded:
        plot_rewards([r["base_reward"] for r in rewarded], [r["dpo_reward"] for r in rewarded],
                     folder / "rewards.png")
        sections.append(Section("Reward-model scores", "", ["policy", "mean reward"],
                                [["base", metrics["base_score"]], ["trained", metrics["dpo_score"]]],
                                [("rewards.png", "reward distributions, base vs trained")]))
    safety = metrics["safety"]
    gate = safety["gate"]
    plot_safety(safety["base"], safety["trained"], gate, folder / "safety.png")
    categories = sorted(set(safety["base"]["by_category"]) | set(safety["trained"]["by_category"]))
    sections.append(Section(
        "Red-flag safety suite and release gate",
        f"Decision: {'RELEASE' if gate['release'] else 'DO NOT RELEASE'} — {gate['reason']}. "
        f"{safety['n_scenarios']} scenarios; a reply fails on any rule check"
        + (f" or a judge harm-avoidance score below {safety['harm_threshold']}" if safety["harm_threshold"] is not None
           else " (judge harm scores recorded in redflags.jsonl but not used: evaluate.harm_threshold is null)")
        + f". Rule checks alone: base {safety['base'].get('rules_only_pass_rate'):.3f}, "
        f"trained {safety['trained'].get('rules_only_pass_rate'):.3f}.",
        ["category", "base", "trained"],
        [[c, _cell(safety["base"], c), _cell(safety["trained"], c)] for c in categories]
        + [["overall", f"{safety['base']['pass_rate']:.3f}", f"{safety['trained']['pass_rate']:.3f}"]],
        [("safety.png", "red-flag pass rate by category")]))
    if plot_training_curves(histories, folder / "training_curves.png"):
        sections.append(Section("Training curves", "Loss per logged step of the reward-model and DPO trainers.",
                                images=[("training_curves.png", "training curves")]))
    return sections


def _cell(summary: dict, category: str) -> str:
    entry = summary["by_category"].get(category)
    return "n/a" if entry is None else f"{entry['pass_rate']:.2f} ({entry['passed']}/{entry['total']})"


def write_evaluation_page(run: str, folder: Path, metrics: dict) -> None:
    """report.html and report.md for an evaluation without a full run (e.g. a pulled checkpoint)."""
    rows = read_jsonl(folder / "eval.jsonl")
    sections = evaluation_sections(folder, metrics, rows, {})
    title = f"counsel-align evaluation `{run}`"
    subtitle = f"checkpoint {metrics['checkpoint']} · judge {metrics['judge'].get('backend')}"
    atomic_write_text(folder / "report.html", render_html(title, subtitle, sections, folder))
    atomic_write_text(folder / "report.md", f"# {title}\n\n{subtitle}\n\n" + render_sections_markdown(sections))
