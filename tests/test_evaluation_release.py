"""Evaluation on a tiny run: safety gate and win-rate interval in metrics, the exported checkpoint and its card,
the offline report page, `runs`, pull/push, and evaluating a pulled checkpoint with one command."""

from __future__ import annotations

import json
import re

import pytest

from recipes import evaluate, pipeline
from recipes._entry import compose_config
from recipes.cli import main as cli_main
from rewards.errors import UserError
from rewards.safety import CATEGORIES
from tests.conftest import tiny_overrides

PLOTS = ("win_rates.png", "principles.png", "rewards.png", "safety.png", "training_curves.png")
SMALL = ["data.max_train_prompts=4", "data.max_test_prompts=2", "evaluate.redflag_limit=10",
         "evaluate.bootstrap_resamples=200"]


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-runs")
    overrides = [*tiny_overrides(tiny_model_dir, root, run="ev"), *SMALL]
    assert pipeline.main(overrides) == 0
    return root, overrides


def test_metrics_hold_both_pass_rates_the_gate_and_a_win_rate_interval(run):
    root, _ = run
    metrics = json.loads((root / "ev" / "evaluate" / "metrics.json").read_text())
    safety = metrics["safety"]
    assert set(safety["base"]["by_category"]) == set(CATEGORIES) == set(safety["trained"]["by_category"])
    gate = safety["gate"]
    assert gate["base_pass_rate"] == metrics["base_pass_rate"] == round(safety["base"]["pass_rate"], 4)
    assert metrics["release"] == (metrics["trained_pass_rate"] >= metrics["base_pass_rate"] - 0.05)
    low, high = metrics["win_rate_ci"]
    assert low <= metrics["win_rate"] <= high
    assert set(metrics["principle_win_rates"]) == set(metrics["dpo_principles"])
    rows = [json.loads(line) for line in (root / "ev" / "evaluate" / "redflags.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all("failures" in r["trained"] and "harm_score" in r["base"] for r in rows)


def test_exported_checkpoint_carries_the_card(run, rubric, tiny_model_dir):
    root, _ = run
    checkpoint = root / "ev" / "evaluate" / "checkpoint"
    assert (checkpoint / "adapter_config.json").exists() and (checkpoint / "reward_model").is_dir()
    card = json.loads((checkpoint / "model_card.json").read_text())
    assert card["rubric"]["sha256"] == rubric.content_hash() and "harm_avoidance" in card["rubric"]["text"]
    assert card["base_model"] == str(tiny_model_dir) and card["weights"] == "lora_adapter"
    assert all(len(card["data"][f"{s}_sha256"]) == 64 for s in ("generate", "judge", "pairs", "reward", "dpo"))
    assert card["data"]["generate.n_test_prompts"] == 2 and card["data"]["redflag_scenarios"] == 10
    assert card["judge"]["backend"] == "local" and card["training"]["dpo"]["beta"] == 0.1
    assert set(card["safety"]["trained"]["by_category"]) == set(CATEGORIES)
    assert "win_rate_ci" in card["metrics"] and "release" in card["metrics"]
    readme = (checkpoint / "README.md").read_text()
    assert "not a therapist" in readme.lower() and "suicidal_ideation" in readme and card["base_model"] in readme


def test_report_page_is_offline_with_every_plot(run):
    root, _ = run
    report = root / "ev" / "report"
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= len(PLOTS) and not re.search(r"src=\"https?:", page)
    markdown = (report / "report.md").read_text()
    for png in PLOTS:
        assert (report / png).stat().st_size > 1000 and png in markdown
    history = json.loads((root / "ev" / "dpo" / "log_history.json").read_text())
    assert any("loss" in h for h in history)


def test_runs_lists_the_run_with_its_metrics(run, capsys):
    root, _ = run
    assert cli_main(["runs", "--root", str(root)]) == 0
    table = capsys.readouterr().out
    line = next(line for line in table.splitlines() if line.startswith("ev "))
    assert "evaluate/checkpoint" in line and re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", line)


def test_warn_gate_returns_and_strict_gate_raises_with_both_rates(run):
    _, overrides = run

    held = {"checkpoint": "x", "safety": {"gate": {"release": False, "base_pass_rate": 0.5, "trained_pass_rate": 0.3,
                                                   "tolerance": 0.05, "reason": "trained 0.300 < base 0.500"}}}
    evaluate.enforce_gate(compose_config(overrides), held)
    cfg = compose_config([*overrides, "evaluate.gate=strict"])
    with pytest.raises(UserError, match=r"do NOT release.*0\.300.*0\.500"):
        evaluate.enforce_gate(cfg, held)


def test_push_pull_and_evaluate_pulled_checkpoint_in_one_command(run, tmp_path, capsys, tiny_model_dir):
    root, _ = run
    checkpoint = root / "ev" / "evaluate" / "checkpoint"
    assert cli_main(["push", str(checkpoint), str(tmp_path / "published")]) == 0
    assert cli_main(["pull", str(tmp_path / "published"), "--to", str(tmp_path / "fresh")]) == 0
    assert cli_main(["pull", str(tmp_path / "published"), "--to", str(tmp_path / "fresh")]) == 2  # not empty
    assert (tmp_path / "fresh" / "model_card.json").exists()
    capsys.readouterr()
    # Only the path: the base model comes from the card. A strict gate that cannot pass shows the exit line.
    # The judge is configured separately (its default follows model.name_or_path, the embedded model).
    code = cli_main(["evaluate-checkpoint", str(tmp_path / "fresh"), f"output_root={tmp_path / 'out'}",
                     f"judge.model={tiny_model_dir}",
                     "device=cpu", "evaluate.max_new_tokens=8", *SMALL, "evaluate.gate=strict",
                     "evaluate.gate_tolerance=-2"])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and re.search(r"trained \d\.\d{3} < base \d\.\d{3}", err[0])
    result = tmp_path / "out" / "eval-fresh" / "evaluate"
    metrics = json.loads((result / "metrics.json").read_text())
    assert metrics["release"] is False and metrics["base_score"] is not None  # reward model came with it
    manifest = json.loads((result / "manifest.json").read_text())
    assert manifest["config"]["model"]["name_or_path"] == json.loads(
        (checkpoint / "model_card.json").read_text())["base_model"]
    assert "data:image/png;base64," in (result / "report.html").read_text()


def test_hub_and_missing_checkpoint_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["pull", str(tmp_path / "nothing-here")]) == 2
    (tmp_path / "bare").mkdir()
    assert cli_main(["push", str(tmp_path / "bare"), str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not found" in err[0] and "model_card.json" in err[1]
