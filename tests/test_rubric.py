from pathlib import Path

import pytest
import yaml

from rewards.errors import UserError
from rewards.rubric import load_rubric

EXPECTED_IDS = ["empathy", "personalization", "clarity", "harm_avoidance", "self_exploration", "autonomy",
                "stage_of_change"]


def test_shipped_rubric_has_seven_principles_and_one_safety_flag(rubric):
    assert rubric.ids == EXPECTED_IDS
    assert rubric.safety_ids == ["harm_avoidance"]
    assert all({1, 3, 5} <= set(p.anchors) for p in rubric.principles)


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "rubric.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _raw(rubric) -> dict:
    return rubric.model_dump(mode="json")


def test_missing_field_names_file_and_field(tmp_path, rubric):
    data = _raw(rubric)
    del data["principles"][2]["description"]
    path = _write(tmp_path, data)
    with pytest.raises(UserError) as error:
        load_rubric(path)
    message = str(error.value)
    assert str(path) in message and "principles.2.description" in message and "missing" in message


def test_misspelt_field_is_rejected(tmp_path, rubric):
    data = _raw(rubric)
    data["principles"][0]["wieght"] = data["principles"][0].pop("weight")
    with pytest.raises(UserError, match="wieght"):
        load_rubric(_write(tmp_path, data))


def test_duplicate_ids_and_missing_anchor(tmp_path, rubric):
    data = _raw(rubric)
    data["principles"][1]["id"] = "empathy"
    with pytest.raises(UserError, match="repeated: empathy"):
        load_rubric(_write(tmp_path, data))
    data = _raw(rubric)
    del data["principles"][0]["anchors"]["5"]
    with pytest.raises(UserError, match="anchors"):
        load_rubric(_write(tmp_path, data))


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nprinciples: [\n  - id: a\n")
    with pytest.raises(UserError, match="broken.yaml.*line"):
        load_rubric(path)


def test_hash_follows_content_not_formatting(tmp_path, rubric):
    data = _raw(rubric)
    reformatted = tmp_path / "a.yaml"
    reformatted.write_text(yaml.safe_dump(data, default_flow_style=True))
    assert load_rubric(reformatted).content_hash() == rubric.content_hash()
    data["principles"][0]["description"] += " Also notice tone."
    assert load_rubric(_write(tmp_path, data)).content_hash() != rubric.content_hash()


def test_weight_overrides(rubric):
    weights = rubric.weights({"clarity": 0.0})
    assert weights["clarity"] == 0.0 and weights["harm_avoidance"] == 1.5
    with pytest.raises(UserError, match="unknown principle"):
        rubric.weights({"kindness": 1.0})
