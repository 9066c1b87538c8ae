"""A judge behind any OpenAI-compatible chat endpoint: one JSON-schema request per reply, scoring all principles.

Requests run concurrently under a cap and an optional requests/minute limit; 429s, 5xx, timeouts and invalid
answers are retried with jittered exponential backoff; answers are cached per principle in a ``JudgmentCache``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from tenacity import RetryCallState

from rewards.chat_endpoint import ChatEndpoint, InvalidAnswer, first_choice, one_line, retrying, settle, token_usage
from rewards.errors import UserError
from rewards.judges.base import (
    SYSTEM_INTRO,
    TEMPLATE_VERSION,
    JudgeItem,
    PrincipleScores,
    ScoreResult,
    item_block,
    pairwise_messages,
    rubric_system_prompt,
)
from rewards.judges.cache import JudgmentCache, judgment_key
from rewards.rubric import Principle, Rubric

# Bump when the JSON question below changes, so cached answers to the old question are not reused.
JSON_TEMPLATE_VERSION = 1
PAIRWISE = "pairwise"

Score = Annotated[int, Field(strict=True, ge=1, le=5)]


class _Choice(BaseModel):
    better: str = Field(pattern="^[AB]$")



class _RateLimiter:
    """Spaces request starts at least 60/rpm seconds apart (a token bucket of size one)."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = asyncio.get_running_loop().time()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


# The fields of a principle that reach the judge's prompt; weight and safety only matter when pairs are built.
PROMPT_FIELDS = ("id", "name", "description", "anchors")


def principle_hash(principle: Principle) -> str:
    """Hash of what the judge sees of a principle: editing its weight or safety flag keeps its cached answers."""
    return judgment_key(json.dumps(principle.model_dump(mode="json", include=set(PROMPT_FIELDS)), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _scores_model(principle_ids: tuple[str, ...]) -> type[BaseModel]:
    """Validator of an answer scoring these principles (aliases keep ids like "model_x" clear of pydantic's names)."""
    return create_model(
        "PrincipleScoresAnswer", __config__=ConfigDict(extra="ignore"),
        **{f"p{i}": (Score, Field(alias=pid)) for i, pid in enumerate(principle_ids)},
    )


def scores_schema(principle_ids: list[str]) -> dict[str, Any]:
    """``response_format`` asking for an object with one required integer 1..5 per principle id."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "principle_scores",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {pid: {"type": "integer", "minimum": 1, "maximum": 5} for pid in principle_ids},
                "required": list(principle_ids),
                "additionalProperties": False,
            },
        },
    }


PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "better_reply",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"better": {"type": "string", "enum": ["A", "B"]}},
            "required": ["better"],
            "additionalProperties": False,
        },
    },
}


def scores_question(principles: list[Principle]) -> str:
    ids = ", ".join(p.id for p in principles)
    return (
        f"Rate the counselor reply on each of these principles separately: {ids}. Answer with a JSON object "
        "that maps each principle id to an integer score from 1 to 5."
    )


def json_score_messages(system_prompt: str, item: JudgeItem, principles: list[Principle]) -> list[dict]:
    """The chat messages of one scoring request (``system_prompt`` is ``rubric_system_prompt(rubric)``)."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": item_block(item) + scores_question(principles)},
    ]


def json_pairwise_messages(rubric: Rubric, client: str, first: str, second: str) -> list[dict]:
    messages = pairwise_messages(rubric, client, first, second)
    messages[-1]["content"] += ' Answer as JSON: {"better": "A"} or {"better": "B"}.'
    return messages


def request_body(model: str, messages: list[dict], response_format: dict, temperature: float = 0) -> dict:
    """The exact JSON body posted to ``<base_url>/chat/completions``."""
    return {"model": model, "messages": messages, "temperature": temperature, "response_format": response_format}


class OpenAICompatibleJudge:
    """Judge through an OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp, ...).

    Args:
        rubric: principles to score.
        base_url: endpoint root, e.g. ``http://localhost:8000/v1``.
        model: model name sent with each request.
        api_key_env: environment variable holding the API key (read once, never logged). Default ``OPENAI_API_KEY``.
        concurrency: most requests in flight at once. Default 32.
        requests_per_minute: optional cap on request starts per minute. Default none.
        max_retries: retries after the first attempt for 429, 5xx, timeouts, connection errors, invalid answers.
        timeout: seconds per request. Default 60.
        cache: optional ``JudgmentCache``; cached principles are never asked again.
        temperature: sampling temperature sent with each request. Default 0.
        retry_wait: first backoff in seconds (doubled per retry, with jitter, at most 32x). Default 0.5.
    """

    def __init__(
        self,
        rubric: Rubric,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 32,
        requests_per_minute: float | None = None,
        max_retries: int = 5,
        timeout: float = 60,
        cache: JudgmentCache | None = None,
        temperature: float = 0,
        retry_wait: float = 0.5,
    ) -> None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise UserError(f"judge.api_key_env: environment variable {api_key_env} is not set; export it with the "
                            "API key of the judge endpoint")
        self._api_key = api_key
        self.rubric = rubric
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute
        self.max_retries = max_retries
        self.timeout = timeout
        self.cache = cache
        self.temperature = temperature
        self.retry_wait = retry_wait
        self._system_prompt = rubric_system_prompt(rubric)
        self._template = judgment_key(SYSTEM_INTRO, str(TEMPLATE_VERSION), str(JSON_TEMPLATE_VERSION))
        self._principle_hashes = {p.id: principle_hash(p) for p in rubric.principles}
        self._key_prefixes = {pid: judgment_key(phash, self._template, self.model, pid)
                              for pid, phash in self._principle_hashes.items()}
        self.stats: dict[str, int] = dict.fromkeys(
            ["requests", "retries", "prompt_tokens", "completion_tokens", "cache_hits", "cache_misses", "failures"], 0)

    def __repr__(self) -> str:
        return (f"OpenAICompatibleJudge(model={self.model!r}, base_url={self.base_url!r}, "
                f"rubric={self.rubric.name!r}, api_key_env={self.api_key_env!r})")

    # -- cache keys -----------------------------------------------------------------------------
    def principle_key(self, item: JudgeItem, principle_id: str) -> str:
        """Depends on this principle's content only, so editing one principle keeps the others' answers."""
        return self._principle_keys(item)[principle_id]

    def _principle_keys(self, item: JudgeItem) -> dict[str, str]:
        # The item is hashed once and combined with a per-principle prefix: a cached rerun is dominated by this.
        digest = judgment_key(item.client, item.response)
        return {pid: hashlib.sha256(f"{prefix}:{digest}".encode()).hexdigest()
                for pid, prefix in self._key_prefixes.items()}

    def pairwise_key(self, client: str, first: str, second: str) -> str:
        return judgment_key(self.rubric.content_hash(), self._template, self.model, PAIRWISE, client, first, second)

    # -- requests -------------------------------------------------------------------------------
    def _session(self) -> _Session:
        """The connection pool, the concurrency gate and the rate limiter of one event loop."""
        endpoint = ChatEndpoint(self.base_url, self._api_key, self.concurrency, self.timeout)
        limiter = _RateLimiter(self.requests_per_minute) if self.requests_per_minute else None
        return _Session(endpoint, asyncio.Semaphore(self.concurrency), limiter)

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats["retries"] += 1

    async def _ask(self, session: _Session, messages: list[dict], response_format: dict, parse, usage: dict) -> Any:
        """One validated answer, retrying transient failures; raises the last failure when retries run out."""
        async for attempt in retrying(self.max_retries, self.retry_wait, self._count_retry):
            with attempt:
                async with session.gate:
                    if session.limiter is not None:
                        await session.limiter.wait()
                    self.stats["requests"] += 1
                    completion = await session.endpoint.complete(
                        request_body(self.model, messages, response_format, self.temperature))
                for name, tokens in token_usage(completion).items():
                    usage[name] += tokens
                    self.stats[name] += tokens
                content, _ = first_choice(completion)
                if not content:
                    raise InvalidAnswer("empty answer")
                try:
                    return parse(json.loads(content))
                except (json.JSONDecodeError, ValidationError) as exc:
                    raise InvalidAnswer(one_line(exc)) from None
        raise AssertionError("unreachable")  # AsyncRetrying either returns or reraises

    async def _answer(self, session: _Session, messages: list[dict], response_format: dict, parse,
                      usage: dict) -> tuple[Any, str | None]:
        """``(answer, None)``, or ``(None, reason)`` once retries are spent; raises UserError if unreachable."""
        answer, error = await settle(self._ask(session, messages, response_format, parse, usage), self._unreachable)
        if error is not None:
            self.stats["failures"] += 1
        return answer, error

    def _unreachable(self, reason: str) -> UserError:
        return UserError(f"judge.base_url {self.base_url} unreachable: {reason}; "
                         "check that the server is running and the URL is right")

    async def _score_missing(self, session: _Session, item: JudgeItem, known: PrincipleScores,
                             missing: list[Principle]) -> ScoreResult:
        ids = [p.id for p in missing]
        validator = _scores_model(tuple(ids))
        messages = json_score_messages(self._system_prompt, item, missing)
        result = ScoreResult()
        answer, result.error = await self._answer(
            session, messages, scores_schema(ids),
            lambda data: validator.model_validate(data).model_dump(by_alias=True), result.usage)
        if result.error is not None:
            return result
        if self.cache is not None:
            keys = self._principle_keys(item)
            # Committed before this task yields again: a stage killed at any moment has no answer it did not store.
            self.cache.put_many([(keys[pid], json.dumps(answer[pid])) for pid in ids])
        scores = {**known, **{pid: float(answer[pid]) for pid in ids}}
        result.scores = {pid: scores[pid] for pid in self.rubric.ids}
        return result

    async def score_async(self, items: list[JudgeItem]) -> list[ScoreResult]:
        """Score every item; failures are returned as results with ``error``, not raised.

        Raises ``UserError`` (and stops the other requests) when the endpoint cannot be reached at all.
        """
        keys = [self._principle_keys(item) for item in items]
        found = self.cache.get_many(k for ks in keys for k in ks.values()) if self.cache is not None else {}
        results: list[ScoreResult | None] = [None] * len(items)
        pending: list[tuple[int, PrincipleScores, list[Principle]]] = []
        for index, item_keys in enumerate(keys):
            known = {pid: float(found[key]) for pid, key in item_keys.items() if key in found}  # stored as JSON ints
            missing = [p for p in self.rubric.principles if p.id not in known]
            self.stats["cache_hits"] += len(known)
            self.stats["cache_misses"] += len(missing)
            if missing:
                pending.append((index, known, missing))
            else:
                results[index] = ScoreResult(scores=known, cached=True)
        if pending:
            async with self._session() as session:
                try:
                    async with asyncio.TaskGroup() as group:
                        tasks = [(index, group.create_task(self._score_missing(session, items[index], known, missing)))
                                 for index, known, missing in pending]
                except ExceptionGroup as failures:
                    raise failures.exceptions[0] from None
            for index, task in tasks:
                results[index] = task.result()
        return [r for r in results if r is not None]

    def score_with_failures(self, items: list[JudgeItem]) -> list[ScoreResult]:
        return asyncio.run(self.score_async(items))

    def score(self, items: list[JudgeItem]) -> list[PrincipleScores]:
        """1..5 score of each item on each principle; ``UserError`` if any item could not be judged."""
        results = self.score_with_failures(items)
        failed = [r for r in results if r.scores is None]
        if failed:
            raise UserError(f"judge {self.model} failed on {len(failed)} of {len(items)} items after "
                            f"{self.max_retries} retries; first reason: {failed[0].error}")
        return [r.scores for r in results if r.scores is not None]

    # -- pairwise -------------------------------------------------------------------------------
    async def compare_async(self, client: str, first: str, second: str) -> tuple[float | None, str | None]:
        async with self._session() as session:
            return await self._compare_in(session, client, first, second)

    async def compare_many_async(self, comparisons: list[tuple[str, str, str]]) -> list[tuple[float | None,
                                                                                             str | None]]:
        async with self._session() as session:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self._compare_in(session, *ask)) for ask in comparisons]
            except ExceptionGroup as failures:
                raise failures.exceptions[0] from None
        return [task.result() for task in tasks]

    def compare_many_with_failures(self, comparisons: list[tuple[str, str, str]]) -> list[tuple[float | None,
                                                                                               str | None]]:
        """``(p, None)`` per (client, first, second), or ``(None, reason)`` where the judge failed; concurrent."""
        return asyncio.run(self.compare_many_async(comparisons))

    def compare_many(self, comparisons: list[tuple[str, str, str]]) -> list[float]:
        """``compare`` for many (client, first, second) at once, concurrently under the same cap."""
        return [0.5 if p is None else p for p, _ in self.compare_many_with_failures(comparisons)]

    async def _compare_in(self, session: _Session, client: str, first: str, second: str) -> tuple[float | None,
                                                                                                   str | None]:
        key = self.pairwise_key(client, first, second)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.stats["cache_hits"] += 1
            return (1.0 if json.loads(hit) == "A" else 0.0), None
        self.stats["cache_misses"] += 1
        messages = json_pairwise_messages(self.rubric, client, first, second)
        better, error = await self._answer(session, messages, PAIRWISE_SCHEMA,
                                           lambda data: _Choice.model_validate(data).better,
                                           {"prompt_tokens": 0, "completion_tokens": 0})
        if error is not None:
            return None, error
        if self.cache is not None:
            self.cache.put(key, json.dumps(better))
        return (1.0 if better == "A" else 0.0), None

    def compare(self, client: str, first: str, second: str) -> float:
        """1.0 if ``first`` (shown as reply A) is judged better, 0.0 if not, 0.5 if the judge failed (use
        ``compare_many_with_failures`` to tell a failure from an undecided answer)."""
        p, _ = asyncio.run(self.compare_async(client, first, second))
        return 0.5 if p is None else p


@dataclass
class _Session:
    """Per-event-loop resources of one ``score_async`` / ``compare_async`` call."""

    endpoint: ChatEndpoint
    gate: asyncio.Semaphore
    limiter: _RateLimiter | None

    async def __aenter__(self) -> _Session:
        await self.endpoint.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.endpoint.__aexit__(*exc_info)
