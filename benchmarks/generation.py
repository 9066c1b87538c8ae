"""Generation throughput: our generate stage vs plain batched ``model.generate`` at its best batch size.

Same model, same prompts, same sampling (the default pool's counselor responder). Tokens are counted up to each
sequence's EOS. A sweep finds plain generate's best batch size; then our stage and plain generate at that size run
alternately (``rounds`` times each) so that load on the machine hits both alike. Prints ``generation_ratio`` = the
median of our tokens/s / the median of plain tokens/s at its best size, all measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from benchmarks.common import write_result
from recipes._entry import compose_config
from recipes.generate import responders, selected_prompts
from rewards.artifacts import Journal
from rewards.generation.responders import (
    batched,
    chat_messages,
    generate_candidates,
    generate_texts,
    render_prompts,
)
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
    parser.add_argument("--quick", action="store_true", help="8 prompts, 24 new tokens, 1 round")
    args = parser.parse_args(argv)
    n_prompts, max_new_tokens, rounds = (8, 24, 1) if args.quick else (16, 64, 2)
    cfg = compose_config([f"data.max_train_prompts={n_prompts}"])
    prompts = [p for p in selected_prompts(cfg) if p["split"] == "train"][:n_prompts]
    responder = responders(cfg)[0]
    tokenizer = load_tokenizer(cfg.model.name_or_path)
    model = load_causal_lm(cfg.model.name_or_path, cfg.model.dtype, "cpu")
    rendered = render_prompts(tokenizer, [chat_messages(p["text"], responder.system_prompt) for p in prompts])
    plain = {size: plain_tokens_per_second(model, tokenizer, rendered, size, max_new_tokens, responder)
             for size in (4, 8, 16, 32) if size <= len(prompts)}
    best_size = max(plain, key=plain.get)
    ours_runs, plain_runs = [], []
    for _ in range(rounds):
        ours_runs.append(our_tokens_per_second(model, tokenizer, prompts, responder, cfg.generate.batch_size,
                                               max_new_tokens))
        plain_runs.append(plain_tokens_per_second(model, tokenizer, rendered, best_size, max_new_tokens, responder))
    ours, plain_best = statistics.median(ours_runs), statistics.median(plain_runs)
    result = {
        "generation_ratio": round(ours / plain_best, 3),
        "ours_tokens_per_s": round(ours, 1), "our_batch_size": cfg.generate.batch_size,
        "plain_best_tokens_per_s": round(plain_best, 1), "rounds": rounds,
        "sweep_tokens_per_s": {str(size): round(value, 1) for size, value in plain.items()},
        "plain_best_batch_size": best_size, "prompts": len(prompts), "max_new_tokens": max_new_tokens,
        "responder": OmegaConf.to_container(cfg.generate.pool[0], resolve=True)["name"],
    }
    write_result("generation", result, quick=args.quick)
    print(f"generation_ratio={result['generation_ratio']}")
    return result


if __name__ == "__main__":
    main()
