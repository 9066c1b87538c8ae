"""Hydra's command line: multirun sweeps of the reward stage (submitit_local), their rerun, Optuna, sweep errors;
the report's sweep section; DPO's held-out objective.

These launch real (tiny) training: four reward-model points of one step each on the tiny model and 8 pairs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recipes._entry import _objective, compose_config, run_stage
from recipes.commands.runs import collect_runs, format_sweep
from recipes.dpo import main as dpo_main
from recipes.pipeline import main as pipeline_main
from recipes.pipeline import run as pipeline_run
from recipes.report import main as report_main
from recipes.reward import main as reward_main
from recipes.stages import STAGES, sweep_objectives
from rewards.reporting.sweep import plot_sweep, sweep_points
from tests.conftest import PROJECT_ROOT, tiny_overrides
from tests.sweep_runs import manifests, reward_run

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the [cluster] extra")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the [cluster] extra")

SWEEP = ["reward.learning_rate=1e-4,1e-3", "reward.lora.r=4,8"]


def test_a_2x2_sweep_with_submitit_local_runs_four_points_and_a_rerun_skips_them(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))  # submitit's job processes import this checkout
    base = reward_run(tiny_model_dir, tmp_path, "s")
    command = [*base, "-m", "hydra/launcher=submitit_local", *SWEEP]
    assert reward_main(command) == 0
    run_dir = tmp_path / "s"
    points = sorted(p.parent.parent for p in run_dir.glob("*/reward/manifest.json"))
    assert [p.name for p in points] == ["reward.learning_rate=0.0001,reward.lora.r=4",
                                        "reward.learning_rate=0.0001,reward.lora.r=8",
                                        "reward.learning_rate=0.001,reward.lora.r=4",
                                        "reward.learning_rate=0.001,reward.lora.r=8"]
    for point in points:
        assert {"config.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in (point / ".hydra").iterdir()}
        config = yaml.safe_load((point / ".hydra" / "config.yaml").read_text())
        manifest = json.loads((point / "reward" / "manifest.json").read_text())
        assert manifest["config"]["reward"]["lora"]["r"] == config["reward"]["lora"]["r"]
        assert manifest["inputs"]["pairs"] == json.loads((run_dir / "pairs" / "manifest.json").read_text())[
            "outputs_sha256"]  # each point read the run's pairs
    runs = {s["run"]: s for s in collect_runs(tmp_path)}
    sweep = runs["s"]["sweep"]
    assert [p["status"] for p in sweep] == ["finished"] * 4
    assert all(p["objective"] == "rm_accuracy" and isinstance(p["value"], float) for p in sweep)
    table = format_sweep("s", sweep)
    assert "reward.learning_rate=0.001 reward.lora.r=8" in table and "rm_accuracy=" in table

    before = manifests(run_dir)
    assert reward_main(command) == 0  # the same sweep again: every point is up to date
    assert manifests(run_dir) == before


def test_an_optuna_search_of_four_trials_finishes_and_reports_the_best(tiny_model_dir, tmp_path):
    base = reward_run(tiny_model_dir, tmp_path, "o")
    assert reward_main([*base, "-m", "hydra/sweeper=reward_search", "hydra.sweeper.n_trials=4"]) == 0
    run_dir = tmp_path / "o"
    result = yaml.safe_load((run_dir / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"reward.learning_rate", "reward.lora.r"}
    assert 0.0 <= result["best_value"] <= 1.0
    points = [p for p in collect_runs(tmp_path)[0]["sweep"] if p["status"] == "finished"]
    assert len(points) == 4 and max(p["value"] for p in points) == result["best_value"]


def test_a_misspelt_key_in_a_sweep_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "recipes.cli", "reward", "-m", f"output_root={tmp_path}",
                             "reward.lerning_rate=1e-4,1e-3"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ})
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(lines) == 1 and "reward.lerning_rate" in lines[0]
    assert not list(tmp_path.iterdir())  # no point started


def test_a_wrong_value_in_any_sweep_point_stops_before_the_first(tmp_path, capsys):
    assert reward_main(["-m", f"output_root={tmp_path}", "reward.learning_rate=1e-4,abc"]) == 2
    assert "reward.learning_rate='abc' is not a number" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cfg_hydra_and_info_print_hydra_settings(capsys):
    assert reward_main(["--cfg", "hydra"]) == 0
    assert "override_dirname" in capsys.readouterr().out
    assert reward_main(["--info", "plugins"]) == 0
    out = capsys.readouterr().out
    assert "SubmititLauncher" in out and "OptunaSweeper" in out


def test_hydra_run_dir_is_where_the_stage_writes_and_dot_hydra_is_saved(tiny_model_dir, tmp_path):
    base = reward_run(tiny_model_dir, tmp_path, "r")
    target = tmp_path / "elsewhere"
    assert reward_main([*base, f"hydra.run.dir={target}", f"inputs_from={tmp_path / 'r'}"]) == 0
    assert (target / "reward" / "manifest.json").is_file() and (target / ".hydra" / "overrides.yaml").is_file()


def test_hydra_job_chdir_runs_the_stage_in_its_run_folder(tiny_model_dir, tmp_path):
    base = reward_run(tiny_model_dir, tmp_path, "c")
    cwd = Path.cwd()
    assert reward_main([*base, "hydra.job.chdir=true"]) == 0
    assert Path.cwd() == cwd  # Hydra changes back after the job
    assert (tmp_path / "c" / "reward" / "manifest.json").is_file() and (tmp_path / "c" / ".hydra").is_dir()


def test_a_run_s_report_after_a_2_point_sweep_has_a_sweep_section_with_one_plot_per_parameter(tiny_model_dir,
                                                                                                tmp_path):
    base = tiny_overrides(tiny_model_dir, tmp_path, "p")
    assert pipeline_main(base) == 0
    evaluated = pipeline_run(compose_config(base))  # every stage up to date: what a pipeline sweep point returns
    assert isinstance(_objective("pipeline", evaluated), float)
    assert _objective("pipeline", evaluated) == evaluated["metrics"]["win_rate"]
    report = tmp_path / "p" / "report"
    assert "## Sweep" not in (report / "report.md").read_text()  # not swept yet
    sweep = [*base, "reward.max_steps=1"]
    assert reward_main([*sweep, "-m", "reward.learning_rate=1e-4,1e-3"]) == 0
    assert report_main(base) == 0  # `counsel-align report run=p` after the sweep: the report is remade
    markdown = (report / "report.md").read_text()
    assert "## Sweep" in markdown and "![objective by reward.learning_rate](sweep_reward.learning_rate.png)" in markdown
    assert "reward.learning_rate=0.0001" in markdown and "reward.learning_rate=0.001" in markdown
    assert markdown.count("rm_accuracy=") == 2
    assert (report / "sweep_reward.learning_rate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<h2>Sweep</h2>" in (report / "report.html").read_text()
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["sweep"]["n_points"] == 2 and metrics["sweep"]["objective"] == "rm_accuracy"
    before = (report / "manifest.json").stat().st_mtime_ns
    assert report_main(base) == 0  # the same sweep: up to date
    assert (report / "manifest.json").stat().st_mtime_ns == before


def test_the_report_of_a_run_that_is_only_a_sweep_is_its_sweep_section(tiny_model_dir, tmp_path):
    base = reward_run(tiny_model_dir, tmp_path, "w")
    assert reward_main([*base, "-m", "reward.learning_rate=1e-4,1e-3"]) == 0
    assert report_main(base) == 0
    report = tmp_path / "w" / "report"
    assert "## Sweep" in (report / "report.md").read_text() and "no finished evaluate" in (
        report / "report.md").read_text()
    assert (report / "sweep_reward.learning_rate.png").is_file()
    plot = (report / "sweep_reward.learning_rate.png").read_bytes()
    points = sweep_points(tmp_path / "w", sweep_objectives())
    again = plot_sweep("w", points, tmp_path)  # the same points draw the same bytes (the kill harness compares them)
    assert [p.read_bytes() for p in again] == [plot]


def write_swapped_test_pairs(overrides: list[str]) -> None:
    """A finished `pairs` stage whose test pairs are its train pairs with chosen and rejected swapped."""
    from datasets import Dataset, DatasetDict

    def work(ctx):
        rows = [{"prompt": [{"role": "user", "content": f"I feel anxious ({i}) and I cannot sleep at night."}],
                 "chosen": [{"role": "assistant", "content": "That sounds really hard. What goes through your mind?"}],
                 "rejected": [{"role": "assistant", "content": "Score: 1 Just sleep."}]} for i in range(8)]
        swapped = [{**row, "chosen": row["rejected"], "rejected": row["chosen"]} for row in rows[:4]]
        DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(swapped)}).save_to_disk(
            str(ctx.dir / "dataset"))
        return {"counts": {"train_pairs": len(rows)}}

    run_stage(compose_config(overrides), "pairs", work, ["seed"], inputs=[])


def test_dpo_s_sweep_objective_is_the_reward_margin_on_the_held_out_test_pairs(tiny_model_dir, tmp_path):
    overrides = [*tiny_overrides(tiny_model_dir, tmp_path, "d"), "dpo=full", "dpo.max_steps=4",
                 "dpo.learning_rate=1e-3", "dpo.max_length=64", "dpo.logging_steps=1"]
    write_swapped_test_pairs(overrides)
    assert dpo_main(overrides) == 0
    manifest = json.loads((tmp_path / "d" / "dpo" / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert manifest["counts"]["n_eval_pairs"] == 4
    # Trained to prefer the chosen replies, the policy prefers the rejected ones of the swapped test pairs: the
    # objective comes from the test split (TRL's evaluate), not from the train margin.
    assert metrics["reward_margin"] > 0 and metrics["eval_reward_margin"] < 0
    assert metrics["eval_reward_accuracy"] == 0.0 and metrics["eval_loss"] > 0
    assert STAGES["dpo"].objective == "eval_reward_margin"
    assert _objective("dpo", manifest) == metrics["eval_reward_margin"]


def test_dpo_scores_at_most_max_eval_pairs_held_out_pairs_and_none_with_zero():
    from datasets import Dataset, DatasetDict

    from recipes.dpo import held_out_pairs

    rows = [{"prompt": f"p{i}", "chosen": "c", "rejected": "r", "weight": 1.0} for i in range(5)]
    pairs = DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows)})
    columns = ["prompt", "chosen", "rejected"]
    assert len(held_out_pairs(pairs, columns, None)) == 5
    assert held_out_pairs(pairs, columns, 3)["prompt"] == ["p0", "p1", "p2"]
    assert held_out_pairs(pairs, columns, 3).column_names == columns
    assert held_out_pairs(pairs, columns, 0) is None
    assert held_out_pairs(DatasetDict({"train": pairs["train"]}), columns, None) is None
