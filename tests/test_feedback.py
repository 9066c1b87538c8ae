"""Trainee feedback: local judge (scores, generated reasons, suggestion), remote JSON-schema judge, simulated client."""

from __future__ import annotations

import json

import pytest

from recipes.commands.feedback import main as feedback_main
from rewards.errors import UserError
from rewards.judges.feedback import feedback_schema, one_line, remote_feedback
from tests.fake_openai_server import FakeOpenAIServer


class FeedbackServer(FakeOpenAIServer):
    """The fake endpoint, answering the nested feedback schema: integer scores, string reasons, a suggestion."""

    def answer(self, body: dict) -> tuple[int, dict]:
        status, payload = super().answer({**body, "response_format": None})
        schema = body["response_format"]["json_schema"]["schema"]["properties"]
        ids = list(schema["scores"]["properties"])
        answer = {"scores": {pid: 1 + i % 5 for i, pid in enumerate(ids)},
                  "reasons": {pid: f"Because of {pid}.\nSecond line ignored." for pid in ids},
                  "suggestion": "Name the feeling you hear before asking a question. Then more."}
        payload["choices"][0]["message"]["content"] = json.dumps(answer)
        return status, payload


def _files(tmp_path):
    message, reply = tmp_path / "client.txt", tmp_path / "reply.txt"
    message.write_text("I feel anxious and I cannot sleep at night.")
    reply.write_text("That sounds really hard. What goes through your mind when you lie awake?")
    return message, reply


def test_one_line_keeps_the_first_sentence():
    assert one_line("Reason: It reflects feelings. It also asks.\nMore") == "It reflects feelings."
    assert one_line("   ") == "(the judge gave no reason)"


def test_local_feedback_has_a_score_reason_and_suggestion(tiny_model_dir, tmp_path, rubric, capsys):
    message, reply = _files(tmp_path)
    out = tmp_path / "fb.json"
    code = feedback_main(["--message", str(message), "--reply", str(reply), "--out", str(out),
                          f"model.name_or_path={tiny_model_dir}", "device=cpu", "--max-new-tokens", "6"])
    assert code == 0
    saved = json.loads(out.read_text())
    assert set(saved["scores"]) == set(saved["reasons"]) == set(rubric.ids)
    assert all(1.0 <= s <= 5.0 for s in saved["scores"].values())
    assert all("\n" not in r and r for r in saved["reasons"].values()) and saved["suggestion"]
    printed = capsys.readouterr().out
    assert "Suggestion:" in printed and "weighted score" in printed


def test_remote_feedback_uses_the_json_schema(rubric, monkeypatch):
    monkeypatch.setenv("FEEDBACK_KEY", "sk-test")
    with FeedbackServer() as server:
        feedback = remote_feedback(rubric, "client words", "trainee words", rubric.weights(), base_url=server.base_url,
                                   model="fake", api_key_env="FEEDBACK_KEY", max_retries=0)
    assert feedback.scores[rubric.ids[0]] == 1.0 and feedback.scores[rubric.ids[1]] == 2.0
    assert feedback.reasons[rubric.ids[0]] == f"Because of {rubric.ids[0]}."
    assert feedback.suggestion == "Name the feeling you hear before asking a question."
    schema = feedback_schema(rubric.ids)["json_schema"]["schema"]
    assert schema["required"] == ["scores", "reasons", "suggestion"]


def test_remote_feedback_bad_answer_and_unreachable_are_user_errors(rubric, monkeypatch):
    monkeypatch.setenv("FEEDBACK_KEY", "sk-test")
    with FakeOpenAIServer() as server, pytest.raises(UserError, match="feedback JSON"):
        remote_feedback(rubric, "c", "r", rubric.weights(), base_url=server.base_url, model="fake",
                        api_key_env="FEEDBACK_KEY", max_retries=0)
    with pytest.raises(UserError, match="unreachable"):
        remote_feedback(rubric, "c", "r", rubric.weights(), base_url="http://127.0.0.1:9/v1", model="fake",
                        api_key_env="FEEDBACK_KEY", max_retries=0, timeout=2)


def test_simulated_client_practice_turn(tiny_model_dir, tmp_path, capsys):
    _, reply = _files(tmp_path)
    code = feedback_main(["--client", "persona=a student anxious about exams", "--reply", str(reply), "--json",
                          f"model.name_or_path={tiny_model_dir}", "device=cpu", "generate.max_new_tokens=8",
                          "--max-new-tokens", "6"])
    captured = capsys.readouterr()
    assert code == 0 and "Client (a student anxious about exams):" in captured.err
    assert json.loads(captured.out)["client"]


def test_missing_inputs_are_one_line_errors(tmp_path, capsys):
    assert feedback_main(["--reply", str(tmp_path / "none.txt")]) == 2
    assert feedback_main(["--client", "student", "--reply", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--message" in err[0] and "persona=" in err[1]
