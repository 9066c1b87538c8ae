"""``counsel-align runs``: a table of the runs under outputs/ with their key metrics and exported checkpoints.

A run that was swept (`counsel-align <stage> -m ...`) holds one folder per sweep point (with ``.hydra/``); each sweep
is shown as its own table (overrides, objective, status, checkpoint), and ``--plot`` draws the objective against each
swept parameter into ``<run>/sweep_<key>.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from recipes.export import CHECKPOINT_DIR
from recipes.stages import stage_order, sweep_objectives
from rewards.artifacts import read_manifest
from rewards.reporting.html import fmt
from rewards.reporting.sweep import format_sweep  # noqa: F401  (the sweep table, printed below)
from rewards.reporting.sweep import plot_sweep as library_plot_sweep
from rewards.reporting.sweep import sweep_points as library_sweep_points

COLUMNS = ("run", "stages", "finished", "rm_acc", "win_rate [CI]", "pass base->trained", "release", "checkpoint")


def run_summary(run_dir: Path) -> dict | None:
    """Key facts of one run folder, or None when no stage has finished there."""
    manifests = {p.parent.name: read_manifest(p.parent) for p in sorted(run_dir.glob("*/manifest.json"))}
    manifests = {name: m for name, m in manifests.items() if m}
    if not manifests:
        return None
    evaluation = manifests.get("evaluate", {}).get("metrics", {})
    ci = evaluation.get("win_rate_ci")
    checkpoint = run_dir / "evaluate" / CHECKPOINT_DIR
    finished = max(m.get("finished_at", "") for m in manifests.values())
    return {
        "run": run_dir.name,
        "stages": [s for s in stage_order() if s in manifests] + sorted(set(manifests) - set(stage_order())),
        "finished_at": finished,
        "rm_accuracy": manifests.get("reward", {}).get("metrics", {}).get("rm_accuracy"),
        "win_rate": evaluation.get("win_rate"),
        "win_rate_ci": ci,
        "base_pass_rate": evaluation.get("base_pass_rate"),
        "trained_pass_rate": evaluation.get("trained_pass_rate"),
        "release": evaluation.get("release"),
        "checkpoint": str(checkpoint) if checkpoint.is_dir() else evaluation.get("checkpoint"),
    }


def sweep_points(run_dir: Path) -> list[dict]:
    """The sweep points below a run folder, each with the objective of its last stage (``rewards.reporting.sweep``)."""
    return library_sweep_points(run_dir, sweep_objectives())


def collect_runs(root: Path) -> list[dict]:
    if not root.is_dir():
        return []
    summaries = []
    for run_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        summary = run_summary(run_dir)
        points = sweep_points(run_dir)
        if summary is None and points:
            summary = {"run": run_dir.name, "stages": [], "finished_at": "", "rm_accuracy": None, "win_rate": None,
                       "win_rate_ci": None, "base_pass_rate": None, "trained_pass_rate": None, "release": None,
                       "checkpoint": None}
        if summary is not None:
            summaries.append({**summary, "sweep": points} if points else summary)
    return summaries


def plot_sweep(run_dir: Path, points: list[dict]) -> list[Path]:
    """The objective against each swept parameter, one PNG per parameter (``<run>/sweep_<key>.png``)."""
    return library_plot_sweep(run_dir.name, points, run_dir)


def _row(s: dict) -> list[str]:
    ci = s["win_rate_ci"]
    win = "-" if s["win_rate"] is None else f"{fmt(s['win_rate'], 2, missing='-')}" + (
        f" [{fmt(ci[0], 2, missing='-')}, {fmt(ci[1], 2, missing='-')}]" if ci else "")
    passes = ("-" if s["base_pass_rate"] is None
              else f"{fmt(s['base_pass_rate'], 2, missing='-')}->{fmt(s['trained_pass_rate'], 2, missing='-')}")
    when = s["finished_at"][:16].replace("T", " ") if s["finished_at"] else "-"
    return [s["run"], str(len(s["stages"])), when, fmt(s["rm_accuracy"], 2, missing='-'), win, passes,
            {True: "yes", False: "NO", None: "-"}[s["release"]], s["checkpoint"] or "-"]


def format_table(summaries: list[dict]) -> str:
    rows = [list(COLUMNS), *(_row(s) for s in summaries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="counsel-align runs", description=__doc__)
    parser.add_argument("--root", default="outputs", help="folder holding the runs (default: outputs)")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON instead of a table")
    parser.add_argument("--plot", action="store_true", help="draw each sweep's objective against its swept "
                        "parameters into <run>/sweep_<key>.png")
    args = parser.parse_args(argv)
    root = Path(args.root)
    summaries = collect_runs(root)
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    if not summaries:
        print(f"counsel-align runs: no runs under {root} (run `counsel-align pipeline run=NAME` first)",
              file=sys.stderr)
        return 0
    print(format_table(summaries))
    for summary in summaries:
        if summary.get("sweep"):
            print("\n" + format_sweep(summary["run"], summary["sweep"]))
            if args.plot:
                for path in plot_sweep(root / summary["run"], summary["sweep"]):
                    print(f"plot: {path}")
    print(f"\n{len(summaries)} run(s) under {root.resolve()} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
