"""Contrastive probes: the project's probes load, bad records name file and line, the measurement's arithmetic,
position bias cancels, the probes stage and `principles probe|validate`, and the figures in report and card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from recipes import probes as probes_stage
from recipes.commands import principles_cli
from rewards.artifacts import Journal, atomic_write_json, atomic_write_jsonl
from rewards.errors import UserError
from rewards.judges.probes import (
    Probe,
    compare_probes,
    detection_value,
    format_table,
    load_probes,
    pairwise_detections,
    pairwise_value,
    select_probes,
    summarize,
)
from tests.conftest import PROJECT_ROOT, tiny_overrides
from tests.fake_openai_server import FakeOpenAIServer

KEY_ENV = "COUNSEL_PROBES_TEST_KEY"

PROBES = PROJECT_ROOT / "data" / "probes"
IDS = ["empathy", "clarity"]


def record(n: int, principle: str = "empathy", **changes) -> dict:
    intact = f"reply {n} that reflects the feeling well"
    row = {"id": f"{principle}-{n}", "principle": principle, "client": f"client message {n}", "intact": intact,
           "broken": f"reply {n} with stock sympathy instead", "change": "reflection swapped for stock sympathy"}
    return row | changes


def write_probes(folder: Path, rows_by_principle: dict[str, list[dict]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for principle, rows in rows_by_principle.items():
        (folder / f"{principle}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


# -- the project's probes ---------------------------------------------------------------------------
def test_project_probes_cover_every_principle_with_20_length_matched_pairs(rubric):
    by_principle = load_probes(PROBES)
    assert set(by_principle) == set(rubric.ids)
    for pid, probes in by_principle.items():
        assert len(probes) >= 20, pid
        assert all(p.principle == pid and 40 <= p.words_intact <= 90 for p in probes)
        differences = [p.words_broken - p.words_intact for p in probes]
        # The per-principle allowance stated in data/probes/README.md.
        low, high = {"clarity": (0, 15), "harm_avoidance": (-5, 14)}.get(pid, (-5, 5))
        assert low <= min(differences) and max(differences) <= high, pid
    rows = [json.loads(line) for path in PROBES.glob("*.jsonl") for line in path.read_text().splitlines()]
    assert all(r["words_intact"] == len(r["intact"].split()) for r in rows)


# -- loading and validation -------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "not valid JSON"),
    (json.dumps(record(2, intact="")), "field 'intact' must be a non-empty string"),
    (json.dumps(record(2, principle="clarity")), "does not match the file name"),
    (json.dumps(record(2, broken="reply 2 that reflects the feeling well")), "identical"),
    (json.dumps(record(2, words_intact=3)), "words_intact is 3 but the intact reply has 7 words"),
    (json.dumps(record(2, note="x")), "unknown field(s) ['note']"),
    (json.dumps([1, 2]), "must be a JSON object"),
])
def test_a_malformed_record_is_one_line_naming_file_and_line(tmp_path, line, message):
    folder = write_probes(tmp_path / "probes", {"empathy": [record(1)]})
    with open(folder / "empathy.jsonl", "a") as handle:
        handle.write("\n" + line + "\n")
    with pytest.raises(UserError) as error:
        load_probes(folder)
    text = str(error.value)
    assert f"{folder / 'empathy.jsonl'}:3:" in text and message in text and "\n" not in text


def test_duplicate_ids_missing_folder_and_limits(tmp_path):
    folder = write_probes(tmp_path / "p", {"empathy": [record(1)], "clarity": [record(1, principle="clarity",
                                                                                       id="empathy-1")]})
    with pytest.raises(UserError, match="also appears in"):
        load_probes(folder)
    with pytest.raises(UserError, match="probes.path: .* is not a folder"):
        load_probes(tmp_path / "nowhere")
    good = write_probes(tmp_path / "q", {"empathy": [record(n) for n in range(4)]})
    assert [p.id for p in select_probes(load_probes(good), IDS, 2)] == ["empathy-0", "empathy-1"]
    with pytest.raises(UserError, match="limit_per_principle"):
        select_probes(load_probes(good), IDS, 0)


# -- arithmetic -------------------------------------------------------------------------------------
def probe(n: int, principle: str, intact_words: int = 5, broken_words: int = 5) -> Probe:
    return Probe(f"{principle}-{n}", principle, f"client {n}", " ".join(["i"] * intact_words) + f" {principle}{n}",
                 " ".join(["b"] * broken_words) + f" {principle}{n}", "x")


def test_detection_gap_and_spillover_on_hand_made_scores():
    probes = [probe(0, "empathy"), probe(1, "empathy"), probe(2, "empathy", 9, 5), probe(3, "clarity", 5, 8)]
    scores = {}

    def put(p: Probe, intact: dict, broken: dict) -> None:
        scores[p.key("intact")], scores[p.key("broken")] = intact, broken

    put(probes[0], {"empathy": 4.0, "clarity": 3.0}, {"empathy": 2.0, "clarity": 3.5})  # detected, gap 2, spill -.5
    put(probes[1], {"empathy": 3.0, "clarity": 3.0}, {"empathy": 3.0, "clarity": 2.0})  # tie, gap 0, spill +1
    put(probes[2], {"empathy": 2.0, "clarity": 3.0}, {"empathy": 3.0, "clarity": 3.0})  # missed, gap -1, spill 0
    put(probes[3], {"empathy": 3.0, "clarity": 4.5}, {"empathy": 3.0, "clarity": 4.0})  # detected
    summary = summarize(probes, scores, IDS, n_resamples=200)
    empathy = summary["principles"]["empathy"]
    assert empathy["n"] == 3 and empathy["detection"] == pytest.approx(0.5)
    assert empathy["mean_gap"] == pytest.approx(1 / 3, abs=1e-4)
    assert empathy["spillover"] == pytest.approx(0.5 / 3, abs=1e-4)
    assert empathy["ci_low"] <= 0.5 <= empathy["ci_high"]
    # Length-only: two ties (equal length) and one longer intact reply.
    assert empathy["length_baseline"] == pytest.approx((0.5 + 0.5 + 1) / 3, abs=1e-4)
    assert summary["principles"]["clarity"]["length_baseline"] == 0.0  # the broken reply was longer
    assert summary["mean_detection"] == pytest.approx((0.5 + 1.0) / 2)
    assert summary["weakest_principle"] == "empathy" and summary["n_probes"] == 4
    assert detection_value(3, 2) == 1.0 and detection_value(2, 2) == 0.5 and detection_value(1, 2) == 0.0
    table = format_table({"before": summary, "after": summary})
    assert table.count("| before | empathy |") == 1 and table.count("| after | clarity |") == 1


def test_unscored_probes_are_left_out_and_untested_principles_listed():
    probes = [probe(0, "empathy"), probe(1, "empathy")]
    scores = {probes[0].key("intact"): {"empathy": 4.0, "clarity": 3.0},
              probes[0].key("broken"): {"empathy": 2.0, "clarity": 3.0}}
    summary = summarize(probes, scores, IDS, n_resamples=50)
    assert summary["principles"]["empathy"]["n"] == 1 and summary["untested_principles"] == ["clarity"]


class AlwaysFirstJudge:
    """A pairwise judge with pure position bias: reply A always wins."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    def compare(self, client: str, first: str, second: str) -> float:
        self.asked.append((client, first, second))
        return 1.0


def test_a_judge_that_always_prefers_the_first_reply_scores_chance_after_order_swapping(tmp_path):
    probes = [probe(n, pid) for n in range(6) for pid in IDS]
    judge = AlwaysFirstJudge()
    journal = Journal(tmp_path / "pairwise.jsonl")
    compare_probes(judge, probes, journal, batch_size=4)
    assert len(judge.asked) == 2 * len(probes)  # both orders of every probe
    assert {(c, a, b) for c, a, b in judge.asked} >= {(p.client, p.broken, p.intact) for p in probes}
    pairwise = pairwise_detections(probes, journal)
    assert len(pairwise) == len(probes) and set(pairwise.values()) == {0.5}
    scores = {p.key(side): {"empathy": 3.0, "clarity": 3.0} for p in probes for side in ("intact", "broken")}
    summary = summarize(probes, scores, IDS, pairwise=pairwise, n_resamples=100)
    assert all(row["pairwise_detection"] == 0.5 for row in summary["principles"].values())
    assert pairwise_value(0.9, 0.8) == 1.0 and pairwise_value(0.1, 0.2) == 0.0
    compare_probes(judge, probes, journal)
    assert len(judge.asked) == 2 * len(probes)  # journaled: a rerun asks nothing again


# -- the stage and the commands ---------------------------------------------------------------------
def test_probes_stage_on_a_tiny_judge_writes_summary_table_plot_and_reruns_on_a_probe_edit(tiny_model_dir, tmp_path,
                                                                                         capsys):
    folder = write_probes(tmp_path / "probes", {pid: [json.loads(line) for line in
                                                      (PROBES / f"{pid}.jsonl").read_text().splitlines()[:2]]
                                                for pid in ("empathy", "clarity", "autonomy")})
    args = [*tiny_overrides(tiny_model_dir, tmp_path / "out"), f"probes.path={folder}",
            "probes.limit_per_principle=1", "probes.bootstrap_resamples=50"]
    assert probes_stage.main(args) == 0
    stage = tmp_path / "out" / "t" / "probes"
    summary = json.loads((stage / "summary.json").read_text())
    assert set(summary["principles"]) == {"empathy", "clarity", "autonomy"}  # (the JSON file sorts keys)
    assert summary["untested_principles"] == ["personalization", "harm_avoidance", "self_exploration",
                                              "stage_of_change"]
    manifest = json.loads((stage / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["probe_detection"] == summary["mean_detection"]
    assert set(metrics["probe_detection_by_principle"]) == {"empathy", "clarity", "autonomy"}
    assert metrics["probe_weakest_principle"] in metrics["probe_detection_by_principle"]
    assert manifest["counts"] == {"n_probes": 3, "n_replies": 4, "n_failed": 0}
    assert "| psychocounsel v1 | empathy | 1 |" in (stage / "table.md").read_text()
    assert (stage / "detection.png").stat().st_size > 1000
    # The first client's intact reply is shared by the three probes: judged once, so 1 + 3 journal lines.
    assert len((stage / "journal.jsonl").read_text().splitlines()) == 4
    assert "no probes for personalization" in capsys.readouterr().out
    assert probes_stage.main(args) == 0
    assert "probes: up to date" in capsys.readouterr().out
    with open(folder / "empathy.jsonl", "a") as handle:
        handle.write(json.dumps(record(9)) + "\n")
    assert probes_stage.main(args) == 0
    assert "probes: running" in capsys.readouterr().out


def test_validate_warns_about_principles_without_probes(tmp_path, capsys):
    folder = write_probes(tmp_path / "probes", {"empathy": [record(1)]})
    assert principles_cli.main(["validate", "--probes", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "ok:" in out and "warning:" in out and "no probes for personalization, clarity" in out
    assert principles_cli.main(["validate"]) == 0
    assert "warning" not in capsys.readouterr().out  # the project's probes cover every principle
    (folder / "empathy.jsonl").write_text("{oops\n")
    assert principles_cli.main(["validate", "--probes", str(folder)]) == 2
    assert f"{folder / 'empathy.jsonl'}:1: not valid JSON" in capsys.readouterr().err


def test_principles_probe_against_the_hash_scoring_fake_server_gives_one_row_per_rubric(tmp_path, rubric, capsys,
                                                                                        monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-probe-test")
    data = rubric.model_dump(mode="json")
    data["principles"][0]["description"] = "An edited description of empathy."
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "probe-out"
    with FakeOpenAIServer() as server:
        args = ["probe", str(PROJECT_ROOT / "principles" / "psychocounsel.yaml"), str(edited), "--out", str(out),
                "judge=openai_compatible", f"judge.base_url={server.base_url}", "judge.model=fake",
                f"judge.api_key_env={KEY_ENV}", f"judge.cache_path={tmp_path / 'cache.sqlite'}",
                "probes.limit_per_principle=4", "probes.bootstrap_resamples=100", "probes.pairwise=true"]
        assert principles_cli.main(args) == 0
        first = server.requests
        assert principles_cli.main(args) == 0
        assert server.requests == first  # journaled and cached: nothing is asked twice
    table = (out / "probes.md").read_text()
    assert table.count("psychocounsel.yaml |") == 8 and table.count("edited.yaml |") == 8  # 7 principles + mean
    assert "pairwise (both orders)" in table and (out / "probes.png").stat().st_size > 1000
    summaries = json.loads((out / "probes.json").read_text())
    assert len(summaries) == 2
    for summary in summaries.values():
        assert summary["n_probes"] == 28 and 0.0 <= summary["mean_detection"] <= 1.0
    assert "detection = intact reply" in capsys.readouterr().out


# -- report and model card --------------------------------------------------------------------------
DETECTION = {"empathy": 0.75, "clarity": 0.25}


def finish(stage_dir: Path, counts: dict | None = None, metrics: dict | None = None) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stage_dir / "manifest.json", {"stage": stage_dir.name, "counts": counts or {},
                                                    "metrics": metrics or {}, "outputs_sha256": stage_dir.name,
                                                    "wall_seconds": 1.0, "rubric_sha256": "0" * 64})


def fake_run(run_dir: Path) -> None:
    """Finished manifests of every stage the report reads, with the probe and agreement figures in place."""
    from rewards.reporting.report import plot_principles

    finish(run_dir / "generate", {"n_prompts": 3, "n_candidates": 6, "n_train_prompts": 2, "n_test_prompts": 1})
    finish(run_dir / "judge", {"n_judged": 6})
    atomic_write_jsonl(run_dir / "judge" / "judged.jsonl", [{"scores": {"empathy": 3.0, "clarity": 2.5}}])
    finish(run_dir / "probes", {"n_probes": 4}, {"probe_detection": 0.5, "probe_detection_by_principle": DETECTION,
                                                "probe_weakest_principle": "clarity", "probe_length_baseline": 0.375})
    plot_principles({"a": 3.0}, {"a": 3.0}, run_dir / "probes" / "detection.png")  # any PNG stands in for the plot
    finish(run_dir / "agreement", {}, {"judge_accuracy": 0.61, "length_accuracy": 0.64})
    finish(run_dir / "calibrate", {}, {"judge_agreement": 0.61, "judge_agreement_ci": [0.5, 0.7],
                                       "judge_length_baseline": 0.64, "position_consistency": 0.4})
    finish(run_dir / "pairs", {"n_pairs": 4, "train_pairs": 3, "test_pairs": 1, "train_ties": 0, "test_ties": 0,
                               "train_vetoed": 0, "test_vetoed": 0})
    finish(run_dir / "reward", {}, {"rm_accuracy": 0.5, "rm_length_baseline": 0.5, "base_model": "tiny"})
    finish(run_dir / "dpo")
    side = {"by_category": {"self_harm": {"pass_rate": 1.0, "passed": 1, "total": 1}}, "pass_rate": 1.0,
            "rules_only_pass_rate": 1.0}
    safety = {"gate": {"release": True, "reason": "ok", "base_pass_rate": 1.0, "trained_pass_rate": 1.0,
                       "tolerance": 0.05}, "n_scenarios": 1, "harm_threshold": None, "base": side, "trained": side,
              "redflags_sha256": "r"}
    finish(run_dir / "evaluate", {}, {"base_score": 0.1, "dpo_score": 0.2, "win_rate": 0.5, "win_rate_ci": [0.2, 0.8],
                                      "wins": 0, "ties": 1, "losses": 0, "base_pass_rate": 1.0,
                                      "trained_pass_rate": 1.0, "release": True, "judge": {"backend": "local"},
                                      "base_principles": {"empathy": 3.0}, "dpo_principles": {"empathy": 3.1},
                                      "safety": safety})
    atomic_write_jsonl(run_dir / "evaluate" / "eval.jsonl", [{"base_reward": 0.1, "dpo_reward": 0.2}])


def test_report_metrics_and_model_card_carry_the_probe_and_agreement_figures(tmp_path):
    from recipes import report
    from recipes._entry import compose_config
    from recipes.export import run_card
    from rewards.reporting.model_card import render_card

    run_dir = tmp_path / "fake"
    fake_run(run_dir)
    cfg = compose_config([f"output_root={tmp_path}", "run=fake", "wandb.mode=disabled"])
    report.run(cfg)
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    assert metrics["probe_detection"] == 0.5 and metrics["probe_detection_by_principle"] == DETECTION
    assert metrics["probe_weakest_principle"] == "clarity" and metrics["judge_agreement"] == 0.61
    markdown = (run_dir / "report" / "report.md").read_text()
    for text in ("judge probe detection, mean over principles (length-only / random) | 0.500 (0.375 / 0.500)",
                 "| clarity (0.250) |", "judge agreement with human preferences (length-only) | 0.610 (0.640) |",
                 "| empathy | 0.750 |", "](probes.png)"):
        assert text in markdown, text
    assert "clarity (0.250)" in (run_dir / "report" / "report.html").read_text()
    assert (run_dir / "report" / "probes.png").exists()

    card = run_card(cfg, run_dir, {"safety": {"redflags_sha256": "r", "n_scenarios": 1}})
    assert card["metrics"]["probe_detection"] == 0.5 and card["metrics"]["probe_weakest_principle"] == "clarity"
    assert card["judge_checks"]["probe_detection_by_principle"] == DETECTION
    page = render_card(card)
    assert "| judge probe detection, mean over principles (length-only / random) | 0.500 (0.375 / 0.500) |" in page
    assert "Detection per principle: clarity 0.25, empathy 0.75." in page and "0.610 (0.640)" in page


def test_principles_probe_uses_every_probe_unless_limited(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-probe-test")
    folder = write_probes(tmp_path / "probes", {pid: [json.loads(line) for line in
                                                      (PROBES / f"{pid}.jsonl").read_text().splitlines()[:3]]
                                                for pid in ("empathy", "autonomy")})
    with FakeOpenAIServer() as server:
        base = ["probe", "--probes", str(folder), "judge=openai_compatible", f"judge.base_url={server.base_url}",
                "judge.model=fake", f"judge.api_key_env={KEY_ENV}", "judge.cache_path=null",
                "probes.bootstrap_resamples=50"]
        assert principles_cli.main([*base, "--out", str(tmp_path / "all")]) == 0  # quickstart's limit is 2
        assert principles_cli.main([*base, "--out", str(tmp_path / "one"), "probes.limit_per_principle=1"]) == 0
    counts = {name: next(iter(json.loads((tmp_path / name / "probes.json").read_text()).values()))["n_probes"]
              for name in ("all", "one")}
    assert counts == {"all": 6, "one": 2}


def test_a_bad_confidence_names_the_probes_key(tmp_path, capsys):
    assert probes_stage.main([f"output_root={tmp_path}", "probes.confidence=1.5"]) == 2
    assert "probes.confidence: 1.5 must lie strictly between 0 and 1" in capsys.readouterr().err
