"""The judge stage with judge=openai_compatible against the loopback fake: faults, failures, reruns, kills, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes import judge as judge_stage
from recipes._entry import compose_config
from rewards.artifacts import atomic_write_json, atomic_write_jsonl, read_jsonl, sha256_tree
from rewards.judges import OpenAICompatibleJudge
from tests.fake_openai_server import FakeOpenAIServer

KEY_ENV = "COUNSEL_STAGE_TEST_KEY"
SECRET = "sk-stage-secret-987"
N_ITEMS = 10
BAD_PROMPTS = ("p3",)  # the server always answers these with malformed JSON while `always` is set


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def write_generate_output(run_dir: Path, leaked_text: bool = False) -> None:
    """A tiny finished generate stage: 5 prompts x 2 candidates (``leaked_text``: the test prompt repeats p0's)."""
    stage = run_dir / "generate"
    prompts = [{"id": f"p{i}", "text": f"client message {0 if leaked_text and i == 4 else i}"
                + (" BADMARK" if f"p{i}" in BAD_PROMPTS else ""),
                "topic": "anxiety", "stage_of_change": "contemplation", "risk": "low",
                "split": "test" if i == 4 else "train"} for i in range(N_ITEMS // 2)]
    candidates = [{"key": f"{p['id']}|r{j}|0", "prompt_id": p["id"], "source": f"r{j}", "source_model": "m",
                   "response": f"counselor reply {p['id']} {j}", "n_tokens": 4, "finished": True}
                  for p in prompts for j in range(2)]
    atomic_write_jsonl(stage / "prompts.jsonl", prompts)
    atomic_write_jsonl(stage / "candidates.jsonl", candidates)
    atomic_write_json(stage / "manifest.json", {"stage": "generate", "outputs_sha256": sha256_tree(stage)})


def overrides(root: Path, server: FakeOpenAIServer, *extra: str) -> list[str]:
    return [f"output_root={root}", "run=r", "judge=openai_compatible", f"judge.base_url={server.base_url}",
            "judge.model=fake-judge", f"judge.api_key_env={KEY_ENV}", "judge.timeout=0.5", "judge.retry_wait=0.001",
            "judge.max_retries=2", "judge.concurrency=4", "judge.batch_size=4", "wandb.mode=disabled", *extra]


def error_lines(stderr: str) -> list[str]:
    """stderr without progress bars; there must be no traceback."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("counsel-align")]


def manifest(root: Path) -> dict:
    return json.loads((root / "r" / "judge" / "manifest.json").read_text())


def test_faults_failures_rerun_and_cache(tmp_path, capsys):
    write_generate_output(tmp_path / "r")
    script = {1: "429", 2: "500", 3: "timeout", 4: "range", 5: "missing"}
    with FakeOpenAIServer(latency=0.002, script=script, always={"BADMARK": "malformed"}, timeout_sleep=1.0) as server:
        args = overrides(tmp_path, server, "judge.max_failure_fraction=0.5")
        assert judge_stage.main(args) == 0
        first = manifest(tmp_path)
        n_bad = 2 * len(BAD_PROMPTS)
        assert first["counts"] | {} == {"n_input": N_ITEMS, "n_judged": N_ITEMS - n_bad, "n_failed": n_bad,
                                       "n_principles": 7}
        failed = read_jsonl(tmp_path / "r" / "judge" / "failed.jsonl")
        assert [f["prompt_id"] for f in failed] == ["p3", "p3"] and all(f["error"].startswith("invalid answer")
                                                                         for f in failed)
        assert first["metrics"]["failure_kinds"] == {"invalid answer": n_bad}
        # Every good item once, each scripted fault retried once, each bad item 1 + max_retries times.
        assert server.requests == (N_ITEMS - n_bad) + len(script) + n_bad * 3
        usage = first["metrics"]["usage"]
        assert usage["requests"] == server.requests and usage["retries"] == len(script) + n_bad * 2
        assert usage["prompt_tokens"] > 0 and first["metrics"]["estimated_cost"] > 0
        assert "failed on 2 of 10 items" in capsys.readouterr().out

        server.always.clear()
        before = server.requests
        assert judge_stage.main(args) == 0
        assert server.requests - before == n_bad  # only the failed items are asked again
        second = manifest(tmp_path)
        assert second["counts"]["n_judged"] == N_ITEMS and second["counts"]["n_failed"] == 0
        assert second["metrics"]["usage"]["requests"] == server.requests  # usage adds up over both invocations
        assert len(read_jsonl(tmp_path / "r" / "judge" / "judged.jsonl")) == N_ITEMS

        assert judge_stage.main(args) == 0
        assert server.requests - before == n_bad and "up to date, skipped" in capsys.readouterr().out

        # A new run (other run name, same cache) makes no paid call at all.
        assert judge_stage.main([*args, "run=r2"]) != 0  # r2 has no generate output: one-line error
        write_generate_output(tmp_path / "r2")
        assert judge_stage.main([*args, "run=r2"]) == 0
        assert server.requests - before == n_bad
    judged = {r["key"]: r["scores"] for r in read_jsonl(tmp_path / "r2" / "judge" / "judged.jsonl")}
    assert judged == {r["key"]: r["scores"] for r in read_jsonl(tmp_path / "r" / "judge" / "judged.jsonl")}


def test_too_many_failures_stop_the_stage_with_one_line(tmp_path, capsys):
    write_generate_output(tmp_path / "r")
    with FakeOpenAIServer(latency=0.002, always={"BADMARK": "500"}) as server:
        args = overrides(tmp_path, server, "judge.max_failure_fraction=0.1")
        assert judge_stage.main(args) == 2
        err = error_lines(capsys.readouterr().err)
        assert len(err) == 1 and "failed.jsonl" in err[0] and "HTTP 500" in err[0]
        assert not (tmp_path / "r" / "judge" / "manifest.json").exists()
        server.always.clear()
        before = server.requests
        assert judge_stage.main(args) == 0
    assert server.requests - before == 2 and manifest(tmp_path)["counts"]["n_judged"] == N_ITEMS


@pytest.mark.parametrize("interrupt_after", [6, 8])  # in the middle of the 2nd batch; at its last item
def test_killed_judge_stage_loses_nothing_and_repeats_nothing(tmp_path, monkeypatch, interrupt_after):
    write_generate_output(tmp_path / "r")
    original = OpenAICompatibleJudge._score_missing
    finished = {"n": 0}

    async def interrupted(self, *args, **kwargs):
        result = await original(self, *args, **kwargs)  # the answer is cached before the "kill"
        finished["n"] += 1
        if finished["n"] == interrupt_after:
            raise KeyboardInterrupt
        return result

    with FakeOpenAIServer(latency=0.002) as server:
        args = overrides(tmp_path, server, "judge.concurrency=1")
        monkeypatch.setattr(OpenAICompatibleJudge, "_score_missing", interrupted)
        assert judge_stage.main(args) == 130
        journaled = read_jsonl(tmp_path / "r" / "judge" / "journal.jsonl")
        assert len(journaled) == 4 * (interrupt_after // 4 - (interrupt_after % 4 == 0))
        assert not (tmp_path / "r" / "judge" / "manifest.json").exists()
        assert server.requests == interrupt_after

        monkeypatch.setattr(OpenAICompatibleJudge, "_score_missing", original)
        assert judge_stage.main(args) == 0
    assert server.requests == N_ITEMS  # nothing asked twice
    counts = manifest(tmp_path)["counts"]
    assert counts["n_judged"] == N_ITEMS and counts["n_failed"] == 0
    usage = manifest(tmp_path)["metrics"]["usage"]
    assert usage["cache_hits"] == 7 * (interrupt_after - len(journaled))  # cached answers of the unjournaled items
    assert usage["requests"] == N_ITEMS  # the interrupted invocation's requests are counted too


def test_api_key_never_reaches_outputs_configs_or_logs(tmp_path, capsys, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    write_generate_output(tmp_path / "r")
    with FakeOpenAIServer(latency=0.002, script={2: "500"}, always={"BADMARK": "429"}) as server:
        args = overrides(tmp_path, server, "judge.max_failure_fraction=0.5")
        assert judge_stage.main(args) == 0
        assert judge_stage.main([*args, "--cfg"]) == 0
    assert all(h == f"Bearer {SECRET}" for h in server.headers_seen)  # the key was used...
    out, err = capsys.readouterr()
    assert KEY_ENV in out  # --cfg shows the variable's name
    for text in (out, err, caplog.text):
        assert SECRET not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") for p in files) and any(p.name == "manifest.json" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    cfg = compose_config(args)
    assert SECRET not in json.dumps(dict(judge=dict(cfg.judge)), default=str)


def test_missing_base_url_and_unset_key_are_one_line_errors(tmp_path, capsys, monkeypatch):
    write_generate_output(tmp_path / "r")
    base = [f"output_root={tmp_path}", "run=r", "judge=openai_compatible", f"judge.api_key_env={KEY_ENV}"]
    assert judge_stage.main([*base, "judge.base_url=null"]) == 2  # refused by the schema, when composed
    assert "config: judge.base_url=null is not set" in capsys.readouterr().err
    assert judge_stage.main([*base, "judge.base_url="]) == 2  # empty: refused when the judge is built
    assert "judge.base_url: not set" in capsys.readouterr().err
    monkeypatch.delenv(KEY_ENV)
    assert judge_stage.main([*base, "judge.base_url=http://127.0.0.1:9/v1"]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and KEY_ENV in err[0]


def test_pairs_stage_on_remote_judgments_reports_lengths_and_refuses_leaks(tmp_path, capsys):
    from recipes import pairs as pairs_stage

    for run, leaked in (("r", False), ("leak", True)):
        write_generate_output(tmp_path / run, leaked_text=leaked)
    with FakeOpenAIServer(latency=0.002) as server:
        args = overrides(tmp_path, server, "pairs.margin=0.0", "pairs.safety_threshold=0",
                         "pairs.strategy=best_vs_random", "pairs.max_length_ratio=1.01",
                         "pairs.duplicate_threshold=null")  # the fake replies differ in one character
        assert judge_stage.main(args) == 0 and pairs_stage.main(args) == 0
        result = json.loads((tmp_path / "r" / "pairs" / "manifest.json").read_text())
        assert set(result["metrics"]["length"]["train"]) >= {"chosen_mean_chars", "median_length_ratio"}
        assert result["counts"]["train_pairs"] + result["counts"]["train_ties"] == 4  # one per train prompt
        assert result["config"]["pairs"]["strategy"] == "best_vs_random"
        capsys.readouterr()
        assert judge_stage.main([*args, "run=leak"]) == 0 and pairs_stage.main([*args, "run=leak"]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "'p4' is in both the train and the test split (same text)" in err[0]
