"""Every stage in order; finished stages are skipped, an interrupted one resumes."""

from __future__ import annotations

from omegaconf import DictConfig

from recipes import calibrate, dpo, evaluate, generate, judge, pairs, report, reward
from recipes._entry import entry, project_path
from rewards.rubric import load_rubric

STAGES = (generate, calibrate, judge, pairs, reward, dpo, evaluate, report)


def run(cfg: DictConfig) -> None:
    load_rubric(project_path(cfg.principles.path))  # refuse a bad rubric before any work
    if cfg.dry_run:
        from recipes.plan import run as print_plan

        print_plan(cfg)
        return
    for stage in STAGES:
        stage.run(cfg)


main = entry("pipeline", run)

if __name__ == "__main__":
    raise SystemExit(main())
