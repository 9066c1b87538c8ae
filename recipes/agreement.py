"""`counsel-align agreement`: judge human preference pairs (CounselChat or your own) and report the agreement.

Writes outputs/<run>/agreement/: pairs.jsonl (the sampled human pairs), judgments.jsonl (one verdict per pair),
agreement.json and report.md (judge accuracy beside the length-only baseline, per topic and per principle).
Judged replies (or comparisons) are journaled, so an interrupted run resumes where it stopped. The calibrate stage
measures the judge the same way, with the pieces here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, forget_failed_run, project_path, run_dir_of, run_stage
from recipes.judge import build_judge, judge_label, pricing
from rewards.artifacts import Journal, atomic_write_json, atomic_write_jsonl, atomic_write_text
from rewards.errors import UserError
from rewards.evaluation.compare import judged_comparisons
from rewards.human_prefs import load_human_pairs, sample_pairs
from rewards.judges import Judge, JudgeItem
from rewards.judges.agreement import (
    agreement_report,
    length_verdict,
    pairwise_verdict,
    render_markdown,
    score_verdict,
)
from rewards.judges.batching import FailureTally, judge_usage, score_batch
from rewards.judges.cache import judgment_key
from rewards.log import get_logger
from rewards.pairs import aggregate_score
from rewards.rubric import Rubric, load_rubric

log = get_logger(__name__)

COMPARE_BATCH = 32  # pairs judged (in both orders) per journaled batch; a remote judge asks them concurrently


def sample_human_pairs(cfg: DictConfig, section: str, source: str | Path, n_pairs: int | None) -> list[dict]:
    """``n_pairs`` seeded human pairs of ``<section>.split`` from ``source``, read per ``<section>``'s format,
    columns, score gap and per-question cap (``agreement`` or ``calibration``)."""
    settings = cfg[section]
    pairs = load_human_pairs(source, settings.format, OmegaConf.to_container(settings.columns, resolve=True),
                             settings.min_score_gap, config_key=f"{section}.columns")
    chosen = sample_pairs(pairs, n_pairs, settings.split, settings.max_pairs_per_question, cfg.seed)
    if not chosen:
        raise UserError(f"{section}.split: no pairs in split {settings.split!r} of {settings.source}; "
                        f"use {section}.split=all")
    return chosen


def human_pairs(cfg: DictConfig) -> list[dict]:
    source = cfg.agreement.source
    if "/" in str(source) and project_path(source).exists():
        source = project_path(source)
    return sample_human_pairs(cfg, "agreement", source, cfg.agreement.n_pairs)


def start_judging(ctx: StageContext,
                  pairs_of: Callable[[DictConfig], list[dict]]) -> tuple[Rubric, dict[str, float], list[dict], Judge]:
    """The run's rubric, its principle weights, the human pairs (written to pairs.jsonl) and the judge."""
    cfg = ctx.cfg
    rubric = load_rubric(project_path(cfg.principles.path))
    weights = rubric.weights(OmegaConf.to_container(cfg.principles.weights))
    pairs = pairs_of(cfg)
    atomic_write_jsonl(ctx.dir / "pairs.jsonl", pairs)
    return rubric, weights, pairs, build_judge(cfg, rubric)


def judging_details(cfg: DictConfig, rubric: Rubric, settings: DictConfig, **extra) -> dict:
    """Which judge judged which pairs with which rubric, for the summary file and report.md."""
    return {"judge": judge_label(cfg), **extra, "source": settings.source, "split": settings.split,
            "rubric": f"{rubric.name} v{rubric.version}"}


def write_judgments(stage_dir: Path, rows: list[dict], summary_file: str, summary: dict, report: dict, title: str,
                    details: dict) -> None:
    """One verdict per pair (judgments.jsonl), the stage's summary file and report.md."""
    atomic_write_jsonl(stage_dir / "judgments.jsonl", rows)
    atomic_write_json(stage_dir / summary_file, summary)
    atomic_write_text(stage_dir / "report.md", render_markdown(report, title, details))


def _cut(text: str, max_chars: int | None) -> str:
    return text[:max_chars] if max_chars else text


def score_replies(judge, pairs: list[dict], journal: Journal, max_chars: int | None, batch_size: int) -> FailureTally:
    """Pointwise: every distinct (prompt, reply) scored on every principle; judged ones go to the journal."""
    items: dict[str, dict] = {}
    for pair in pairs:
        for side in ("chosen", "rejected"):
            key = judgment_key(pair["prompt"], pair[side])
            items[key] = {"key": key, "prompt": _cut(pair["prompt"], max_chars), "reply": _cut(pair[side], max_chars)}
    done = journal.done()
    todo = [item for key, item in items.items() if key not in done]
    failures = FailureTally()
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        results = score_batch(judge, [JudgeItem(i["prompt"], i["reply"]) for i in batch])
        journal.append_many({"key": i["key"], "scores": r.scores} for i, r in zip(batch, results, strict=True)
                            if r.scores)
        for item, result in zip(batch, results, strict=True):
            if result.scores is None:
                failures.add({"key": item["key"]}, result.error or "unknown failure")
        log.info(f"agreement: scored {min(start + batch_size, len(todo))}/{len(todo)} replies")
    return failures


def pointwise_rows(pairs: list[dict], journal: Journal, rubric: Rubric, weights: dict[str, float],
                   margin: float) -> list[dict]:
    scores = {key: record["scores"] for key, record in journal.done().items()}
    rows = []
    for pair in pairs:
        chosen, rejected = (scores.get(judgment_key(pair["prompt"], pair[s])) for s in ("chosen", "rejected"))
        if chosen is None or rejected is None:
            continue
        rows.append(_row(pair, score_verdict(aggregate_score(chosen, weights), aggregate_score(rejected, weights),
                                             margin),
                         {pid: score_verdict(chosen[pid], rejected[pid]) for pid in rubric.ids}))
    return rows


def compare_pairs(judge, pairs: list[dict], journal: Journal, max_chars: int | None,
                  band: float) -> tuple[list[dict], FailureTally]:
    """Pairwise: each pair asked in both orders (the chosen reply first as A, then as B). A comparison the judge
    failed on is not journaled (so a rerun asks it again) and its pair is left out."""
    done = journal.done()
    todo = [p for p in pairs if p["pair_id"] not in done]
    failures = FailureTally()
    for start in range(0, len(todo), COMPARE_BATCH):
        batch = todo[start:start + COMPARE_BATCH]
        outcomes = judged_comparisons(judge, [(_cut(p["prompt"], max_chars), _cut(p["chosen"], max_chars),
                                               _cut(p["rejected"], max_chars)) for p in batch])
        journal.append_many({"key": pair["pair_id"], "as_a": outcome.p_first_as_a, "as_b": outcome.p_first_as_b}
                            for pair, outcome in zip(batch, outcomes, strict=True) if not outcome.failed)
        for pair, outcome in zip(batch, outcomes, strict=True):
            if outcome.failed:
                failures.add({"key": pair["pair_id"]}, outcome.error or "unknown failure")
        log.info(f"agreement: compared {start + len(batch)} of {len(todo)} pairs")
    done = journal.done()
    rows = [_row(pair, pairwise_verdict(done[pair["pair_id"]]["as_a"], done[pair["pair_id"]]["as_b"], band), None)
            for pair in pairs if pair["pair_id"] in done]
    return rows, failures


def check_failures(failures: FailureTally, what: str, n_pairs: int, n_judged: int, limit: float) -> None:
    """Refuse to finish when no pair, or more than ``limit`` of the pairs, could be judged; else warn."""
    if not failures.items:
        return
    n_unjudged = n_pairs - n_judged
    message = (f"the judge failed on {len(failures.items)} {what} (first reason: {failures.items[0]['error']}), "
               f"leaving {n_unjudged} of {n_pairs} pairs unjudged; rerun the same command to retry only those")
    if n_judged == 0 or n_unjudged > limit * n_pairs:
        raise UserError(f"agreement: {message} (more than agreement.max_failure_fraction={limit} of the pairs)")
    log.info(f"agreement: warning: {message}; the accuracy below is over the {n_judged} judged pairs")


def _row(pair: dict, judge_verdict: str, principles: dict | None) -> dict:
    row = {"pair_id": pair["pair_id"], "prompt_id": pair["prompt_id"], "topic": pair["topic"],
           "judge": judge_verdict, "length": length_verdict(pair["chosen"], pair["rejected"]),
           "chosen_chars": len(pair["chosen"]), "rejected_chars": len(pair["rejected"])}
    return row | ({"principles": principles} if principles else {})


def work(ctx: StageContext) -> dict:
    cfg, settings = ctx.cfg, ctx.cfg.agreement
    rubric, weights, pairs, judge = start_judging(ctx, human_pairs)
    journal = Journal(ctx.dir / "journal.jsonl")
    if settings.mode == "pointwise":
        failures = score_replies(judge, pairs, journal, settings.max_chars, settings.batch_size)
        rows = pointwise_rows(pairs, journal, rubric, weights, settings.tie_margin)
    elif settings.mode == "pairwise":
        rows, failures = compare_pairs(judge, pairs, journal, settings.max_chars, settings.tie_margin)
    else:
        raise UserError(f"agreement.mode: unknown mode {settings.mode!r}; use pointwise or pairwise")
    atomic_write_jsonl(ctx.dir / "failed.jsonl", failures.items)
    check_failures(failures, "replies" if settings.mode == "pointwise" else "comparisons", len(pairs), len(rows),
                   settings.max_failure_fraction)
    report = agreement_report(rows, seed=cfg.seed)
    usage = judge_usage(judge)
    details = judging_details(cfg, rubric, settings, mode=settings.mode)
    write_judgments(ctx.dir, rows, "agreement.json", report | {"details": details}, report,
                    "Judge agreement with human preferences", details)
    log.info(f"agreement: judge accuracy {report['judge']['accuracy']} vs length baseline "
             f"{report['length_baseline']['accuracy']} on {len(rows)} pairs -> {ctx.dir / 'report.md'}")
    return {
        # n_failed makes the run non-final: the next run drops this manifest and retries the failed items only.
        "counts": {"n_pairs": len(pairs), "n_judged_pairs": len(rows), "n_failed_pairs": len(pairs) - len(rows),
                   "n_failed": len(failures.items)},
        "metrics": {"judge_accuracy": report["judge"]["accuracy"],
                    "length_accuracy": report["length_baseline"]["accuracy"],
                    "judge_ties": report["judge"]["ties"], "failure_kinds": failures.kinds(), "usage": usage,
                    "estimated_cost": pricing(cfg).cost(usage)},
    }


def run(cfg: DictConfig) -> dict:
    forget_failed_run(run_dir_of(cfg) / "agreement")
    return run_stage(cfg, "agreement", work)


main = entry("agreement", run)

if __name__ == "__main__":
    raise SystemExit(main())
