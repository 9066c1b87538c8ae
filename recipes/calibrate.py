"""Stage 2b: measure the run's judge on human preference pairs, so every report says how far to trust it.

Reads ``calibration`` (default: CounselChat val pairs) and the judge config; writes outputs/<run>/calibrate/:
pairs.jsonl, judgments.jsonl, calibration.json (pointwise agreement with a question-level bootstrap interval beside
length-only, pairwise agreement and position consistency) and report.md. Judged items are journaled.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recipes._entry import CONFIG_DIR, StageContext, entry, forget_failed_run, project_path, run_dir_of, run_stage
from recipes.agreement import (
    compare_pairs,
    judging_details,
    pointwise_rows,
    sample_human_pairs,
    score_replies,
    start_judging,
    write_judgments,
)
from rewards.artifacts import Journal, read_jsonl
from rewards.errors import UserError
from rewards.human_prefs import COUNSELCHAT_HUB_ID
from rewards.judges.agreement import (
    agreement_report,
    calibration_summary,
    position_consistency,
    refuse_inverted_harm_judge,
)
from rewards.log import get_logger

CALIBRATION_FILE = "calibration.json"

log = get_logger(__name__)


def source_path(source: str) -> str | Path:
    """A file path (relative to the working directory or the project root) or a hub id as given."""
    path = project_path(source)
    if path.exists():
        return path
    if str(source).count("/") == 1 and not str(source).startswith((".", "/", "~")):
        return str(source)  # a hub dataset id
    raise UserError(f"calibration.source: {source} not found; pass calibration.source={COUNSELCHAT_HUB_ID} "
                    "(needs network) or the path of a CounselChat-shaped CSV")


def recorded_harm_separation(judge: DictConfig) -> float | None:
    """``judge.harm_separation``, else the value recorded in the configs/judge/embedded_*.yaml of the same model."""
    if judge.harm_separation is not None:
        return judge.harm_separation
    for path in sorted((CONFIG_DIR / "judge").glob("embedded_*.yaml")):
        recorded = OmegaConf.load(path)
        if recorded.get("model") == judge.model:
            return recorded.get("harm_separation")
    return None


def check_harm_judge(cfg: DictConfig, setting: str, value: float | None) -> None:
    """Refuse a safety threshold (``setting``) driven by a judge that ranks harmful replies safer."""
    if value is not None:
        refuse_inverted_harm_judge(cfg.judge.model, recorded_harm_separation(cfg.judge), setting, value)


def calibration_pairs(cfg: DictConfig) -> list[dict]:
    return sample_human_pairs(cfg, "calibration", source_path(cfg.calibration.source), cfg.calibration.max_pairs)


def work(ctx: StageContext) -> dict:
    cfg, settings = ctx.cfg, ctx.cfg.calibration
    rubric, weights, pairs, judge = start_judging(ctx, calibration_pairs)
    scores = Journal(ctx.dir / "journal.jsonl")
    failures = score_replies(judge, pairs, scores, settings.max_chars, settings.batch_size)
    if failures.items:
        log.warning(f"calibrate: warning: the judge failed on {len(failures.items)} replies; their pairs are left "
                    "out; rerun to retry them")
    rows = pointwise_rows(pairs, scores, rubric, weights, 0.0)
    report = agreement_report(rows, seed=cfg.seed)
    orders: list[dict] = []
    if settings.pairwise:
        pairwise_rows, pairwise_failures = compare_pairs(judge, pairs, Journal(ctx.dir / "pairwise.jsonl"),
                                                         settings.max_chars, 0.0)
        failures.items.extend(pairwise_failures.items)  # a failed comparison is asked again on the rerun
        orders = read_jsonl(ctx.dir / "pairwise.jsonl")
        report["pairwise"] = agreement_report(pairwise_rows, seed=cfg.seed)["judge"]
    summary = calibration_summary(report, position_consistency(orders) if orders else None)
    details = judging_details(cfg, rubric, settings)
    write_judgments(ctx.dir, rows, CALIBRATION_FILE, summary | {"details": details, "report": report}, report,
                    "Judge calibration on human preferences", details)
    log.info(f"calibrate: judge agreement {summary['judge_agreement']} {summary['judge_agreement_ci']} "
             f"vs length-only {summary['judge_length_baseline']} on {len(rows)} pairs; position consistency "
             f"{summary['position_consistency']}")
    return {"counts": {"n_pairs": len(pairs), "n_judged_pairs": len(rows), "n_failed": len(failures.items)},
            "metrics": summary}


def run(cfg: DictConfig) -> dict:
    source_path(cfg.calibration.source)  # a missing file is refused before the stage folder is made
    forget_failed_run(run_dir_of(cfg) / "calibrate")  # replies the judge failed on are asked again
    return run_stage(cfg, "calibrate", work)


main = entry("calibrate", run)

if __name__ == "__main__":
    raise SystemExit(main())
