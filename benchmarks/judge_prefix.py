"""Local judge: shared-prefix KV reuse vs one full forward pass per principle.

Same model, rubric and items; the scores must agree, and ``judge_prefix_speedup`` = full-pass time / reuse time.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import write_result
from recipes._entry import PROJECT_ROOT
from rewards.judges import JudgeItem, LocalLogprobJudge
from rewards.models import load_causal_lm, load_tokenizer
from rewards.prompts import load_prompts
from rewards.rubric import load_rubric

MODEL = "embedded:smollm2-135m-instruct"
REPLY = ("It sounds like the last weeks have worn you down, and it makes sense that you feel stuck. "
         "What would a small step toward rest look like for you this week?")


def timed_scores(judge: LocalLogprobJudge, items: list[JudgeItem]) -> tuple[float, list[dict]]:
    if judge.reuse_prefix:
        judge.score(items[:1])  # builds the rubric KV cache once, as a judging run does before its first item
    started = time.perf_counter()
    scores = judge.score(items)
    return time.perf_counter() - started, scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 item instead of 6")
    args = parser.parse_args(argv)
    rubric = load_rubric(PROJECT_ROOT / "principles" / "psychocounsel.yaml")
    prompts = load_prompts(PROJECT_ROOT / "data" / "prompts")[: 1 if args.quick else 6]
    items = [JudgeItem(prompt.text, REPLY) for prompt in prompts]
    tokenizer = load_tokenizer(MODEL)
    model = load_causal_lm(MODEL, "float32", "cpu")
    reuse_s, reuse_scores = timed_scores(LocalLogprobJudge(model, tokenizer, rubric, reuse_prefix=True), items)
    full_s, full_scores = timed_scores(LocalLogprobJudge(model, tokenizer, rubric, reuse_prefix=False), items)
    max_diff = max(abs(a[k] - b[k]) for a, b in zip(reuse_scores, full_scores, strict=True) for k in a)
    result = {"judge_prefix_speedup": round(full_s / reuse_s, 2), "reuse_s": round(reuse_s, 3),
              "full_passes_s": round(full_s, 3), "items": len(items), "principles": len(rubric.principles),
              "max_score_difference": round(max_diff, 6)}
    write_result("judge_prefix", result, quick=args.quick)
    print(f"judge_prefix_speedup={result['judge_prefix_speedup']}")
    return result


if __name__ == "__main__":
    main()
