"""Candidate counselor responses from a pool of responders (model + system prompt + sampling)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rewards.artifacts import Journal


@dataclass(frozen=True)
class Responder:
    """One member of the generation pool. Several may share a model with different instructions.

    ``model`` is a local path, hub id or ``embedded:`` name, or with ``endpoint`` set (the keyword arguments of
    ``rewards.generation.endpoint.Endpoint``) the model name sent to that OpenAI-compatible endpoint.
    """

    name: str
    model: str
    system_prompt: str | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    num_samples: int = 1
    endpoint: dict | None = None


def chat_messages(user_text: str, system_prompt: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": user_text}]


def render_prompts(tokenizer, conversations: list[list[dict]]) -> list[str]:
    return [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]


@torch.inference_mode()
def generate_texts(
    model,
    tokenizer,
    rendered: list[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
) -> list[list[dict]]:
    """Generate for one batch of rendered prompts; returns per prompt a list of {text, n_tokens, finished}."""
    tokenizer.padding_side = "left"
    batch = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sampling = temperature > 0
    torch.manual_seed(seed)
    output = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=top_p if sampling else None,
        top_k=None,
        num_return_sequences=num_samples,
        pad_token_id=tokenizer.pad_token_id,
    )
    completions = output[:, batch["input_ids"].shape[1]:]
    results: list[list[dict]] = [[] for _ in rendered]
    for row, tokens in enumerate(completions):
        eos_positions = (tokens == tokenizer.eos_token_id).nonzero()
        length = int(eos_positions[0]) if len(eos_positions) else len(tokens)
        text = tokenizer.decode(tokens[:length], skip_special_tokens=True).strip()
        results[row // num_samples].append({"text": text, "n_tokens": length, "finished": bool(len(eos_positions))})
    return results


def batched(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def generate_candidates(
    model,
    tokenizer,
    prompts: list[dict],
    responder: Responder,
    journal: Journal,
    batch_size: int,
    max_new_tokens: int,
    seed: int,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Generate ``responder.num_samples`` responses per prompt, journaling each finished batch."""
    done = journal.done()
    todo = [p for p in prompts if f"{p['id']}|{responder.name}|0" not in done]
    # Similar lengths in a batch waste less compute on padding.
    todo.sort(key=lambda p: len(p["text"]))
    bar = tqdm(total=len(todo), desc=f"generate[{responder.name}]", unit="prompt")
    for batch in batched(todo, batch_size):
        rendered = render_prompts(tokenizer, [chat_messages(p["text"], responder.system_prompt) for p in batch])
        batch_seed = seed + sum(hash_int(p["id"]) for p in batch) % 100_003
        outputs = generate_texts(model, tokenizer, rendered, max_new_tokens, responder.temperature,
                                 responder.top_p, responder.num_samples, batch_seed)
        journal.append_many(
            {
                "key": f"{prompt['id']}|{responder.name}|{index}",
                "prompt_id": prompt["id"],
                "source": responder.name,
                "source_model": responder.model,
                "response": sample["text"],
                "n_tokens": sample["n_tokens"],
                "finished": sample["finished"],
            }
            for prompt, samples in zip(batch, outputs, strict=True)
            for index, sample in enumerate(samples)
        )
        bar.update(len(batch))
        if on_batch:
            on_batch(len(batch))
    bar.close()


def hash_int(text: str) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
