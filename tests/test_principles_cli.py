"""`counsel-align principles validate|show|diff`."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from recipes import judge as judge_stage
from recipes.commands import principles_cli
from rewards.judges import JudgeItem, OpenAICompatibleJudge
from rewards.judges.base import score_messages
from tests.conftest import PROJECT_ROOT
from tests.fake_openai_server import FakeOpenAIServer
from tests.test_judge_stage_remote import KEY_ENV, SECRET, overrides, write_generate_output

RUBRIC = PROJECT_ROOT / "principles" / "psychocounsel.yaml"


class RecordingServer(FakeOpenAIServer):
    """The fake endpoint, keeping every request body it received."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bodies: list[dict] = []

    def answer(self, body: dict) -> tuple[int, dict]:
        self.bodies.append(body)
        return super().answer(body)


def _edited_rubric(tmp_path, rubric):
    data = rubric.model_dump(mode="json")
    by_id = {p["id"]: p for p in data["principles"]}
    by_id["empathy"]["description"] = "A reworded description of empathy."
    by_id["clarity"]["weight"] = 0.3
    data["principles"] = [p for p in data["principles"] if p["id"] != "autonomy"]
    data["principles"].append({**by_id["clarity"], "id": "humility", "name": "Humility", "weight": 1.0})
    data["version"] = 2
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_validate_ok_and_errors_name_file_and_field(tmp_path, rubric, capsys):
    assert principles_cli.main(["validate"]) == 0
    assert "ok:" in capsys.readouterr().out
    data = rubric.model_dump(mode="json")
    data["principles"][2]["anchors"].pop("5")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert principles_cli.main(["validate", str(RUBRIC), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "principles.2.anchors" in err[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nprinciples: [\n")
    assert principles_cli.main(["validate", str(broken)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    zero = tmp_path / "zero.yaml"
    zero.write_text(yaml.safe_dump({**rubric.model_dump(mode="json"), "principles": [
        {**p, "weight": 0} for p in rubric.model_dump(mode="json")["principles"]]}))
    assert principles_cli.main(["validate", str(zero)]) == 2
    assert "every weight is 0" in capsys.readouterr().err


def test_show_prints_exactly_what_the_judges_send(rubric, capsys, monkeypatch):
    item = JudgeItem("My sister stopped talking to me.", "That must hurt. What happened between you?")
    assert principles_cli.main(["show", "--client", item.client, "--reply", item.response, "--model", "fake-judge"]) \
        == 0
    out = capsys.readouterr().out
    for principle in rubric.principles:  # local: every principle's messages, verbatim
        for message in score_messages(rubric, item, principle):
            assert message["content"] in out
    # remote: the printed body is byte-for-byte the body the judge posts
    first_body = out.split("POST <base_url>/chat/completions with this body =====\n", 1)[1]
    printed = json.JSONDecoder().raw_decode(first_body)[0]
    monkeypatch.setenv(KEY_ENV, SECRET)
    with RecordingServer() as server:
        OpenAICompatibleJudge(rubric, server.base_url, "fake-judge", api_key_env=KEY_ENV).score([item])
    assert server.bodies == [printed]


def test_show_unknown_principle_is_one_line(capsys):
    assert principles_cli.main(["show", "--principle", "nope"]) == 2
    assert "no principle 'nope'" in capsys.readouterr().err


def test_weight_edits_keep_cached_answers(rubric, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    heavier = rubric.model_copy(update={"principles": [p.model_copy(update={"weight": 9.0, "safety": True})
                                                       for p in rubric.principles]})
    item = JudgeItem("a", "b")
    old, new = (OpenAICompatibleJudge(r, "http://x/v1", "m", api_key_env=KEY_ENV) for r in (rubric, heavier))
    assert all(old.principle_key(item, pid) == new.principle_key(item, pid) for pid in rubric.ids)


def test_diff_lists_principles_cached_answers_and_stale_outputs(tmp_path, rubric, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    edited = _edited_rubric(tmp_path, rubric)
    write_generate_output(tmp_path / "r")
    with FakeOpenAIServer(latency=0.001) as server:
        assert judge_stage.main([*overrides(tmp_path, server), f"principles.path={RUBRIC}"]) == 0
    capsys.readouterr()
    assert principles_cli.main(["diff", str(RUBRIC), str(edited), "--outputs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"changed: empathy \(description\)", out)
    assert re.search(r"changed: clarity \(weight\)", out)
    assert re.search(r"added: humility", out) and re.search(r"removed: autonomy", out)
    assert "judge answers to ask again (cache is per principle: id/name/description/anchors): empathy, humility" in out
    assert "still valid: personalization, clarity, harm_avoidance" in out  # a weight edit re-asks nothing
    assert str(tmp_path / "r" / "judge") in out and str(tmp_path / "r" / "generate") not in out
    assert "for r/judge: empathy: 10, autonomy: 10" in out
    assert principles_cli.main(["diff", str(RUBRIC), str(RUBRIC)]) == 0
    assert "no change" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["validate", "show", "diff"])
def test_cli_dispatches_principles(command, capsys):
    from recipes import cli

    with pytest.raises(SystemExit):
        cli.main(["principles", command, "--help"])
    assert "usage: counsel-align principles" in capsys.readouterr().out
