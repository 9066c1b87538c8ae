"""The chat-completions transport: which failures are retried, what they say, and proxies from the environment."""

from __future__ import annotations

import asyncio

import pytest

from rewards.chat_endpoint import (
    ChatEndpoint,
    ConnectionLost,
    StatusFailure,
    Unreachable,
    env_proxy,
    error_message,
    is_retryable,
)
from rewards.judges import JudgeItem, OpenAICompatibleJudge
from tests.fake_openai_server import FakeOpenAIServer

KEY_ENV = "COUNSEL_TEST_KEY"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-test")


def complete(url: str, body: dict, timeout: float = 5) -> dict:
    async def run() -> dict:
        async with ChatEndpoint(url, "sk-test", connections=2, timeout=timeout) as endpoint:
            return await endpoint.complete(body)
    return asyncio.run(run())


def test_answer_is_the_parsed_json_and_carries_the_key():
    with FakeOpenAIServer() as server:
        answer = complete(server.base_url, BODY)
    assert answer["choices"][0]["message"]["content"].startswith("That sounds hard.")
    assert server.headers_seen == ["Bearer sk-test"]


@pytest.mark.parametrize(("fault", "failure", "retryable"), [
    ("401", StatusFailure, False), ("429", StatusFailure, True), ("500", StatusFailure, True),
    ("disconnect", ConnectionLost, True),
])
def test_failures_are_classified(fault, failure, retryable):
    with FakeOpenAIServer(script={1: fault}) as server, pytest.raises(failure) as raised:
        complete(server.base_url, BODY)
    assert is_retryable(raised.value) is retryable
    if fault == "401":
        assert str(raised.value) == "HTTP 401: invalid api key"


def test_connection_refused_is_unreachable():
    with pytest.raises(Unreachable):
        complete("http://127.0.0.1:9/v1", BODY, timeout=2)


def test_a_401_is_not_retried_and_a_disconnect_is(rubric):
    with FakeOpenAIServer(always={"message 0": "401"}, script={2: "disconnect"}) as server:
        judge = OpenAICompatibleJudge(rubric, server.base_url, "fake", api_key_env=KEY_ENV, concurrency=1,
                                      retry_wait=0.001, max_retries=3)
        results = judge.score_with_failures([JudgeItem("client message 0", "r"), JudgeItem("client message 1", "r")])
    assert results[0].error == "HTTP 401: invalid api key" and results[0].scores is None
    assert results[1].error is None and results[1].scores is not None
    assert server.requests == 3 and judge.stats["retries"] == 1  # 401 once; the disconnect, then its retry


def test_error_message_reads_openai_error_bodies():
    assert error_message('{"error": {"message": "model not found"}}') == "model not found"
    assert error_message('{"error": "overloaded"}') == "overloaded"
    assert error_message("<html>Bad gateway</html>") == "<html>Bad gateway</html>"
    assert error_message("") == "no body"


def test_proxy_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert env_proxy("https://api.example/v1/chat/completions") == "http://proxy.example:3128"
    assert env_proxy("https://internal.example/v1/chat/completions") is None
    assert env_proxy("http://api.example/v1/chat/completions") is None  # no HTTP_PROXY


def test_requests_go_through_the_proxy(monkeypatch):
    with FakeOpenAIServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        answer = complete("http://judge.invalid/v1", BODY)  # resolvable only through the proxy
    assert answer["choices"] and proxy.requests == 1
