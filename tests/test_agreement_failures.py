"""`counsel-align agreement` with a failing remote judge: it never reports success without answers, and a rerun
retries exactly the failed requests (issue 13, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes import agreement
from tests.fake_openai_server import FakeOpenAIServer

KEY_ENV = "COUNSEL_AGREE_FAIL_KEY"
N_PAIRS = 6


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")


def _pairs_file(root: Path) -> Path:
    """Six synthetic pairs (written here, not taken from any dataset); every reply carries a unique marker."""
    path = root / "pairs.jsonl"
    rows = [{"prompt": f"client question number {i}", "chosen": f"longer careful answer MARK-C{i}",
             "rejected": f"short MARK-R{i}"} for i in range(N_PAIRS)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _args(root: Path, server: FakeOpenAIServer, *extra: str) -> list[str]:
    return [f"output_root={root}", "run=a", f"agreement.source={_pairs_file(root)}", "agreement.format=pairs",
            "agreement.columns.prompt=prompt", "agreement.columns.chosen=chosen", "agreement.columns.rejected=rejected",
            "agreement.columns.response=null", "agreement.columns.score=null", "agreement.columns.group=null",
            "agreement.columns.topic=null", "agreement.columns.split=null", f"agreement.n_pairs={N_PAIRS}",
            "agreement.max_failure_fraction=0.5", "judge=openai_compatible", f"judge.base_url={server.base_url}",
            f"judge.api_key_env={KEY_ENV}", "judge.retry_wait=0.001", "judge.max_retries=1", "device=cpu", *extra]


def _errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("counsel-align")]


def test_all_failed_is_an_error_and_the_rerun_retries_only_what_failed(tmp_path, capsys):
    stage = tmp_path / "a" / "agreement"
    with FakeOpenAIServer() as server:
        args = _args(tmp_path, server)
        server.always["MARK-"] = "500"  # every judge request fails
        assert agreement.main(args) == 2
        err = _errors(capsys.readouterr().err)
        assert len(err) == 1 and "failed on 12 replies" in err[0] and "HTTP 500" in err[0] and "rerun" in err[0]
        assert not (stage / "manifest.json").exists()

        server.always = {"MARK-R1": "500"}  # the endpoint recovers except for one reply
        sent = server.requests
        assert agreement.main(args) == 0
        assert server.requests - sent == 12 + 1  # all twelve replies asked again (one retry for the failing one)
        out = capsys.readouterr().out
        assert "warning: the judge failed on 1 replies" in out and "over the 5 judged pairs" in out
        manifest = json.loads((stage / "manifest.json").read_text())
        assert manifest["counts"]["n_judged_pairs"] == 5 and manifest["counts"]["n_failed"] == 1
        assert json.loads((stage / "agreement.json").read_text())["judge"]["n"] == 5

        server.always = {}
        sent = server.requests
        assert agreement.main(args) == 0
        assert server.requests - sent == 1  # only the reply that failed
        assert json.loads((stage / "manifest.json").read_text())["counts"]["n_judged_pairs"] == N_PAIRS
        assert agreement.main(args) == 0 and server.requests - sent == 1
    assert "up to date, skipped" in capsys.readouterr().out


def test_a_failed_comparison_is_not_a_tie(tmp_path, capsys):
    stage = tmp_path / "a" / "agreement"
    with FakeOpenAIServer() as server:
        args = _args(tmp_path, server, "agreement.mode=pairwise")
        server.always["MARK-C2"] = "500"  # pair 2's comparisons fail in both orders
        assert agreement.main(args) == 0
        report = json.loads((stage / "agreement.json").read_text())
        assert report["n_pairs"] == N_PAIRS - 1 and report["judge"]["n"] == N_PAIRS - 1
        failed = [json.loads(line) for line in (stage / "failed.jsonl").read_text().splitlines()]
        assert len(failed) == 1 and "HTTP 500" in failed[0]["error"]
        server.always = {}
        assert agreement.main(args) == 0
    assert json.loads((stage / "agreement.json").read_text())["n_pairs"] == N_PAIRS
    assert "warning: the judge failed on 1 comparisons" in capsys.readouterr().out


def test_too_many_failures_stop_the_command(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        server.always = {f"MARK-R{i}": "500" for i in range(4)}
        assert agreement.main(_args(tmp_path, server)) == 2
    err = _errors(capsys.readouterr().err)
    assert len(err) == 1 and "4 of 6 pairs unjudged" in err[0] and "agreement.max_failure_fraction=0.5" in err[0]
