"""Local judge: several items per forward pass vs one item per pass, with equal scores.

Same model, rubric and items (held-out-style client messages with replies of different lengths). Variants, run
alternately ``rounds`` times so that load on the machine hits them alike:

- ``one_all_logits``: one item per pass with the vocabulary projection at every position (the judge before
  issue 16),
- ``one``: one item per pass, projection only where an answer token is read,
- ``batch<N>``: N items per pass (left-padded, rubric KV cache shared), projection only where read.

Prints ``judge_batch_speedup`` = the median wall time of ``one_all_logits`` / that of the best batch size,
``batch_over_one_speedup`` (``one`` / best batch) and ``max_score_difference`` between every variant and ``one``
(scores are rounded to 4 decimals, so 1e-4 is one rounding step). The same ratios of process CPU time are written
too (``*_cpu``): with one torch thread they depend far less on what else runs on the machine than wall time does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchmarks.common import write_result
from recipes._entry import PROJECT_ROOT
from rewards.judges import JudgeItem, LocalLogprobJudge
from rewards.models import load_causal_lm, load_tokenizer
from rewards.prompts import load_prompts
from rewards.rubric import load_rubric

MODEL = "embedded:smollm2-135m-instruct"
REPLIES = (
    "That sounds heavy. What feels hardest right now?",
    "It makes sense that you feel worn out after weeks like these. I wonder what a small step toward rest "
    "could look like for you, and who around you might help carry some of it.",
    "You have been holding a lot on your own. When you picture talking to someone you trust about it, what "
    "comes up for you? There is no right answer here; I am curious what matters most to you, and we can go "
    "at whatever pace feels manageable.",
    "Try to sleep more.",
)


def judge_items(count: int) -> list[JudgeItem]:
    prompts = load_prompts(PROJECT_ROOT / "data" / "prompts")[:count]
    return [JudgeItem(prompt.text, REPLIES[index % len(REPLIES)]) for index, prompt in enumerate(prompts)]


def variant(model, tokenizer, rubric, batch_size: int, all_logits: bool = False) -> LocalLogprobJudge:
    judge = LocalLogprobJudge(model, tokenizer, rubric, batch_size=batch_size)
    if all_logits:
        judge._keeps_logits = False  # the pre-issue-16 cost: logits at every position, then read the last ones
    return judge


def timed(judge: LocalLogprobJudge, items: list[JudgeItem]) -> tuple[float, float, list[dict]]:
    """Wall seconds, process CPU seconds and the scores."""
    started, cpu = time.perf_counter(), time.process_time()
    scores = judge.score(items)
    return time.perf_counter() - started, time.process_time() - cpu, scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 items, batch sizes 1 and 4, 1 round")
    args = parser.parse_args(argv)
    n_items, sizes, rounds = (4, (4,), 1) if args.quick else (8, (2, 4, 8), 2)
    rubric = load_rubric(PROJECT_ROOT / "principles" / "psychocounsel.yaml")
    items = judge_items(n_items)
    tokenizer = load_tokenizer(MODEL)
    model = load_causal_lm(MODEL, "float32", "cpu")
    judges = {"one_all_logits": variant(model, tokenizer, rubric, 1, all_logits=True),
              "one": variant(model, tokenizer, rubric, 1),
              **{f"batch{size}": variant(model, tokenizer, rubric, size) for size in sizes}}
    for judge in judges.values():
        judge.score(items[:1])  # builds the rubric KV cache once, as a judging run does before its first item
    seconds: dict[str, list[float]] = {name: [] for name in judges}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in judges}
    scores: dict[str, list[dict]] = {}
    for _ in range(rounds):
        for name, judge in judges.items():
            elapsed, cpu, scores[name] = timed(judge, items)
            seconds[name].append(elapsed)
            cpu_seconds[name].append(cpu)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    cpu_median = {name: statistics.median(values) for name, values in cpu_seconds.items()}
    best = min((name for name in judges if name.startswith("batch")), key=cpu_median.get)
    max_diff = max(abs(a[k] - b[k]) for name in judges for a, b in zip(scores[name], scores["one"], strict=True)
                   for k in a)
    result = {
        "judge_batch_speedup": round(median["one_all_logits"] / median[best], 2),
        "batch_over_one_speedup": round(median["one"] / median[best], 2),
        "logits_only_speedup": round(median["one_all_logits"] / median["one"], 2),
        "judge_batch_speedup_cpu": round(cpu_median["one_all_logits"] / cpu_median[best], 2),
        "batch_over_one_speedup_cpu": round(cpu_median["one"] / cpu_median[best], 2),
        "logits_only_speedup_cpu": round(cpu_median["one_all_logits"] / cpu_median["one"], 2),
        "best_batch_size": int(best.removeprefix("batch")),
        "seconds": {name: round(value, 3) for name, value in median.items()},
        "cpu_seconds": {name: round(value, 3) for name, value in cpu_median.items()},
        "load_average_1min": round(os.getloadavg()[0], 2),
        "items": len(items), "principles": len(rubric.principles), "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "max_score_difference": round(max_diff, 6),
    }
    write_result("judge_batch", result, quick=args.quick)
    assert max_diff <= 1e-4 + 1e-9, f"batched scores differ from one-at-a-time by {max_diff}"
    print(f"judge_batch_speedup={result['judge_batch_speedup']}")
    print(f"batch_over_one_speedup={result['batch_over_one_speedup']}")
    print(f"judge_batch_speedup_cpu={result['judge_batch_speedup_cpu']}")
    print(f"max_score_difference={result['max_score_difference']}")
    return result


if __name__ == "__main__":
    main()
