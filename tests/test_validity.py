"""The validity preset's parts on a tiny model: SFT, reward_eval and evaluate against several references in the
pipeline, the report's validity table; the quickstart's stages and fingerprints untouched."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from recipes import evaluate, pipeline
from recipes._entry import compose_config
from recipes.stages import pipeline_stages, stage_spec
from rewards.artifacts import read_jsonl
from rewards.errors import UserError
from rewards.evaluation.winrate import length_win_rate_with_ci
from tests.conftest import tiny_overrides
from tests.human_data import COLUMNS, answer

QUICKSTART_STAGES = ["generate", "calibrate", "judge", "probes", "pairs", "reward", "dpo", "evaluate", "report"]


def write_split_counselchat(path: Path) -> Path:
    """Our own text in CounselChat's shape: voted pairs in train (SFT, human pairs), val (calibrate), test
    (reward_eval)."""
    questions = [
        ("q/sleep", "train", "I feel anxious and I cannot sleep at night.",
         [("What goes through your mind when you lie awake?", 3), ("Sleep more.", 0)]),
        ("q/money", "train", "My partner and I argue about money and I feel alone.",
         [("That sounds lonely. What happens in those arguments?", 2), ("Leave them.", 0)]),
        ("q/work", "train", "My boss yells at me in meetings.",
         [("Being yelled at in front of others hurts. How do you respond?", 4), ("Quit.", 0)]),
        ("q/val1", "val", "I wake up at three every night and my mind races.",
         [("A racing mind at night is exhausting. What comes first?", 2), ("Take a pill.", 0)]),
        ("q/val2", "val", "My dog died and I cannot stop crying.",
         [("Losing a companion hurts; what do you miss most?", 3), ("It was only a dog.", 0)]),
        ("q/test1", "test", "I feel like nobody at school likes me.",
         [("Feeling left out at school is painful. When is it hardest?", 5), ("Try harder.", 0)]),
        ("q/test2", "test", "I get nervous before every exam.",
         [("Exam nerves are common. What do you notice in your body?", 2), ("Study.", 0)]),
    ]
    rows = [answer(link, question, text, votes, split=split) for link, split, question, replies in questions
            for text, votes in replies]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def validity_overrides(model_dir: Path, root: Path, people: Path) -> list[str]:
    """The validity preset's shape at tiny sizes: sft first, human pairs, reward_eval, evaluate vs base and SFT."""
    sft = ["max_steps=2", "per_device_train_batch_size=2", "max_length=128", "save_steps=1000", "logging_steps=1"]
    return [*tiny_overrides(model_dir, root, run="v"), f"calibration.source={people}", "calibration.max_pairs=2",
            f"sft.data.source={people}", *[f"sft.{o}" for o in sft],
            f"pairs.human.sources=[{{name: people, path: {people}, format: ranked, split: train, weight: 1.0}}]",
            f"reward_eval.counselchat={people}", "reward_eval.counselchat_split=test", "reward_eval.batch_size=4",
            "dpo.init_from=sft", "dpo.max_steps=1", "evaluate.extra_references=[sft]", "probes.limit_per_principle=1",
            "evaluate.redflag_limit=2", "evaluate.bootstrap_resamples=200"]


@pytest.fixture(scope="module")
def validity_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("validity")
    overrides = validity_overrides(tiny_model_dir, root, write_split_counselchat(root / "people.csv"))
    assert pipeline.main(overrides) == 0
    return root / "v", overrides


def test_the_quickstart_runs_the_same_stages_and_the_validity_preset_adds_sft_and_reward_eval():
    assert [s.name for s in pipeline_stages(compose_config([]))] == QUICKSTART_STAGES
    validity = compose_config(["experiment=validity"])
    assert [s.name for s in pipeline_stages(validity)] == ["sft", *QUICKSTART_STAGES[:6], "reward_eval",
                                                           *QUICKSTART_STAGES[6:]]
    assert validity.reward_eval.counselchat_split == "test" and list(validity.evaluate.extra_references) == ["sft"]
    assert validity.pairs.human.sources[0].split == "train"


def test_quickstart_evaluate_and_report_read_only_their_declared_stages():
    cfg = compose_config([])
    assert evaluate.inputs(cfg) == list(stage_spec("evaluate").input_stages)  # no sft: same fingerprint as before
    from recipes import report

    assert report.inputs(cfg) == list(stage_spec("report").input_stages)


def test_sft_as_a_reference_makes_the_pipeline_run_sft_and_evaluate_read_it():
    cfg = compose_config(["evaluate.extra_references=[sft]"])
    assert pipeline_stages(cfg)[0].name == "sft" and evaluate.inputs(cfg)[0] == "sft"


def test_length_baseline_counts_the_longer_trained_reply_as_a_win_ties_half():
    result = length_win_rate_with_ci(["a longer reply", "same", "x"], ["short", "same", "a longer one"],
                                     n_resamples=50)
    assert (result["wins"], result["ties"], result["losses"]) == (1, 1, 1) and result["win_rate"] == 0.5
    assert result["ci_low"] <= 0.5 <= result["ci_high"]


def test_the_pipeline_runs_sft_and_reward_eval_and_compares_with_base_and_sft(validity_run):
    run_dir, _ = validity_run
    cc = json.loads((run_dir / "reward_eval" / "metrics.json").read_text())["counselchat"]
    assert cc["split"] == "test" and cc["pairs"] == 2 and len(cc["ci95_by_question"]) == 2
    manifest = json.loads((run_dir / "evaluate" / "manifest.json").read_text())
    assert "sft" in manifest["inputs"]
    comparisons = manifest["metrics"]["comparisons"]
    assert list(comparisons) == ["base", "sft"]
    for got in comparisons.values():
        assert got["n"] == 3 and len(got["win_rate_ci"]) == len(got["expected_preference_ci"]) == 2
        assert 0.0 <= got["length_baseline"] <= 1.0
    main = manifest["metrics"]
    assert (main["win_rate"], main["expected_preference"]) == (comparisons["base"]["win_rate"],
                                                               comparisons["base"]["expected_preference"])
    rows = read_jsonl(run_dir / "evaluate" / "eval.jsonl")
    assert all(set(r["extra_references"]) == {"sft"} and isinstance(r["extra_references"]["sft"]["reply"], str)
               for r in rows)
    card = json.loads((Path(main["exported_checkpoint"]) / "model_card.json").read_text())
    assert card["metrics"]["preference_over_sft"] == comparisons["sft"]["expected_preference"]
    assert card["metrics"]["win_rate_over_base_ci"] == comparisons["base"]["win_rate_ci"]


def test_the_report_shows_each_validity_figure_beside_its_baseline(validity_run):
    run_dir, _ = validity_run
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    for key in ("judge_agreement", "judge_pairwise_agreement", "judge_pairwise_agreement_ci",
                "rm_counselchat_accuracy", "rm_counselchat_accuracy_ci",
                "rm_counselchat_length_baseline", "preference_over_sft", "preference_over_sft_ci",
                "win_rate_over_sft_ci", "length_baseline_over_sft", "preference_over_base_ci",
                "length_baseline_over_base"):
        assert metrics[key] is not None, key
    assert {"sft", "reward_eval"} <= set(metrics["stage_seconds"])
    report = (run_dir / "report" / "report.md").read_text()
    section = report[report.index("## Validity"):]
    for row in ("judge agreement with people", "judge pairwise agreement with people",
                "reward-model accuracy on CounselChat test pairs",
                "trained over SFT: expected judged preference", "trained over base: strict win rate"):
        assert row in section, row
    assert "Validity" in (run_dir / "report" / "report.html").read_text()


def test_sft_as_a_reference_without_an_sft_stage_is_one_clear_line(validity_run, tmp_path, capsys):
    run_dir, overrides = validity_run
    copy = tmp_path / "v"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("sft", "evaluate", "report"))
    assert evaluate.main([*overrides, f"output_root={tmp_path}"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "sft" in error and "run `counsel-align sft` first" in error


def test_an_extra_reference_that_is_no_model_or_file_is_refused_naming_the_key(tmp_path):
    from recipes.assessment import check_evaluate_config

    with pytest.raises(UserError, match="evaluate.extra_references: .*nowhere"):
        check_evaluate_config(compose_config([f"evaluate.extra_references=[{tmp_path}/nowhere]"]))



def test_sft_as_a_reference_of_an_exported_checkpoint_is_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="'sft' is a run's sft stage model"):
        evaluate.run(compose_config([f"evaluate.checkpoint={tmp_path}", "evaluate.extra_references=[sft]",
                                     f"output_root={tmp_path}"]))
    assert not (tmp_path / "quickstart" / "evaluate").exists()


def test_a_missing_input_stage_names_the_command_that_runs_it(tmp_path):
    """reward_eval's command is `reward-eval`: the hint must be a command the CLI has."""
    from recipes._entry import StageContext

    cfg = compose_config([f"output_root={tmp_path}", "run=r"])
    ctx = StageContext(cfg=cfg, name="report", run_dir=tmp_path / "r", dir=tmp_path / "r" / "report")
    with pytest.raises(UserError, match="run `counsel-align reward-eval` first"):
        ctx.input_dir("reward_eval")
