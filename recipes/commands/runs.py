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
from recipes.stages import STAGES, stage_order
from rewards.artifacts import read_manifest
from rewards.reporting.html import fmt

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


def _point_overrides(point_dir: Path) -> dict[str, str]:
    """The swept overrides of a sweep point: its folder is named ``key=value,key=value`` by the CLI."""
    pairs = [item.split("=", 1) for item in point_dir.name.split(",") if "=" in item]
    return {key: value for key, value in pairs}


def sweep_point(point_dir: Path) -> dict:
    """One sweep point: overrides, the objective of the last stage that has one, status and checkpoint."""
    stage_dirs = [d for d in sorted(point_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    manifests = {d.name: read_manifest(d) for d in stage_dirs}
    finished = {name: m for name, m in manifests.items() if m}
    objective, value = None, None
    for name in reversed(stage_order()):
        if name in finished and STAGES[name].objective:
            objective = STAGES[name].objective
            value = finished[name].get("metrics", {}).get(objective)
            break
    status = ("finished" if stage_dirs and len(finished) == len(stage_dirs)
              else "unfinished" if stage_dirs else "not started")
    models = [point_dir / "evaluate" / CHECKPOINT_DIR, *(d / "model" for d in reversed(stage_dirs))]
    checkpoint = next((str(m) for m in models if m.is_dir()), None)
    return {"point": point_dir.name, "overrides": _point_overrides(point_dir), "objective": objective,
            "value": value, "status": status, "checkpoint": checkpoint}


def sweep_points(run_dir: Path) -> list[dict]:
    """The sweep points below a run folder (folders holding Hydra's ``.hydra/overrides.yaml``)."""
    return [sweep_point(d) for d in sorted(run_dir.iterdir())
            if d.is_dir() and (d / ".hydra" / "overrides.yaml").is_file()]


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


SWEEP_COLUMNS = ("point", "overrides", "objective", "status", "checkpoint")


def format_sweep(run: str, points: list[dict]) -> str:
    """One table per sweep; the best finished point is marked with *."""
    scored = [p for p in points if isinstance(p["value"], int | float)]
    best = max(scored, key=lambda p: p["value"])["point"] if scored else None
    rows = [list(SWEEP_COLUMNS)]
    for index, p in enumerate(points):
        objective = "-" if p["value"] is None else f"{p['objective']}={fmt(float(p['value']))}"
        rows.append([f"{index}{'*' if p['point'] == best else ''}",
                     " ".join(f"{k}={v}" for k, v in p["overrides"].items()) or p["point"], objective, p["status"],
                     p["checkpoint"] or "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(SWEEP_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"sweep {run}: {len(points)} point(s), * = best\n" + "\n".join(lines)


def plot_sweep(run_dir: Path, points: list[dict]) -> list[Path]:
    """The objective against each swept parameter, one PNG per parameter (``<run>/sweep_<key>.png``)."""
    from rewards.evaluation.plots import plt

    scored = [p for p in points if isinstance(p["value"], int | float)]
    written = []
    for key in sorted({k for p in scored for k in p["overrides"]}):
        xs = [p["overrides"].get(key) for p in scored]
        try:
            values = [float(x) for x in xs]
        except (TypeError, ValueError):
            values = xs  # a categorical parameter: one tick per value
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.scatter(values, [p["value"] for p in scored])
        ax.set_xlabel(key)
        ax.set_ylabel(scored[0]["objective"])
        if all(isinstance(v, float) for v in values) and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_xscale("log")
        ax.set_title(f"{run_dir.name}: {scored[0]['objective']} by {key}")
        fig.tight_layout()
        path = run_dir / f"sweep_{key.replace('/', '_')}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(path)  # atomic: a reader never sees half a PNG
        written.append(path)
    return written


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
