"""Stage 7: collect every stage's manifest into metrics.json, report.md, report.html (offline) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from recipes._entry import StageContext, entry, input_stage_dir, run_dir_of, run_stage
from recipes.calibrate import CALIBRATION_FILE
from recipes.evaluation_page import evaluation_sections, load_histories
from recipes.stages import pipeline_stages, stage_spec, sweep_objectives
from rewards.artifacts import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
    read_manifest,
    sha256_json,
)
from rewards.judges.agreement import judge_warning
from rewards.judges.probes import judge_checks
from rewards.log import get_logger
from rewards.reporting.html import Section, render_html, render_sections_markdown
from rewards.reporting.report import (
    headline_rows,
    judge_check_rows,
    plot_candidate_scores,
    plot_principles,
    plot_rewards,
    plot_stage_seconds,
    reading_note,
    render_judge_checks,
    render_markdown,
)
from rewards.reporting.sweep import SWEEP_COLUMNS, best_point, plot_sweep, sweep_points, sweep_rows, swept_keys
from rewards.reporting.validity import VALIDITY_NOTE, render_validity, validity_metrics, validity_rows

log = get_logger(__name__)

PROBES_PLOT = "probes.png"
CALIBRATION_KEYS = ("judge_agreement", "judge_agreement_ci", "judge_length_baseline", "position_consistency")


def inputs(cfg: DictConfig) -> list[str]:
    """The registry's inputs, plus the stages this configuration runs only sometimes (sft, reward_eval): their
    time and figures are in the report, and a run without them keeps its fingerprint."""
    declared = list(stage_spec("report").input_stages)
    return [spec.name for spec in pipeline_stages(cfg) if spec.name in declared or spec.runs_when is not None]


def work(ctx: StageContext) -> dict:
    manifests = {stage: read_manifest(ctx.input_dir(stage)) for stage in inputs(ctx.cfg)}
    counts = {stage: m["counts"] for stage, m in manifests.items()}
    evaluation = manifests["evaluate"]["metrics"]
    reward = manifests["reward"]["metrics"]
    metrics = {
        "n_prompts": counts["generate"]["n_prompts"],
        "n_candidates": counts["generate"]["n_candidates"],
        "n_judged": counts["judge"]["n_judged"],
        "n_pairs": counts["pairs"]["n_pairs"],
        "rm_accuracy": reward["rm_accuracy"],
        "rm_length_baseline": reward["rm_length_baseline"],
        "base_score": evaluation["base_score"],
        "dpo_score": evaluation["dpo_score"],
        "win_rate": evaluation["win_rate"],
        "win_rate_ci": evaluation["win_rate_ci"],
        "expected_preference": evaluation.get("expected_preference"),
        "expected_preference_ci": evaluation.get("expected_preference_ci"),
        "base_pass_rate": evaluation["base_pass_rate"],
        "trained_pass_rate": evaluation["trained_pass_rate"],
        "release": evaluation["release"],
        **{key: manifests["calibrate"]["metrics"].get(key) for key in CALIBRATION_KEYS},
        "stage_seconds": {stage: m["wall_seconds"] for stage, m in manifests.items()},
    }
    checks = judge_checks(ctx.run_dir)
    metrics |= {key: checks[key] for key in ("probe_detection", "probe_detection_by_principle",
                                             "probe_weakest_principle", "judge_agreement")}
    metrics |= {key: manifests["calibrate"]["metrics"].get(key) for key in CALIBRATION_KEYS}  # this run's judge
    metrics |= validity_metrics(manifests["calibrate"]["metrics"], judge_pairwise_on_people(ctx),
                                reward_model_on_people(ctx, manifests), evaluation.get("comparisons", {}))
    atomic_write_bytes(ctx.dir / PROBES_PLOT, (ctx.input_dir("probes") / "detection.png").read_bytes())
    judged = read_jsonl(ctx.input_dir("judge") / "judged.jsonl")
    rows = read_jsonl(ctx.input_dir("evaluate") / "eval.jsonl")
    plot_principles(evaluation["base_principles"], evaluation["dpo_principles"], ctx.dir / "principles.png")
    plot_rewards([r["base_reward"] for r in rows], [r["dpo_reward"] for r in rows], ctx.dir / "rewards.png")
    plot_stage_seconds(metrics["stage_seconds"], ctx.dir / "stage_seconds.png")
    principle_ids = list(judged[0]["scores"]) if judged else []
    plot_candidate_scores({pid: [r["scores"][pid] for r in judged] for pid in principle_ids},
                          ctx.dir / "candidate_scores.png")
    pair_counts = counts["pairs"]
    extra = {
        **{k: counts["generate"][k] for k in ("n_train_prompts", "n_test_prompts")},
        "train_pairs": pair_counts["train_pairs"], "test_pairs": pair_counts["test_pairs"],
        "ties": pair_counts["train_ties"] + pair_counts["test_ties"],
        "vetoed": pair_counts["train_vetoed"] + pair_counts["test_vetoed"],
        "wins": evaluation["wins"], "ties_eval": evaluation["ties"], "losses": evaluation["losses"],
        "base_principles": evaluation["base_principles"], "dpo_principles": evaluation["dpo_principles"],
        "model": reward["base_model"], "rubric": ctx.cfg.principles.path,
        "rubric_sha256": manifests["judge"]["rubric_sha256"], "judge": evaluation["judge"]["backend"],
        "judge_config": evaluation["judge"],
        "judge_checks": checks,
        "judge_warning": judge_warning(manifests["calibrate"]["metrics"]),
    }
    sweep = sweep_sections(ctx, metrics)
    atomic_write_json(ctx.dir / "metrics.json", metrics)
    sections = evaluation_sections(ctx.dir, evaluation, rows, load_histories(ctx.run_dir))
    atomic_write_text(ctx.dir / "report.md", render_markdown(ctx.cfg.run, metrics, extra)
                      + "\n" + render_validity(metrics) + "\n" + render_judge_checks(checks, PROBES_PLOT) + "\n"
                      + render_sections_markdown([*sections, *sweep]))
    write_html(ctx, metrics, extra, [*validity_section(metrics), judge_section(checks), *sections, *sweep])
    log.info(f"report: {ctx.dir / 'report.html'} and report.md")
    return {"counts": {"n_plots": len(list(ctx.dir.glob("*.png")))}, "metrics": metrics}


def write_html(ctx: StageContext, metrics: dict, extra: dict, sections: list[Section]) -> None:
    headline = Section("Headline figures", "", ["figure", "value"], [
        *headline_rows(metrics, extra),
        *([name, value] for name, value in judge_check_rows(extra["judge_checks"])),
    ])
    warning = [Section("Judge warning", extra["judge_warning"])] if extra["judge_warning"] else []
    extras = [
        Section("Judge scores of all candidates", images=[("candidate_scores.png", "candidate judge scores")]),
        Section("Time per stage (seconds)", "", ["stage", "seconds"],
                [[k, v] for k, v in metrics["stage_seconds"].items()], [("stage_seconds.png", "time per stage")]),
        Section("Reading these numbers", reading_note(extra["judge_config"], extra["n_test_prompts"])),
    ]
    subtitle = (f"model {extra['model']} · rubric {extra['rubric']} (sha256 {extra['rubric_sha256'][:12]}) · "
                f"judge {extra['judge']}")
    atomic_write_text(ctx.dir / "report.html", render_html(f"counsel-align run {ctx.cfg.run}", subtitle,
                                                           [*warning, headline, *sections, *extras], ctx.dir))


def reward_model_on_people(ctx: StageContext, manifests: dict) -> dict | None:
    """reward_eval's CounselChat figures (accuracy, question-level interval, length-only), when it ran."""
    if "reward_eval" not in manifests:
        return None
    return json.loads((ctx.input_dir("reward_eval") / "metrics.json").read_text()).get("counselchat")


def judge_pairwise_on_people(ctx: StageContext) -> dict | None:
    """The judge's both-orders agreement on the calibration pairs (with ``calibration.pairwise``), else None."""
    path = ctx.input_dir("calibrate") / CALIBRATION_FILE
    return json.loads(path.read_text())["report"].get("pairwise") if path.exists() else None


def validity_section(metrics: dict) -> list[Section]:
    rows = validity_rows(metrics)
    if not rows:
        return []
    return [Section("Validity: each figure beside its baseline", VALIDITY_NOTE,
                    ["figure", "value [95% CI]", "baseline", "n"], rows)]


def _agreement_cell(metrics: dict) -> str:
    if metrics["judge_agreement"] is None:
        return "not measured"
    ci = metrics["judge_agreement_ci"]
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    consistency = metrics["position_consistency"]
    return (f"{metrics['judge_agreement']:.3f}{interval} ({metrics['judge_length_baseline']:.3f}); "
            f"{'n/a' if consistency is None else f'{consistency:.3f}'}")


def judge_section(checks: dict) -> Section:
    rows = [[pid, f"{rate:.3f}"] for pid, rate in checks["probe_detection_by_principle"].items()]
    return Section("Does the judge see each principle?", "Contrastive probes: how often the judge scores the intact "
                   "reply above one that breaks only this principle (0.5 = chance).", ["principle", "detection"],
                   rows, [(PROBES_PLOT, "probe detection per principle")])


def sweep_sections(ctx: StageContext, metrics: dict) -> list[Section]:
    """The run's sweep (`counsel-align <stage> -m ... run=<this run>`): one table of its points and the objective
    against each swept parameter (``sweep_<key>.png``); adds ``metrics["sweep"]``. No section when it was not swept."""
    points = sweep_points(ctx.run_dir, sweep_objectives())
    if not points:
        return []
    for point in points:  # paths relative to the run folder: the report reads the same wherever outputs/ lives
        if point["checkpoint"]:
            point["checkpoint"] = str(Path(point["checkpoint"]).relative_to(ctx.run_dir))
    plots = plot_sweep(ctx.cfg.run, points, ctx.dir)
    objectives = sorted({p["objective"] for p in points if p["objective"]})
    best = best_point(points)
    best_value = next((p["value"] for p in points if p["point"] == best), None)
    metrics["sweep"] = {"n_points": len(points), "objective": objectives[0] if len(objectives) == 1 else objectives,
                        "best_point": best, "best_value": best_value, "points_sha256": sweep_digest(points)}
    text = (f"{len(points)} point(s), one folder each below this run's folder; objective: "
            f"{', '.join(objectives) or 'none yet'} (the last stage each point finished; * = best). "
            "`counsel-align runs` prints the same table.")
    return [Section("Sweep", text, list(SWEEP_COLUMNS), sweep_rows(points),
                    [(path.name, f"objective by {key}") for path, key in zip(plots, swept_keys(points), strict=True)])]


def sweep_digest(points: list[dict]) -> str:
    """What the sweep section shows: when it changes (a point finished or was added), the report is remade."""
    return sha256_json([{k: p[k] for k in ("point", "objective", "value", "status")} for p in points])


def forget_stale_sweep(cfg: DictConfig) -> None:
    """A finished report whose sweep section no longer matches the run's sweep points is remade: the sweep points
    are not inputs of the report's fingerprint (they are folders, not stages), so drop its manifest."""
    run_dir = run_dir_of(cfg)
    manifest = read_manifest(run_dir / "report")
    if manifest is None:
        return
    recorded = (manifest.get("metrics", {}).get("sweep") or {}).get("points_sha256")
    points = sweep_points(run_dir, sweep_objectives())
    if recorded != (sweep_digest(points) if points else None):
        (run_dir / "report" / "manifest.json").unlink()


def sweep_only(cfg: DictConfig) -> bool:
    """A run folder holding sweep points but no finished evaluate of its own (a swept `pipeline -m`): its report is
    the sweep section alone."""
    run_dir = run_dir_of(cfg)
    return (read_manifest(input_stage_dir(cfg, run_dir, "evaluate")) is None
            and bool(sweep_points(run_dir, sweep_objectives())))


def sweep_work(ctx: StageContext) -> dict:
    """The report of a run that is only a sweep: report.md, report.html and metrics.json with the sweep section."""
    metrics: dict = {}
    sections = sweep_sections(ctx, metrics)
    atomic_write_json(ctx.dir / "metrics.json", metrics)
    note = (f"Run `{ctx.cfg.run}` has no finished evaluate stage of its own; each sweep point's folder has its own "
            "stages (and its own report when the point ran the pipeline).")
    atomic_write_text(ctx.dir / "report.md", f"# counsel-align run `{ctx.cfg.run}`\n\n{note}\n\n"
                      + render_sections_markdown(sections))
    atomic_write_text(ctx.dir / "report.html", render_html(f"counsel-align run {ctx.cfg.run}", note, sections,
                                                           ctx.dir))
    log.info(f"report: {ctx.dir / 'report.html'} and report.md (sweep only)")
    return {"counts": {"n_plots": len(list(ctx.dir.glob("*.png")))}, "metrics": metrics}


def run(cfg: DictConfig) -> dict:
    forget_stale_sweep(cfg)
    if sweep_only(cfg):
        return run_stage(cfg, "report", sweep_work, inputs=[])
    return run_stage(cfg, "report", work, inputs=inputs(cfg))


main = entry("report", run)

if __name__ == "__main__":
    raise SystemExit(main())
