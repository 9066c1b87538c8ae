"""Candidate counselor responses from a pool of responders (model + system prompt + sampling)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rewards.artifacts import Journal
from rewards.distributed import rank, shard, world_size


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


class RowSampler:
    """A logits processor that draws each row's next token with the row's own generator.

    A reply then depends on its own seed only, not on the batch it shares nor on the process that makes it, so
    sharding generation across ranks or changing the batch size leaves sampled replies as they were. It comes
    last in the processors, after temperature and top-p have shaped the logits, and leaves only the drawn token.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float(), dim=-1)
        drawn = torch.cat([torch.multinomial(row, 1, generator=generator)
                           for row, generator in zip(probs, self.generators, strict=True)])
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, drawn[:, None], 0.0)


def _sampling_processors(temperature: float, top_p: float, row_seeds: Sequence[int], device: torch.device):
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    processors = [TemperatureLogitsWarper(temperature)]
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    return LogitsProcessorList([*processors, RowSampler(row_seeds, device)])


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
    row_seeds: Sequence[int] | None = None,
) -> list[list[dict]]:
    """Generate for one batch of rendered prompts; returns per prompt a list of {text, n_tokens, finished}.

    Sampling draws from torch's global generator seeded with ``seed`` for the whole batch, unless ``row_seeds``
    gives one seed per reply (``num_samples`` per prompt, prompt by prompt): then each reply is drawn with its own.
    """
    tokenizer.padding_side = "left"
    sampling = temperature > 0
    per_row = sampling and row_seeds is not None
    if per_row:  # the rows are expanded here so that each sample has its own row and seed
        if len(row_seeds) != len(rendered) * num_samples:
            raise ValueError(f"got {len(row_seeds)} row seeds for {len(rendered)} prompts x {num_samples} samples")
        rendered = [text for text in rendered for _ in range(num_samples)]
    batch = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    if per_row:
        options = {"do_sample": False, "num_return_sequences": 1,
                   "logits_processor": _sampling_processors(temperature, top_p, row_seeds, model.device)}
    else:
        torch.manual_seed(seed)
        options = {"do_sample": sampling, "temperature": temperature if sampling else None,
                   "top_p": top_p if sampling else None, "num_return_sequences": num_samples}
    output = model.generate(**batch, max_new_tokens=max_new_tokens, top_k=None, pad_token_id=tokenizer.pad_token_id,
                            **options)
    completions = output[:, batch["input_ids"].shape[1]:]
    results: list[list[dict]] = [[] for _ in range(len(completions) // num_samples)]
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
    """Generate ``responder.num_samples`` responses per prompt, journaling each finished batch.

    Under ``accelerate launch`` each rank takes a shard of whole batches (the batches of one process) and appends
    to its own rank journal; rank 0 merges them. Each reply is sampled with its own seed (``reply_seed``), so the
    replies do not depend on the number of processes, the batch size or which items a resumed run still had to do.
    """
    done = journal.done()
    todo = [p for p in prompts if f"{p['id']}|{responder.name}|0" not in done]
    # Similar lengths in a batch waste less compute on padding.
    todo.sort(key=lambda p: len(p["text"]))
    batches = shard(list(batched(todo, batch_size)))
    writer = journal.for_rank(rank(), world_size())
    bar = tqdm(total=sum(len(b) for b in batches), desc=f"generate[{responder.name}]", unit="prompt")
    for batch in batches:
        rendered = render_prompts(tokenizer, [chat_messages(p["text"], responder.system_prompt) for p in batch])
        keys = [[reply_key(p, responder, index) for index in range(responder.num_samples)] for p in batch]
        outputs = generate_texts(model, tokenizer, rendered, max_new_tokens, responder.temperature,
                                 responder.top_p, responder.num_samples,
                                 row_seeds=[reply_seed(seed, key) for row in keys for key in row])
        writer.append_many(
            {
                "key": keys[row][index],
                "prompt_id": prompt["id"],
                "source": responder.name,
                "source_model": responder.model,
                "response": sample["text"],
                "n_tokens": sample["n_tokens"],
                "finished": sample["finished"],
            }
            for row, (prompt, samples) in enumerate(zip(batch, outputs, strict=True))
            for index, sample in enumerate(samples)
        )
        bar.update(len(batch))
        if on_batch:
            on_batch(len(batch))
    bar.close()


def reply_key(prompt: dict, responder: Responder, index: int) -> str:
    return f"{prompt['id']}|{responder.name}|{index}"


def reply_seed(seed: int, key: str) -> int:
    """The sampling seed of one reply: the run's seed and the reply's key, nothing about the batch it is in."""
    return seed + hash_int(key)


def hash_int(text: str) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
