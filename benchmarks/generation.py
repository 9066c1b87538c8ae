"""Generation throughput: our generate stage vs plain batched ``model.generate`` at its best batch size.

Same model, same prompts, same sampling (the default pool's counselor responder). Tokens are counted up to each
sequence's EOS. Prints ``generation_ratio`` = our tokens/s / the best plain tokens/s, both measured in this run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from benchmarks.common import write_result
from recipes._entry import compose_config
from recipes.generate import responders, selected_prompts
from rewards.artifacts import Journal
from rewards.generation import batched, chat_messages, generate_candidates, generate_texts, render_prompts
from rewards.models import load_causal_lm, load_tokenizer


def plain_tokens_per_second(model, tokenizer, rendered: list[str], batch_size: int, max_new_tokens: int,
                            responder) -> float:
    """The loop a user would write: prompts in file order, fixed batch size, ``model.generate``."""
    started, tokens = time.perf_counter(), 0
    for batch in batched(rendered, batch_size):
        outputs = generate_texts(model, tokenizer, batch, max_new_tokens, responder.temperature, responder.top_p,
                                 responder.num_samples, seed=0)
        tokens += sum(sample["n_tokens"] for samples in outputs for sample in samples)
    return tokens / (time.perf_counter() - started)


def our_tokens_per_second(model, tokenizer, prompts: list[dict], responder, batch_size: int,
                          max_new_tokens: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(Path(folder) / "journal.jsonl")
        started = time.perf_counter()
        generate_candidates(model, tokenizer, prompts, responder, journal, batch_size, max_new_tokens, seed=0)
        elapsed = time.perf_counter() - started
        tokens = sum(row["n_tokens"] for row in journal.done().values())
    return tokens / elapsed


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 prompts, 32 new tokens")
    args = parser.parse_args(argv)
    n_prompts, max_new_tokens = (8, 32) if args.quick else (32, 96)
    cfg = compose_config([f"data.max_train_prompts={n_prompts}"])
    prompts = [p for p in selected_prompts(cfg) if p["split"] == "train"][:n_prompts]
    responder = responders(cfg)[0]
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = load_causal_lm(cfg.model.name_or_path, cfg.model.dtype, "cpu")
    rendered = render_prompts(tokenizer, [chat_messages(p["text"], responder.system_prompt) for p in prompts])
    plain = {size: plain_tokens_per_second(model, tokenizer, rendered, size, max_new_tokens, responder)
             for size in (4, 8, 16, 32) if size <= len(prompts)}
    best_size = max(plain, key=plain.get)
    ours = our_tokens_per_second(model, tokenizer, prompts, responder, cfg.generate.batch_size, max_new_tokens)
    result = {
        "generation_ratio": round(ours / plain[best_size], 3),
        "ours_tokens_per_s": round(ours, 1), "our_batch_size": cfg.generate.batch_size,
        "plain_tokens_per_s": {str(size): round(value, 1) for size, value in plain.items()},
        "plain_best_batch_size": best_size, "prompts": len(prompts), "max_new_tokens": max_new_tokens,
        "responder": OmegaConf.to_container(cfg.generate.pool[0], resolve=True)["name"],
    }
    write_result("generation", result)
    print(f"generation_ratio={result['generation_ratio']}")
    return result


if __name__ == "__main__":
    main()
