"""The OpenAI-compatible judge against a local fake endpoint: retries, failures, per-principle cache, secrets."""

from __future__ import annotations

import logging
import socket

import pytest

from rewards.errors import UserError
from rewards.judges import JudgeItem, JudgmentCache, OpenAICompatibleJudge
from rewards.judges.base import item_block
from rewards.judges.openai_compatible import scores_question
from tests.fake_openai_server import FakeOpenAIServer, fake_score

KEY_ENV = "COUNSEL_TEST_KEY"
SECRET = "sk-secret-123"
ITEMS = [JudgeItem(f"client message {i}", f"counselor reply {i}") for i in range(8)]
BAD = JudgeItem("client message BADMARK", "counselor reply that always gets a malformed answer")


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def make_judge(rubric, server: FakeOpenAIServer, **kwargs) -> OpenAICompatibleJudge:
    options = {"api_key_env": KEY_ENV, "timeout": 0.5, "retry_wait": 0.001, "max_retries": 3, "concurrency": 4}
    return OpenAICompatibleJudge(rubric, server.base_url, "fake-judge", **(options | kwargs))


def expected_scores(rubric, item: JudgeItem) -> dict[str, float]:
    content = item_block(item) + scores_question(list(rubric.principles))
    return {pid: float(fake_score(content, pid)) for pid in rubric.ids}


def test_every_fault_kind_is_retried_and_ends_judged(rubric):
    script = {1: "429", 2: "500", 3: "timeout", 4: "malformed", 5: "missing", 6: "range"}
    with FakeOpenAIServer(latency=0.005, script=script, timeout_sleep=1.0) as server:
        judge = make_judge(rubric, server)
        scores = judge.score(ITEMS)
    assert scores == [expected_scores(rubric, item) for item in ITEMS]
    assert server.requests == len(ITEMS) + len(script)
    assert judge.stats["retries"] == len(script) and judge.stats["failures"] == 0
    assert judge.stats["requests"] == server.requests
    assert all(header == f"Bearer {SECRET}" for header in server.headers_seen)


def test_random_faults_with_seed_end_judged(rubric):
    with FakeOpenAIServer(latency=0.002, fault_rate=0.3, fault_kinds=("429", "500", "malformed", "missing", "range"),
                          seed=7) as server:
        judge = make_judge(rubric, server, max_retries=8)
        results = judge.score_with_failures(ITEMS * 3)
    assert all(r.error is None for r in results)
    assert judge.stats["retries"] > 0 and server.requests == 3 * len(ITEMS) + judge.stats["retries"]


def test_persistent_fault_is_recorded_and_rerun_asks_only_failed(rubric, tmp_path):
    items = [*ITEMS[:4], BAD, *ITEMS[4:]]
    cache = JudgmentCache(tmp_path / "judge.sqlite")
    with FakeOpenAIServer(latency=0.005, always={"BADMARK": "malformed"}) as server:
        judge = make_judge(rubric, server, cache=cache)
        results = judge.score_with_failures(items)
        judged = [r for r in results if r.scores is not None]
        failed = [r for r in results if r.error is not None]
        assert len(judged) + len(failed) == len(items) and len(failed) == 1
        assert results[4].scores is None and results[4].error.startswith("invalid answer")
        assert server.requests == len(ITEMS) + judge.max_retries + 1
        with pytest.raises(UserError, match="failed on 1 of 9 items.*invalid answer"):
            judge.score(items)

        before = server.requests
        rerun = make_judge(rubric, server, cache=cache)
        again = rerun.score_with_failures(items)
    assert server.requests - before == rerun.max_retries + 1  # only the failed item is asked again
    assert [r.scores for r in again] == [r.scores for r in results]
    assert [r.cached for r in again] == [r is not results[4] for r in results]
    assert rerun.stats["cache_hits"] == len(ITEMS) * len(rubric.ids)


def test_editing_one_principle_only_misses_its_entries(rubric, tmp_path):
    cache = JudgmentCache(tmp_path / "judge.sqlite")
    with FakeOpenAIServer(latency=0.002) as server:
        make_judge(rubric, server, cache=cache).score(ITEMS)
        assert server.requests == len(ITEMS) and len(cache) == len(ITEMS) * len(rubric.ids)

        changed = rubric.principles[2].model_copy(update={"description": "A reworded description."})
        edited = rubric.model_copy(update={"principles": [*rubric.principles[:2], changed, *rubric.principles[3:]]})
        judge = make_judge(edited, server, cache=cache)
        old = make_judge(rubric, server, cache=cache)
        for item in ITEMS:
            for pid in rubric.ids:
                assert (judge.principle_key(item, pid) == old.principle_key(item, pid)) == (pid != changed.id)
        asked_before = len(server.asked)
        judge.score(ITEMS)
    assert server.requests == 2 * len(ITEMS)
    assert all(ids == [changed.id] for ids in server.asked[asked_before:])
    assert judge.stats["cache_hits"] == len(ITEMS) * (len(rubric.ids) - 1)
    assert judge.stats["cache_misses"] == len(ITEMS)


def test_compare_is_cached_and_half_on_failure(rubric, tmp_path):
    cache = JudgmentCache(tmp_path / "judge.sqlite")
    with FakeOpenAIServer(latency=0.002) as server:
        judge = make_judge(rubric, server, cache=cache)
        first = judge.compare("client", "reply one", "reply two")
        assert first in (0.0, 1.0)
        assert judge.compare("client", "reply one", "reply two") == first and server.requests == 1
    with FakeOpenAIServer(latency=0.002, always={"client": "malformed"}) as server:
        judge = make_judge(rubric, server, cache=cache)
        assert judge.compare("client", "x", "y") == 0.5
        assert judge.stats["failures"] == 1


def test_compare_many_equals_one_by_one_and_both_orders_are_asked(rubric):
    from rewards.evaluation.compare import judged_comparison, judged_comparisons

    comparisons = [(f"client {i}", f"reply a{i}", f"reply b{i}") for i in range(12)]
    with FakeOpenAIServer(latency=0.01) as server:
        judge = make_judge(rubric, server)
        together = judged_comparisons(judge, comparisons)
        assert server.requests == 2 * len(comparisons)
        one_by_one = [judged_comparison(judge, *ask) for ask in comparisons]
    assert together == one_by_one
    assert len(set(together)) > 1  # the fake's answers differ by request, so order mix-ups would show


def test_api_key_never_leaks(rubric, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    cache = JudgmentCache(tmp_path / "judge.sqlite")
    with FakeOpenAIServer(latency=0.002, script={1: "500", 2: "malformed"}, always={"BADMARK": "429"}) as server:
        judge = make_judge(rubric, server, cache=cache)
        results = judge.score_with_failures([*ITEMS[:3], BAD])
        judge.compare("client", "a", "b")
    assert results[-1].error is not None
    out, err = capsys.readouterr()
    logged = caplog.text + "".join(str(r.args) + str(r.msg) for r in caplog.records)
    assert caplog.records  # DEBUG logging did capture the client's request logs
    for text in (logged, out, err, repr(judge), str(vars(judge).get("stats")), results[-1].error):
        assert SECRET not in text
    cache.close()
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes()


def test_missing_env_var_names_it(rubric, monkeypatch):
    monkeypatch.delenv("COUNSEL_MISSING_KEY", raising=False)
    with pytest.raises(UserError, match="COUNSEL_MISSING_KEY"):
        OpenAICompatibleJudge(rubric, "http://127.0.0.1:9/v1", "m", api_key_env="COUNSEL_MISSING_KEY")


def test_unreachable_endpoint_is_one_line_user_error(rubric):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    judge = OpenAICompatibleJudge(rubric, url, "m", api_key_env=KEY_ENV, max_retries=2, retry_wait=0.001, timeout=2)
    with pytest.raises(UserError) as error:
        judge.score(ITEMS)
    message = str(error.value)
    assert message.startswith(f"judge.base_url {url} unreachable: ") and "\n" not in message
    assert judge.stats["requests"] <= len(ITEMS) * 3
