"""The calibrate stage (the judge measured on human pairs in every run) and the warning in report and model card."""

from __future__ import annotations

import json

import pytest

from recipes import calibrate
from recipes._entry import compose_config
from rewards.errors import UserError
from rewards.judges.agreement import calibration_summary, judge_warning, position_consistency
from rewards.reporting.model_card import build_card, render_card
from rewards.reporting.report import render_markdown
from tests.conftest import write_tiny_counselchat

KEYS = {"judge_agreement", "judge_agreement_ci", "judge_length_baseline", "position_consistency"}


@pytest.fixture(scope="module")
def calibrated(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    source = write_tiny_counselchat(root / "cc.csv")
    cfg = compose_config([f"model.name_or_path={tiny_model_dir}", f"output_root={root}", "run=c", "device=cpu",
                          f"calibration.source={source}", "calibration.split=val", "calibration.max_pairs=null"])
    return calibrate.run(cfg), root / "c" / "calibrate", cfg


def test_calibrate_writes_agreement_beside_length_and_position_consistency(calibrated):
    manifest, folder, _ = calibrated
    result = json.loads((folder / "calibration.json").read_text())
    assert KEYS <= set(result) and KEYS <= set(manifest["metrics"])
    assert result["calibration_pairs"] == 7 == manifest["counts"]["n_judged_pairs"]  # the val pairs of the CSV
    assert 0.0 <= result["judge_agreement"] <= 1.0 and 0.0 <= result["position_consistency"] <= 1.0
    low, high = result["judge_agreement_ci"]
    assert low <= result["judge_agreement"] <= high
    # In the tiny CSV the upvoted answer is always the longer one.
    assert result["judge_length_baseline"] == 1.0
    assert len((folder / "pairwise.jsonl").read_text().splitlines()) == 7
    assert "Judge calibration" in (folder / "report.md").read_text()


def test_calibrate_is_skipped_when_nothing_changed(calibrated, capsys):
    manifest, _, cfg = calibrated
    assert calibrate.run(cfg)["fingerprint"] == manifest["fingerprint"]
    assert "calibrate: up to date, skipped" in capsys.readouterr().out


def test_a_missing_calibration_source_is_one_line_naming_the_key(tmp_path):
    cfg = compose_config([f"output_root={tmp_path}", "calibration.source=../nowhere/counsel_chat.csv"])
    with pytest.raises(UserError, match=r"calibration.source: \.\./nowhere/counsel_chat.csv not found; pass "
                                        r"calibration.source=nbertagnolli/counsel-chat"):
        calibrate.run(cfg)


def test_position_consistency_counts_preferences_that_survive_the_swap():
    orders = [{"as_a": 0.9, "as_b": 0.8}, {"as_a": 0.9, "as_b": 0.2}, {"as_a": 0.1, "as_b": 0.3}, {"as_a": 0.6,
                                                                                                   "as_b": 0.4}]
    assert position_consistency(orders) == 0.5
    assert position_consistency([]) is None


def calibration(agreement: float, length: float) -> dict:
    report = {"n_pairs": 40, "n_questions": 12, "judge": {"accuracy": agreement, "ci95": [agreement - 0.1, 0.7]},
              "length_baseline": {"accuracy": length, "ci95": [0.4, 0.8]}}
    return calibration_summary(report, 0.6)


def test_warning_only_when_the_judge_is_not_above_length_only():
    assert judge_warning(calibration(0.62, 0.55)) is None
    assert "not above the length-only baseline (0.550)" in judge_warning(calibration(0.55, 0.55))
    assert "0.450 [0.350, 0.700]" in judge_warning(calibration(0.45, 0.55))
    assert judge_warning(None) is None


def report_page(extra_warning: str | None) -> str:
    metrics = {"n_candidates": 3, "n_judged": 3, "rm_accuracy": 0.5, "rm_length_baseline": 0.5, "base_score": 0.1,
               "dpo_score": 0.2, "win_rate": 0.5, "stage_seconds": {"generate": 1.0}} | calibration(0.45, 0.55)
    extra = {"n_train_prompts": 2, "n_test_prompts": 1, "train_pairs": 1, "test_pairs": 1, "ties": 0, "vetoed": 0,
             "wins": 1, "ties_eval": 0, "losses": 0, "base_principles": {}, "dpo_principles": {}, "model": "m",
             "rubric": "r.yaml", "rubric_sha256": "0" * 64, "judge": "local", "judge_warning": extra_warning,
             "judge_config": {"backend": "local", "model": "m"}}
    return render_markdown("t", metrics, extra)


def test_report_puts_the_warning_above_everything_else():
    warning = judge_warning(calibration(0.45, 0.55))
    page = report_page(warning)
    assert page.index(warning) < page.index("Model:") < page.index("## Headline figures")
    assert "| judge agreement with people [95% CI by question] | 0.450 [0.350, 0.700] |" in page
    assert "Warning" not in report_page(None)


def test_model_card_carries_the_calibration_and_the_warning():
    kwargs = {"name": "n", "base_model": "b", "weights": "lora_adapter", "rubric": {}, "data": {}, "judge": {},
              "training": {}, "metrics": {}, "safety": {}}
    card = build_card(**kwargs, calibration=calibration(0.45, 0.55))
    page = render_card(card)
    assert card["judge_calibration"]["judge_length_baseline"] == 0.55
    assert page.index("not above the length-only baseline") < page.index("## How it was made")
    good = render_card(build_card(**kwargs, calibration=calibration(0.7, 0.55)))
    assert "not above the length-only" not in good and "| judge_agreement | 0.700 |" in good


@pytest.mark.parametrize(("section", "sample"), [("calibration", "calibration_pairs"), ("agreement", "human_pairs")])
def test_an_empty_split_names_the_key_of_its_own_section(tmp_path, section, sample):
    from recipes import agreement

    source = write_tiny_counselchat(tmp_path / "cc.csv")  # train and val questions only
    cfg = compose_config([f"output_root={tmp_path}", f"{section}.source={source}", f"{section}.split=test"])
    pairs_of = getattr(calibrate if section == "calibration" else agreement, sample)
    with pytest.raises(UserError, match=rf"^{section}\.split: no pairs in split 'test' .*; use {section}\.split=all$"):
        pairs_of(cfg)
