"""Candidate responses from a model behind an OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, TGI).

One request per (prompt, sample), run concurrently under a cap, retried with jittered backoff on 429/5xx/timeouts;
each finished batch is journaled, so a rerun asks only for what is missing. Requests that still fail are returned
with their reason and not journaled (the next run retries them).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from tqdm.auto import tqdm

from rewards.artifacts import Journal
from rewards.chat_endpoint import ChatEndpoint, first_choice, retrying, settle, token_usage
from rewards.distributed import rank, shard, world_size
from rewards.errors import UserError
from rewards.generation.responders import Responder, batched, chat_messages, hash_int


@dataclass(frozen=True)
class Endpoint:
    """Where an endpoint responder sends its requests.

    Args:
        base_url: endpoint root, e.g. ``http://localhost:8000/v1``.
        api_key_env: NAME of the environment variable holding the key (read at run time, never saved).
        concurrency: most requests in flight at once. Default 16.
        timeout: seconds per request. Default 60.
        max_retries: retries after the first attempt on 429, 5xx, timeouts and connection errors. Default 5.
        retry_wait: first backoff in seconds, doubled per retry with jitter, at most 32x. Default 0.5.
    """

    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    timeout: float = 60
    max_retries: int = 5
    retry_wait: float = 0.5


def generation_body(responder: Responder, prompt_text: str, max_new_tokens: int, seed: int) -> dict:
    """The JSON body posted for one sample (``seed`` is honoured by OpenAI and vLLM, ignored by others)."""
    return {"model": responder.model, "messages": chat_messages(prompt_text, responder.system_prompt),
            "max_tokens": max_new_tokens, "temperature": responder.temperature, "top_p": responder.top_p,
            "seed": seed}


class EndpointGenerator:
    """Generates with one responder whose ``endpoint`` is set; ``failures`` lists what could not be generated."""

    def __init__(self, responder: Responder, max_new_tokens: int, seed: int = 0) -> None:
        if responder.endpoint is None:
            raise ValueError(f"responder {responder.name} has no endpoint")
        self.responder = responder
        self.endpoint = Endpoint(**responder.endpoint)
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        api_key = os.environ.get(self.endpoint.api_key_env)
        if not api_key:
            raise UserError(f"generate.pool[{responder.name}].endpoint.api_key_env: environment variable "
                            f"{self.endpoint.api_key_env} is not set; export it with the endpoint's API key")
        self._api_key = api_key
        self.failures: list[dict] = []
        self.usage = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def __repr__(self) -> str:
        return f"EndpointGenerator(responder={self.responder.name!r}, base_url={self.endpoint.base_url!r})"

    def key(self, prompt: dict, index: int) -> str:
        return f"{prompt['id']}|{self.responder.name}|{index}"

    def generate(self, prompts: list[dict], journal: Journal, batch_size: int) -> None:
        """Every missing sample of every prompt, journaled batch by batch; under ``accelerate launch`` each rank
        asks for a shard of the batches and journals into its own rank file (rank 0 merges them)."""
        done = journal.done()
        todo = [(prompt, index) for prompt in prompts for index in range(self.responder.num_samples)
                if self.key(prompt, index) not in done]
        batches = shard(list(batched(todo, batch_size)))
        writer = journal.for_rank(rank(), world_size())
        with tqdm(total=sum(len(b) for b in batches), desc=f"generate[{self.responder.name}]", unit="reply") as bar:
            for batch in batches:
                records = asyncio.run(self._generate_batch(batch))
                writer.append_many(r for r in records if "error" not in r)
                self.failures += [r for r in records if "error" in r]
                bar.update(len(batch))

    async def _generate_batch(self, batch: list[tuple[dict, int]]) -> list[dict]:
        gate = asyncio.Semaphore(self.endpoint.concurrency)
        async with ChatEndpoint(self.endpoint.base_url, self._api_key, self.endpoint.concurrency,
                                self.endpoint.timeout) as client:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self._one(client, gate, prompt, index)) for prompt, index in batch]
            except ExceptionGroup as failures:
                raise failures.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _one(self, client: ChatEndpoint, gate: asyncio.Semaphore, prompt: dict, index: int) -> dict:
        record = {"key": self.key(prompt, index), "prompt_id": prompt["id"], "source": self.responder.name,
                  "source_model": self.responder.model}
        seed = self.seed + hash_int(record["key"]) % 100_003
        body = generation_body(self.responder, prompt["text"], self.max_new_tokens, seed)
        async with gate:
            completion, error = await settle(self._ask(client, body), self._unreachable)
        return {**record, "error": error} if error is not None else {**record, **completion}

    def _unreachable(self, reason: str) -> UserError:
        return UserError(f"generate.pool[{self.responder.name}].endpoint.base_url {self.endpoint.base_url} "
                         f"unreachable: {reason}; check that the server is running and the URL is right")

    async def _ask(self, client: ChatEndpoint, body: dict) -> dict:
        async for attempt in retrying(self.endpoint.max_retries, self.endpoint.retry_wait, self._count_retry):
            with attempt:
                self.usage["requests"] += 1
                return self._parse(await client.complete(body))
        raise AssertionError("unreachable")  # AsyncRetrying either returns or reraises

    def _count_retry(self, state) -> None:
        self.usage["retries"] += 1

    def _parse(self, completion: dict) -> dict:
        text, finish_reason = first_choice(completion)
        usage = token_usage(completion)
        for name, tokens in usage.items():
            self.usage[name] += tokens
        return {"response": (text or "").strip(), "n_tokens": usage["completion_tokens"],
                "finished": finish_reason != "length"}
