"""Every stage in order; finished stages are skipped, an interrupted one resumes."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig

from recipes._entry import entry, project_path
from recipes.stages import pipeline_stages
from rewards.rubric import load_rubric


def run(cfg: DictConfig) -> dict | None:
    """Every stage of this configuration in order; returns the evaluate stage's manifest (its ``win_rate`` is a
    pipeline sweep's objective)."""
    load_rubric(project_path(cfg.principles.path))  # refuse a bad rubric before any work
    if cfg.dry_run:
        from recipes.commands.plan import run as print_plan

        print_plan(cfg)
        return None
    manifests = {spec.name: importlib.import_module(spec.module).run(cfg) for spec in pipeline_stages(cfg)}
    return manifests.get("evaluate")


main = entry("pipeline", run)

if __name__ == "__main__":
    raise SystemExit(main())
