"""`counsel-align reward-eval`: breakdowns, baselines, CounselChat, plots, and bad-input accounting."""

import json

import pytest

from rewards.artifacts import atomic_write_json
from tests.conftest import PROJECT_ROOT
from tests.test_reward_io import lora_reward_model

COUNSELCHAT = PROJECT_ROOT.parent / "shared" / "datasets" / "counselchat"
IDS = ["empathy", "personalization", "clarity", "harm_avoidance", "self_exploration", "autonomy", "stage_of_change"]


def pair(prompt: str, chosen: str, rejected: str, topic: str, empathy_gap: int) -> dict:
    row = {"prompt_id": prompt[:8], "topic": topic, "prompt": [{"role": "user", "content": prompt}],
           "chosen": [{"role": "assistant", "content": chosen}],
           "rejected": [{"role": "assistant", "content": rejected}], "margin": 0.5}
    for pid in IDS:
        row[f"chosen_{pid}"], row[f"rejected_{pid}"] = 3.0, 3.0
    row["chosen_empathy"] = 3.0 + empathy_gap
    return row


def held_out() -> list[dict]:
    return [
        pair("I feel anxious at night.", "That sounds hard. What keeps you awake?", "Sleep.", "sleep", 1),
        pair("I feel alone.", "You feel alone, and that hurts. Who do you miss?", "Call someone.", "loneliness", 1),
        pair("Work is too much.", "Quit.", "It sounds like work is crushing you right now.", "work_stress", -1),
        pair("I argue with my partner.", "What happens when you argue?", "Talk it out.", "relationships", 0),
        pair("I am tired.", "   ", "Rest.", "sleep", 1),                      # empty chosen reply: dropped
        pair("I cannot sleep.", "word " * 200, "Try a routine.", "sleep", 1),  # over max_length: truncated
    ]


def finished_run(root, model_dir, tokenizer, rows: list[dict], with_model: bool = True) -> None:
    from datasets import Dataset, DatasetDict

    from rewards.reward_models.io import export_reward_model

    DatasetDict({"train": Dataset.from_list(rows[:2]), "test": Dataset.from_list(rows)}).save_to_disk(
        str(root / "run" / "pairs" / "dataset"))
    if with_model:
        export_reward_model(lora_reward_model(model_dir, tokenizer), tokenizer, root / "run" / "reward" / "model",
                            base_model=str(model_dir), weights={}, max_length=128)
    for stage in ("pairs", "reward"):
        atomic_write_json(root / "run" / stage / "manifest.json", {"stage": stage, "outputs_sha256": stage})


def overrides(root, model_dir) -> list[str]:
    return [f"model.name_or_path={model_dir}", f"output_root={root}", "run=run", "device=cpu",
            "wandb.mode=disabled"]


@pytest.mark.skipif(not COUNSELCHAT.exists(), reason="shared CounselChat copy not present")
def test_reward_eval_reports_breakdowns_baselines_counselchat_and_drops(tiny_model_dir, tiny_tokenizer, tmp_path,
                                                                        capsys):
    from recipes.reward_eval import main

    finished_run(tmp_path, tiny_model_dir, tiny_tokenizer, held_out())
    assert main([*overrides(tmp_path, tiny_model_dir), f"reward_eval.counselchat={COUNSELCHAT}",
                 "reward_eval.counselchat_max_pairs=12"]) == 0
    out = capsys.readouterr().out
    stage = tmp_path / "run" / "reward_eval"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["data"] == {"total": 6, "kept": 5, "truncated": 1, "dropped": {"empty response": 1},
                               "n_dropped": 1}
    rm, length = metrics["reward_model"], metrics["length_baseline"]
    assert rm["n"] == 5 and 0.0 <= rm["accuracy"] <= 1.0
    assert length["accuracy"] == 0.8  # the chosen reply is longer in 4 of the 5 kept pairs
    assert rm["by_principle"]["empathy"]["n"] == 4 and rm["by_principle"]["clarity"]["n"] == 0
    assert length["by_principle"]["empathy"]["accuracy"] == 1.0  # the empathy-better reply is always longer
    assert set(rm["by_topic"]) == {"sleep", "loneliness", "work_stress", "relationships"}
    assert rm["by_length"]["chosen shorter"]["n"] == 1
    assert 0.0 <= metrics["loglik_baseline"]["accuracy"] <= 1.0
    cc = metrics["counselchat"]
    assert cc["pairs"] == 12 and cc["split"] == "test" and 0.0 <= cc["accuracy"] <= 1.0
    assert cc["ci95_by_question"][0] <= cc["accuracy"] <= cc["ci95_by_question"][1]
    assert "held-out accuracy" in out and "length baseline 0.8" in out and "CounselChat" in out
    for png in ("score_histogram.png", "calibration.png"):
        assert (stage / png).stat().st_size > 1000 and png in (stage / "report.md").read_text()
    assert "1 over max_length" in (stage / "report.md").read_text()


def test_missing_column_is_a_one_line_error(tiny_model_dir, tiny_tokenizer, tmp_path, capsys):
    from recipes.reward_eval import main

    rows = [{k: v for k, v in r.items() if k != "rejected"} for r in held_out()]
    finished_run(tmp_path, tiny_model_dir, tiny_tokenizer, rows, with_model=False)  # fails before loading it
    assert main([*overrides(tmp_path, tiny_model_dir), "reward_eval.loglik_baseline=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: the fixture's dataset-saving progress
    assert err.startswith("counsel-align reward-eval: error:") and "missing column(s) ['rejected']" in err


def test_calibration_bins_confidence_against_accuracy():
    from rewards.reward_models.evaluation import calibration

    table = calibration([5.0, 5.0, 0.1, 0.0], [0.0, 0.0, 0.0, 0.1])
    assert sum(row["n"] for row in table["bins"]) == 4
    top = table["bins"][-1]
    assert top["accuracy"] == 1.0 and top["n"] == 2
    low = table["bins"][0]
    assert low["n"] == 2 and low["accuracy"] == 0.5
    assert 0.0 < table["ece"] < 0.5
