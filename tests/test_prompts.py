import json
from collections import Counter

import pytest

from rewards.errors import UserError
from rewards.prompts import load_prompts, select_prompts, split_of
from tests.conftest import PROJECT_ROOT

STAGES = {"precontemplation", "contemplation", "preparation", "action", "maintenance"}


@pytest.fixture(scope="module")
def prompts():
    return load_prompts(PROJECT_ROOT / "data" / "prompts")


def test_builtin_prompts_cover_the_brief(prompts):
    assert len(prompts) >= 150
    assert len({p.topic for p in prompts}) >= 10
    assert {p.stage_of_change for p in prompts} == STAGES
    assert {p.risk for p in prompts} <= {"low", "moderate", "high"}


def test_split_is_stable_and_roughly_the_requested_fraction(prompts):
    first = [split_of(p.id, 0.2) for p in prompts]
    assert first == [split_of(p.id, 0.2) for p in reversed(prompts)][::-1]
    share = Counter(first)["test"] / len(prompts)
    assert 0.1 < share < 0.3
    # Growing the test fraction only moves prompts from train to test.
    assert all(split_of(p.id, 0.3) == "test" for p, s in zip(prompts, first, strict=True) if s == "test")


def test_select_limits_and_never_mixes_splits(prompts):
    train = select_prompts(prompts, "train", 0.2, limit=10)
    test = select_prompts(prompts, "test", 0.2)
    assert len(train) == 10 and not {p.id for p in train} & {p.id for p in test}
    assert len({p.topic for p in train}) > 3  # hash order spreads a small subset over topics


def test_bad_lines_name_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "hi", "topic": "x", "stage_of_change": "action"}) + "\n")
    with pytest.raises(UserError, match=r"p.jsonl:1: missing field\(s\) \['risk'\]"):
        load_prompts(path)
    path.write_text("{not json\n")
    with pytest.raises(UserError, match="p.jsonl:1: not valid JSON"):
        load_prompts(path)
