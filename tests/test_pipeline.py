"""The whole pipeline on a tiny random model: artifacts, counts, manifests, skip and resume."""

import json
import shutil

import pytest

from recipes import pipeline
from recipes._entry import compose_config
from recipes.stages import pipeline_stages
from rewards.artifacts import read_jsonl
from tests.conftest import PROJECT_ROOT, tiny_overrides

# sft and reward_eval run only in some configurations (dpo.init_from=sft, reward_eval.counselchat), not this one
STAGES = [spec.name for spec in pipeline_stages() if spec.runs_when is None]
METRIC_KEYS = {"n_prompts", "n_candidates", "n_pairs", "rm_accuracy", "rm_length_baseline", "base_score",
               "dpo_score", "win_rate", "stage_seconds", "judge_agreement", "judge_agreement_ci",
               "judge_length_baseline", "position_consistency"}


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    redflags = shutil.copytree(PROJECT_ROOT / "data" / "redflags", root / "redflags")  # a suite the tests may edit
    overrides = [*tiny_overrides(tiny_model_dir, root), f"evaluate.redflags={redflags}", "evaluate.redflag_limit=4"]
    assert pipeline.main(overrides) == 0
    return root / "t", overrides


def test_every_stage_writes_outputs_and_a_manifest(finished_run):
    run_dir, _ = finished_run
    for stage in STAGES:
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["outputs_sha256"] and manifest["versions"]["trl"]
    generate = json.loads((run_dir / "generate" / "manifest.json").read_text())["counts"]
    assert generate["n_prompts"] == 9 and generate["n_candidates"] == 9 * 3
    assert len(read_jsonl(run_dir / "judge" / "judged.jsonl")) == generate["n_candidates"]
    judge_manifest = json.loads((run_dir / "judge" / "manifest.json").read_text())
    assert len(judge_manifest["rubric_sha256"]) == 64
    assert (run_dir / "dpo" / "model" / "adapter_config.json").exists()
    assert (run_dir / "reward" / "model" / "adapter_config.json").exists()


def test_every_manifest_records_the_rubric_hash_and_code_version(finished_run):
    run_dir, _ = finished_run
    rubric = json.loads((run_dir / "judge" / "manifest.json").read_text())["rubric_sha256"]
    for stage in STAGES[1:]:  # everything downstream of judging, including reward, dpo and report
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert manifest["rubric_sha256"] == rubric, stage
    for stage in STAGES:
        code = json.loads((run_dir / stage / "manifest.json").read_text())["code_version"]
        assert set(code) == {"commit", "dirty", "package"}
    generate = json.loads((run_dir / "generate" / "manifest.json").read_text())
    assert list(generate["input_files"]) == ["data/prompts"]


def test_editing_the_redflag_suite_reruns_evaluate(finished_run, capsys):
    from recipes import evaluate

    run_dir, overrides = finished_run
    suite = next(p for p in sorted((run_dir.parent / "redflags").glob("*.jsonl")))
    original = suite.read_text()
    cfg = compose_config(overrides)
    before = json.loads((run_dir / "evaluate" / "manifest.json").read_text())
    try:
        suite.write_text(original.replace('"message": "', '"message": "Edited: ', 1))
        capsys.readouterr()
        after = evaluate.run(cfg)
        assert "evaluate: running" in capsys.readouterr().out
        assert after["fingerprint"] != before["fingerprint"]
        assert after["input_files"][str(run_dir.parent / "redflags")] != before["input_files"][
            str(run_dir.parent / "redflags")]
    finally:  # put the suite and the evaluation back so later tests see the finished run unchanged
        suite.write_text(original)
        assert evaluate.run(cfg)["fingerprint"] == before["fingerprint"]


def test_report_has_metrics_and_plots(finished_run):
    run_dir, _ = finished_run
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert set(metrics["stage_seconds"]) == set(STAGES[:-1])
    assert metrics["n_pairs"] > 0 and 0.0 <= metrics["win_rate"] <= 1.0
    report = (run_dir / "report" / "report.md").read_text()
    for png in ("principles.png", "rewards.png", "stage_seconds.png", "candidate_scores.png"):
        assert (run_dir / "report" / png).stat().st_size > 1000 and png in report


def test_second_run_does_no_work(finished_run, capsys):
    run_dir, overrides = finished_run
    before = {s: (run_dir / s / "manifest.json").read_text() for s in STAGES}
    assert pipeline.main(overrides) == 0
    out = capsys.readouterr().out
    assert out.count("up to date, skipped") == len(STAGES)
    assert {s: (run_dir / s / "manifest.json").read_text() for s in STAGES} == before


def test_changed_pair_config_reruns_only_downstream(finished_run, tmp_path):
    run_dir, overrides = finished_run
    cfg = compose_config([*overrides, "pairs.margin=0.01"])
    from recipes import generate, judge, pairs

    assert generate.run(cfg)["fingerprint"] == json.loads((run_dir / "generate" / "manifest.json").read_text())[
        "fingerprint"]
    judge.run(cfg)
    new = pairs.run(cfg)
    assert new["config"]["pairs"]["margin"] == 0.01
    # Put the original pairs back so later tests see the finished run unchanged.
    pairs.run(compose_config(overrides))


def test_interrupted_judging_resumes_without_repeating(tiny_model_dir, tmp_path, monkeypatch):
    from recipes import generate, judge
    from rewards.judges.local import LocalLogprobJudge

    # judge.batch_size=1: one score() call per item, so the counts below are items
    cfg = compose_config([*tiny_overrides(tiny_model_dir, tmp_path, run="resume"), "judge.batch_size=1"])
    generate.run(cfg)
    calls = {"n": 0}
    original = LocalLogprobJudge.score

    def flaky_score(self, items):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, items)

    monkeypatch.setattr(LocalLogprobJudge, "score", flaky_score)
    with pytest.raises(KeyboardInterrupt):
        judge.run(cfg)
    assert len(read_jsonl(tmp_path / "resume" / "judge" / "journal.jsonl")) == 3
    assert not (tmp_path / "resume" / "judge" / "manifest.json").exists()
    calls["n"] = 100
    manifest = judge.run(cfg)
    assert manifest["counts"]["n_judged"] == 27 and calls["n"] == 100 + 27 - 3
