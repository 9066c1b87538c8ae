"""Sweep results: the points of a Hydra multirun below a run folder, as one table and one plot per swept parameter.

Shared by `counsel-align runs` (text table, ``--plot``) and the report stage (its "Sweep" section). A sweep point is a
folder ``<run>/<key=value,key=value>/`` holding Hydra's ``.hydra/overrides.yaml`` and the stage folders it ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rewards.artifacts import read_manifest
from rewards.reporting.html import fmt

SWEEP_COLUMNS = ("point", "overrides", "objective", "status", "checkpoint")
CHECKPOINT_DIR = "checkpoint"  # the evaluate stage's exported checkpoint (recipes.export.CHECKPOINT_DIR)


def point_overrides(point_dir: Path) -> dict[str, str]:
    """The swept overrides of a sweep point: its folder is named ``key=value,key=value`` by the CLI."""
    pairs = [item.split("=", 1) for item in point_dir.name.split(",") if "=" in item]
    return {key: value for key, value in pairs}


def sweep_point(point_dir: Path, objectives: Sequence[tuple[str, str]]) -> dict:
    """One sweep point: overrides, the objective of the first finished stage in ``objectives`` ((stage, metric),
    latest stage first), status and checkpoint."""
    stage_dirs = [d for d in sorted(point_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    finished = {d.name: m for d in stage_dirs if (m := read_manifest(d))}
    objective, value = None, None
    for stage, metric in objectives:
        if stage in finished:
            objective, value = metric, finished[stage].get("metrics", {}).get(metric)
            break
    status = ("finished" if stage_dirs and len(finished) == len(stage_dirs)
              else "unfinished" if stage_dirs else "not started")
    models = [point_dir / "evaluate" / CHECKPOINT_DIR, *(d / "model" for d in reversed(stage_dirs))]
    checkpoint = next((str(m) for m in models if m.is_dir()), None)
    return {"point": point_dir.name, "overrides": point_overrides(point_dir), "objective": objective,
            "value": value, "status": status, "checkpoint": checkpoint}


def sweep_points(run_dir: Path, objectives: Sequence[tuple[str, str]]) -> list[dict]:
    """The sweep points below a run folder (folders holding Hydra's ``.hydra/overrides.yaml``), by folder name."""
    if not run_dir.is_dir():
        return []
    return [sweep_point(d, objectives) for d in sorted(run_dir.iterdir())
            if d.is_dir() and (d / ".hydra" / "overrides.yaml").is_file()]


def best_point(points: list[dict]) -> str | None:
    """The folder name of the point with the highest objective (every sweeper here maximises), None if none has one."""
    scored = scored_points(points)
    return max(scored, key=lambda p: p["value"])["point"] if scored else None


def scored_points(points: list[dict]) -> list[dict]:
    return [p for p in points if isinstance(p["value"], int | float)]


def sweep_rows(points: list[dict], digits: int = 3) -> list[list[str]]:
    """One row per point (the columns of ``SWEEP_COLUMNS``); the best point's index is marked with ``*``."""
    best = best_point(points)
    rows = []
    for index, p in enumerate(points):
        objective = "-" if p["value"] is None else f"{p['objective']}={fmt(float(p['value']), digits)}"
        rows.append([f"{index}{'*' if p['point'] == best else ''}",
                     " ".join(f"{k}={v}" for k, v in p["overrides"].items()) or p["point"], objective, p["status"],
                     p["checkpoint"] or "-"])
    return rows


def format_sweep(run: str, points: list[dict]) -> str:
    """One text table per sweep; the best finished point is marked with *."""
    rows = [list(SWEEP_COLUMNS), *sweep_rows(points)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(SWEEP_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"sweep {run}: {len(points)} point(s), * = best\n" + "\n".join(lines)


def swept_keys(points: list[dict]) -> list[str]:
    """The parameters that vary across the scored points, sorted."""
    return sorted({k for p in scored_points(points) for k in p["overrides"]})


def plot_file_name(key: str) -> str:
    return f"sweep_{key.replace('/', '_')}.png"


def plot_sweep(run: str, points: list[dict], folder: Path) -> list[Path]:
    """The objective against each swept parameter, one PNG per parameter (``<folder>/sweep_<key>.png``).

    Written with the report's ``save_figure``: atomic, and the same bytes for the same points.
    """
    from rewards.reporting.report import plt, save_figure

    scored = scored_points(points)
    written = []
    for key in swept_keys(points):
        xs = [p["overrides"].get(key) for p in scored]
        try:
            values = [float(x) for x in xs]
        except (TypeError, ValueError):
            values = [str(x) for x in xs]  # a categorical parameter: one tick per value
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.scatter(values, [p["value"] for p in scored])
        ax.set_xlabel(key)
        ax.set_ylabel(scored[0]["objective"])
        if all(isinstance(v, float) for v in values) and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_xscale("log")
        ax.set_title(f"{run}: {scored[0]['objective']} by {key}")
        path = folder / plot_file_name(key)
        save_figure(fig, path)
        written.append(path)
    return written
