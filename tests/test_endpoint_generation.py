"""The generate stage with endpoint responders (OpenAI-compatible) beside a local model, against the loopback fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes import generate as generate_stage
from rewards.artifacts import read_jsonl
from tests.fake_openai_server import FakeOpenAIServer

KEY_ENV = "COUNSEL_GEN_TEST_KEY"
SECRET = "sk-generate-secret-4711"
N_PROMPTS, N_SAMPLES = 4, 2


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def endpoint_responder(base_url: str, **endpoint: object) -> str:
    settings = {"base_url": f"'{base_url}'", "api_key_env": KEY_ENV, "concurrency": 1, "timeout": 0.5,
                "max_retries": 1, "retry_wait": 0.001, **endpoint}
    inner = ",".join(f"{key}:{value}" for key, value in settings.items())
    return f"{{name:remote,model:fake-gen,num_samples:{N_SAMPLES},temperature:0.7,top_p:0.9,endpoint:{{{inner}}}}}"


def overrides(root: Path, pool: str, *extra: str) -> list[str]:
    return [f"output_root={root}", "run=r", "data.max_train_prompts=3", "data.max_test_prompts=1",
            "generate.endpoint_batch_size=4", "generate.max_new_tokens=8", "generate.batch_size=4",
            "wandb.mode=disabled", "device=cpu", f"generate.pool=[{pool}]", *extra]


def stage_manifest(root: Path) -> dict:
    return json.loads((root / "r" / "generate" / "manifest.json").read_text())


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("counsel-align")]


def test_local_and_endpoint_responders_share_one_candidate_set(tmp_path, tiny_model_dir, capsys):
    local = f"{{name:local,model:'{tiny_model_dir}',num_samples:1}}"
    with FakeOpenAIServer(latency=0.002, script={1: "429", 2: "500", 3: "timeout"}, timeout_sleep=1.0) as server:
        args = overrides(tmp_path, f"{local},{endpoint_responder(server.base_url, max_retries=3)}")
        assert generate_stage.main(args) == 0
        assert server.requests == N_PROMPTS * N_SAMPLES + 3  # the first reply retried after each scripted fault
        assert generate_stage.main(args) == 0  # finished: skipped, nothing asked again
        assert server.requests == N_PROMPTS * N_SAMPLES + 3
    manifest = stage_manifest(tmp_path)
    assert manifest["counts"]["by_source"] == {"local": N_PROMPTS, "remote": N_PROMPTS * N_SAMPLES}
    assert manifest["counts"]["n_failed"] == 0
    usage = manifest["metrics"]["endpoint_usage"]["remote"]
    assert usage["requests"] == server.requests and usage["retries"] == 3 and usage["completion_tokens"] == 64
    candidates = read_jsonl(tmp_path / "r" / "generate" / "candidates.jsonl")
    remote = [c for c in candidates if c["source"] == "remote"]
    assert {c["source_model"] for c in remote} == {"fake-gen"}
    assert all(c["response"].startswith("That sounds hard") and c["finished"] for c in remote)
    by_prompt = {}
    for c in remote:
        by_prompt.setdefault(c["prompt_id"], set()).add(c["response"])
    assert all(len(replies) == N_SAMPLES for replies in by_prompt.values())  # samples differ by seed
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="ignore"), path


def test_failed_requests_stop_the_stage_and_a_rerun_asks_only_for_them(tmp_path, capsys):
    with FakeOpenAIServer(latency=0.002, script={1: "500", 2: "500", 3: "500", 4: "500"}) as server:
        args = overrides(tmp_path, endpoint_responder(server.base_url, max_retries=0))
        assert generate_stage.main(args) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "4 of 8 endpoint replies failed" in lines[0] and "HTTP 500" in lines[0]
        failed = read_jsonl(tmp_path / "r" / "generate" / "failed.jsonl")
        assert len(failed) == 4 and not (tmp_path / "r" / "generate" / "manifest.json").exists()
        assert generate_stage.main(args) == 0
    assert server.requests == 8 + 4  # the four failed ones once more, nothing else
    assert stage_manifest(tmp_path)["counts"]["n_candidates"] == N_PROMPTS * N_SAMPLES


def test_tolerated_failures_finish_and_the_next_run_retries_them(tmp_path, capsys):
    with FakeOpenAIServer(latency=0.002, script={1: "500"}) as server:
        args = overrides(tmp_path, endpoint_responder(server.base_url, max_retries=0),
                         "generate.max_failure_fraction=0.2")
        assert generate_stage.main(args) == 0
        assert "1 of 8 endpoint replies failed" in capsys.readouterr().out
        assert stage_manifest(tmp_path)["counts"]["n_failed"] == 1
        assert generate_stage.main(args) == 0
    assert server.requests == 9
    counts = stage_manifest(tmp_path)["counts"]
    assert counts["n_failed"] == 0 and counts["n_candidates"] == 8


def test_unreachable_endpoint_and_missing_key_are_one_line_errors(tmp_path, tiny_model_dir, monkeypatch, capsys):
    assert generate_stage.main(overrides(tmp_path, endpoint_responder("http://127.0.0.1:9/v1"))) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "endpoint.base_url http://127.0.0.1:9/v1 unreachable" in lines[0]
    monkeypatch.delenv(KEY_ENV)
    local = f"{{name:local,model:'{tiny_model_dir}',num_samples:1}}"
    root = tmp_path / "no-key"
    assert generate_stage.main(overrides(root, f"{local},{endpoint_responder('http://127.0.0.1:9/v1')}")) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"environment variable {KEY_ENV} is not set" in lines[0]
    assert not (root / "r" / "generate" / "journal.jsonl").exists()  # refused before the local model generated
