"""Evaluation plots: win rate with its interval, per-principle win rates, safety by category, training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rewards.reporting.report import save_figure  # noqa: E402


def plot_win_rates(overall: dict, per_principle: dict[str, dict], path: Path) -> None:
    """Overall and per-principle win rates with their bootstrap intervals; 0.5 is parity."""
    names = ["overall (pairwise)", *per_principle]
    rates = [overall["win_rate"], *(v["win_rate"] for v in per_principle.values())]
    lows = [overall["ci_low"], *(v["ci_low"] for v in per_principle.values())]
    highs = [overall["ci_high"], *(v["ci_high"] for v in per_principle.values())]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4))
    y = list(range(len(names)))
    errors = [[max(0.0, r - lo) for r, lo in zip(rates, lows, strict=True)],
              [max(0.0, hi - r) for r, hi in zip(rates, highs, strict=True)]]
    colors = ["tab:purple"] + ["tab:blue"] * (len(names) - 1)
    ax.errorbar(rates, y, xerr=errors, fmt="none", ecolor="gray", capsize=4)
    ax.scatter(rates, y, c=colors, zorder=3)
    ax.axvline(0.5, color="black", linestyle="--", linewidth=0.8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"win rate of trained over reference (ties = ½), {overall['confidence']:.0%} bootstrap interval")
    ax.set_title(f"Win rate: {overall['win_rate']:.2f} [{overall['ci_low']:.2f}, {overall['ci_high']:.2f}] "
                 f"({overall['wins']}W / {overall['ties']}T / {overall['losses']}L)")
    save_figure(fig, path)


def plot_safety(base: dict, trained: dict, gate: dict, path: Path) -> None:
    """Red-flag pass rate per category, base vs trained, with the overall rates and the gate's decision."""
    categories = sorted(set(base["by_category"]) | set(trained["by_category"]))
    x = range(len(categories))

    def rates(summary: dict) -> list[float]:
        return [summary["by_category"].get(c, {}).get("pass_rate", 0.0) for c in categories]

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar([i - 0.2 for i in x], rates(base), width=0.4, label=f"base ({base['pass_rate']:.2f})")
    ax.bar([i + 0.2 for i in x], rates(trained), width=0.4, label=f"trained ({trained['pass_rate']:.2f})")
    ax.set_xticks(list(x), categories, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("pass rate")
    verdict = "release" if gate["release"] else "do NOT release"
    ax.set_title(f"Red-flag suite by category — gate: {verdict} (tolerance {gate['tolerance']})")
    ax.legend()
    save_figure(fig, path)


def plot_training_curves(histories: dict[str, list[dict]], path: Path) -> bool:
    """Training loss per step of each stage (and DPO reward margins when logged); False when nothing was logged."""
    series = {name: [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
              for name, history in histories.items()}
    series = {name: points for name, points in series.items() if points}
    if not series:
        return False
    margins = [(h["step"], h["rewards/margins"]) for h in histories.get("dpo", []) if "rewards/margins" in h]
    fig, axes = plt.subplots(1, 2 if margins else 1, figsize=(10 if margins else 6, 3.6), squeeze=False)
    for name, points in series.items():
        axes[0][0].plot(*zip(*points, strict=True), marker=".", label=name)
    axes[0][0].set_xlabel("step")
    axes[0][0].set_ylabel("training loss")
    axes[0][0].set_title("Training loss")
    axes[0][0].legend()
    if margins:
        axes[0][1].plot(*zip(*margins, strict=True), marker=".", color="tab:green")
        axes[0][1].axhline(0, color="black", linewidth=0.6)
        axes[0][1].set_xlabel("step")
        axes[0][1].set_ylabel("chosen − rejected implicit reward")
        axes[0][1].set_title("DPO reward margin")
    save_figure(fig, path)
    return True
