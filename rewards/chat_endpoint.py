"""POST chat completions to an OpenAI-compatible endpoint (OpenAI, vLLM, TGI, llama.cpp) and classify what goes wrong.

Requests go over one pooled aiohttp session. The openai SDK was used here first; on the 2-core machine this project is
tested on, its request builder and httpx's models and connection pool cost ~4-4.5 ms of CPU per request, which held
the judge benchmark (160 requests/s wanted) to a throughput ratio of 0.83-0.88; aiohttp costs ~1.5-2 ms and reaches
0.91-0.95 (benchmarks/judge_throughput.py, benchmarks/README.md).
The body is sent as built and the answer read as plain JSON, so nothing between the caller and the wire changes it.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from rewards.errors import UserError

MAX_REASON = 300
T = TypeVar("T")


class EndpointFailure(Exception):
    """A request that gave no usable answer; ``str()`` says why in one line."""


class InvalidAnswer(EndpointFailure):
    """The endpoint answered, but not with what was asked for (retried like a transient error)."""


class StatusFailure(EndpointFailure):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class RequestTimedOut(EndpointFailure):
    """No complete answer within the request's timeout."""


class ConnectionLost(EndpointFailure):
    """The connection broke during a request (reset, closed early)."""


class Unreachable(EndpointFailure):
    """No connection could be opened (refused, unknown host)."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())[:MAX_REASON]


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx, timeouts, connection failures and invalid answers: worth asking again."""
    if isinstance(exc, StatusFailure):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, EndpointFailure)


def retrying(max_retries: int, retry_wait: float, on_retry: Callable[[RetryCallState], None]) -> AsyncRetrying:
    """tenacity's loop for one request: up to ``max_retries`` more attempts on retryable failures, after jittered
    exponential waits from ``retry_wait`` seconds up to 32 times that; the last failure is re-raised."""
    return AsyncRetrying(
        stop=stop_after_attempt(max_retries + 1),
        wait=wait_random_exponential(multiplier=retry_wait, max=retry_wait * 32),
        retry=retry_if_exception(is_retryable),
        before_sleep=on_retry,
        reraise=True,
    )


def _not_a_completion(exc: Exception) -> InvalidAnswer:
    return InvalidAnswer(f"not a chat completion ({type(exc).__name__}: {one_line(exc)})")


def token_usage(completion: dict[str, Any]) -> dict[str, int]:
    """``prompt_tokens`` and ``completion_tokens`` of a chat completion (0 where missing)."""
    try:
        usage = completion.get("usage") or {}
        return {name: int(usage.get(name) or 0) for name in ("prompt_tokens", "completion_tokens")}
    except (ValueError, TypeError, AttributeError) as exc:
        raise _not_a_completion(exc) from None


def first_choice(completion: dict[str, Any]) -> tuple[Any, str | None]:
    """The message content (None when the endpoint sent none) and the finish reason of the first choice."""
    try:
        choice = completion["choices"][0]
        return choice["message"]["content"], choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _not_a_completion(exc) from None


async def settle(request: Awaitable[T], unreachable: Callable[[str], UserError]) -> tuple[T | None, str | None]:
    """``(answer, None)``, or ``(None, reason)`` once retries are spent; ``unreachable(reason)`` is raised when the
    endpoint could not be connected to at all. Anything else (a bug) propagates."""
    try:
        return await request, None
    except Unreachable as exc:
        raise unreachable(str(exc)) from None
    except InvalidAnswer as exc:
        return None, f"invalid answer: {exc}"
    except EndpointFailure as exc:
        return None, str(exc)


def error_message(text: str) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body itself, in one line."""
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return one_line(message or text or "no body")


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for ``url``; None when unset or ``NO_PROXY`` covers it."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class ChatEndpoint:
    """``POST <base_url>/chat/completions`` over up to ``connections`` pooled connections; use as an async context.

    Args:
        base_url: endpoint root, e.g. ``http://localhost:8000/v1``.
        api_key: sent as a bearer token (never logged).
        connections: most connections open at once.
        timeout: seconds per request, connecting included.
    """

    def __init__(self, base_url: str, api_key: str, connections: int, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.proxy = env_proxy(self.url)
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"ChatEndpoint(url={self.url!r}, connections={self._connections})"

    async def __aenter__(self) -> ChatEndpoint:
        connector = aiohttp.TCPConnector(limit=self._connections)
        # Proxies come from env_proxy, not aiohttp's trust_env: that would also read ~/.netrc, in a worker thread
        # on every request, and fail when it finds credentials beside our Authorization header.
        self._session = aiohttp.ClientSession(connector=connector, headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The endpoint's JSON answer to ``body``; raises an ``EndpointFailure`` subclass when there is none."""
        if self._session is None:
            raise RuntimeError("ChatEndpoint is used outside `async with`")
        try:
            async with self._session.post(self.url, json=body, proxy=self.proxy) as response:
                text = await response.text()
                status = response.status
        except TimeoutError:
            raise RequestTimedOut("request timed out") from None
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(one_line(exc.os_error or exc)) from None
        except aiohttp.ClientError as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {one_line(exc)}") from None
        if status >= 400:
            raise StatusFailure(status, error_message(text))
        try:
            answer = json.loads(text)
        except ValueError as exc:
            raise InvalidAnswer(f"not JSON ({one_line(exc)})") from None
        if not isinstance(answer, dict):
            raise InvalidAnswer(f"not a JSON object: {one_line(text)}")
        return answer
