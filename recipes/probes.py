"""Stage 3b: does the judge see each principle? Score the contrastive probes (data/probes) with the configured judge.

Writes summary.json (per principle: detection rate with a bootstrap interval, mean score gap and spill-over, beside
the length-only and random baselines), table.md and detection.png. Judged replies are journaled, so a killed run
resumes; a remote judge also answers from its cache. `counsel-align principles probe` runs the same measurement on
one or two rubric files outside a run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from recipes._entry import StageContext, entry, forget_failed_run, project_path, run_dir_of, run_stage
from recipes.judge import build_judge, judge_label, report_failures
from rewards.artifacts import Journal, atomic_write_json, atomic_write_jsonl, atomic_write_text
from rewards.errors import UserError
from rewards.judges.batching import FailureTally, add_usage, judge_usage
from rewards.judges.probes import (
    Probe,
    compare_probes,
    distinct_replies,
    format_table,
    headline,
    load_probes,
    missing_principles,
    pairwise_detections,
    plot_detection,
    score_probes,
    select_probes,
    summarize,
)
from rewards.log import get_logger
from rewards.rubric import Rubric, load_rubric

log = get_logger(__name__)

SUMMARY_FILE = "summary.json"
PLOT_FILE = "detection.png"


def rubric_probes(cfg: DictConfig, rubric: Rubric, source: str) -> list[Probe]:
    """The configured probes of the rubric's principles; warns about principles that have none."""
    by_principle = load_probes(project_path(cfg.probes.path))
    missing = missing_principles(by_principle, rubric.ids)
    if missing:
        log.info(f"probes: warning: {source}: no probes for {', '.join(missing)} in {cfg.probes.path}; "
                 "they are not measured (write <principle id>.jsonl there, see data/probes/README.md)")
    return select_probes(by_principle, rubric.ids, cfg.probes.limit_per_principle)


def measure(cfg: DictConfig, rubric: Rubric, probes: list[Probe], work_dir: Path) -> tuple[dict, FailureTally, dict]:
    """Judge the probes (journaled in ``work_dir``) and summarize; returns the summary, failures and token usage."""
    if not 0 < float(cfg.probes.confidence) < 1:
        raise UserError(f"probes.confidence: {cfg.probes.confidence} must lie strictly between 0 and 1, e.g. 0.95")
    judged = Journal(work_dir / "journal.jsonl").done()
    judge = None  # built only when something is left to ask: a finished rerun loads no model
    if cfg.probes.pairwise or any(p.key(side) not in judged for p in probes for side in ("intact", "broken")):
        judge = build_judge(cfg, rubric)
    failures = FailureTally()
    batch = int(cfg.probes.batch_size)
    if judge is not None:
        for item in score_probes(judge, probes, Journal(work_dir / "journal.jsonl"), batch,
                                 on_batch=lambda done, total: log.info(f"probes: judged {done}/{total} "
                                                                       "replies")):
            failures.add({"key": item["key"]}, item["error"])
    scores = {key: record["scores"] for key, record in Journal(work_dir / "journal.jsonl").done().items()}
    pairwise = None
    if cfg.probes.pairwise:
        journal = Journal(work_dir / "pairwise.jsonl")
        compare_probes(judge, probes, journal, batch)
        pairwise = pairwise_detections(probes, journal)
    summary = summarize(probes, scores, rubric.ids, pairwise, int(cfg.probes.bootstrap_resamples),
                        float(cfg.probes.confidence), int(cfg.seed))
    summary["details"] = {"rubric": f"{rubric.name} v{rubric.version}", "rubric_sha256": rubric.content_hash(),
                          "judge": judge_label(cfg), "probes": str(cfg.probes.path),
                          "limit_per_principle": cfg.probes.limit_per_principle}
    # A rerun with nothing left to ask records zero usage, in the same shape as a run that asked.
    usage = judge_usage(judge) if judge is not None else add_usage({}, {})
    return summary, failures, usage


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    rubric = load_rubric(project_path(cfg.principles.path))
    probes = rubric_probes(cfg, rubric, str(cfg.principles.path))
    summary, failures, usage = measure(cfg, rubric, probes, ctx.dir)
    atomic_write_jsonl(ctx.dir / "failed.jsonl", failures.items)
    report_failures(cfg, distinct_replies(probes), failures)
    label = f"{rubric.name} v{rubric.version}"
    atomic_write_json(ctx.dir / SUMMARY_FILE, summary)
    atomic_write_text(ctx.dir / "table.md", format_table({label: summary}) + "\n")
    plot_detection({label: summary}, ctx.dir / PLOT_FILE)
    figures = headline(summary)
    log.info(f"probes: mean detection {figures['probe_detection']} (length-only "
             f"{figures['probe_length_baseline']}, random 0.5); weakest: {figures['probe_weakest_principle']}")
    return {"counts": {"n_probes": len(probes), "n_replies": distinct_replies(probes), "n_failed": len(failures.items)},
            "metrics": {**figures, "usage": usage}}


def run(cfg: DictConfig) -> dict:
    forget_failed_run(run_dir_of(cfg) / "probes")
    # No stage inputs: the probes are project files, and only the judge's config (not its outputs) matters.
    return run_stage(cfg, "probes", work)


main = entry("probes", run)

if __name__ == "__main__":
    raise SystemExit(main())
