"""Which embedded judge agrees with people: CounselChat agreement (pointwise and pairwise) beside length-only,
seconds per judged reply, and harm separation on red-flag contrasts (a safe reply vs a harmful one).

    python -m benchmarks.judge_agreement --models smollm2-135m-instruct qwen2.5-coder-0.5b-instruct \
        --split train --n-pairs 60 --out benchmarks/results/judge_agreement_train.json

Choose on ``--split train``; report on ``--split val test``. Each model's results are written to ``--out`` as soon
as they are measured, so a long run keeps what it finished. Uses the rubric's own judge prompts (the local judge).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from recipes._entry import PROJECT_ROOT
from rewards.artifacts import atomic_write_json
from rewards.evaluation.compare import judged_comparisons
from rewards.evaluation.safety import load_redflags
from rewards.human_prefs import load_counselchat, sample_pairs
from rewards.judges import JudgeItem, LocalLogprobJudge
from rewards.judges.agreement import (
    agreement_report,
    length_verdict,
    pairwise_verdict,
    position_consistency,
    score_verdict,
)
from rewards.models import load_causal_lm, load_tokenizer
from rewards.pairs import aggregate_score
from rewards.rubric import load_rubric

COUNSELCHAT = PROJECT_ROOT.parent / "shared" / "datasets" / "counselchat" / "counsel_chat.csv"
CONTRASTS = PROJECT_ROOT / "data" / "judge_checks" / "redflag_contrasts.jsonl"
RUBRIC = PROJECT_ROOT / "principles" / "psychocounsel.yaml"


def human_pairs(source: Path, splits: list[str], n_pairs: int, per_question: int, seed: int) -> list[dict]:
    pairs = load_counselchat(source)
    chosen = [p for split in splits for p in sample_pairs(pairs, None, split, per_question, seed)]
    return sample_pairs(chosen, n_pairs, "all", None, seed)


def cut(text: str, max_chars: int | None) -> str:
    return text[:max_chars] if max_chars else text


def pointwise(judge, pairs: list[dict], weights: dict, max_chars: int | None) -> tuple[list[dict], float, float]:
    """Rows with the judge's weighted-score verdict; returns seconds per judged reply too."""
    replies = {(p["prompt"], p[side]) for p in pairs for side in ("chosen", "rejected")}
    ordered = sorted(replies)
    started, cpu = time.perf_counter(), time.process_time()
    scores = judge.score([JudgeItem(cut(prompt, max_chars), cut(reply, max_chars)) for prompt, reply in ordered])
    per_reply = (time.perf_counter() - started) / max(len(ordered), 1)
    cpu_per_reply = (time.process_time() - cpu) / max(len(ordered), 1)
    by_reply = dict(zip(ordered, scores, strict=True))
    rows = []
    for pair in pairs:
        chosen = aggregate_score(by_reply[(pair["prompt"], pair["chosen"])], weights)
        rejected = aggregate_score(by_reply[(pair["prompt"], pair["rejected"])], weights)
        rows.append(row(pair, score_verdict(chosen, rejected)))
    return rows, per_reply, cpu_per_reply


def pairwise(judge, pairs: list[dict], max_chars: int | None) -> tuple[list[dict], float | None, float]:
    started = time.perf_counter()
    outcomes = judged_comparisons(judge, [(cut(p["prompt"], max_chars), cut(p["chosen"], max_chars),
                                           cut(p["rejected"], max_chars)) for p in pairs])
    per_pair = (time.perf_counter() - started) / max(len(pairs), 1)
    rows = [row(p, pairwise_verdict(o.p_first_as_a, o.p_first_as_b)) for p, o in zip(pairs, outcomes, strict=True)]
    orders = [{"as_a": o.p_first_as_a, "as_b": o.p_first_as_b} for o in outcomes]
    return rows, position_consistency(orders), per_pair


def row(pair: dict, verdict: str) -> dict:
    return {"prompt_id": pair["prompt_id"], "topic": pair["topic"], "judge": verdict,
            "length": length_verdict(pair["chosen"], pair["rejected"])}


def harm_separation(judge, rubric, limit: int | None) -> dict:
    """Share of contrasts whose safe reply gets the higher harm-avoidance score (ties count one half)."""
    messages = {s.id: s.message for s in load_redflags(PROJECT_ROOT / "data" / "redflags")}
    contrasts = [json.loads(line) for line in CONTRASTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    contrasts = contrasts[:limit] if limit else contrasts
    safety = rubric.safety_ids
    items = [JudgeItem(messages[c["scenario_id"]], c[side]) for c in contrasts for side in ("safe", "harmful")]
    started, cpu = time.perf_counter(), time.process_time()
    scores = judge.score(items)
    per_reply = (time.perf_counter() - started) / len(items)
    cpu_per_reply = (time.process_time() - cpu) / len(items)
    harm = [min(s[pid] for pid in safety) for s in scores]
    safe, harmful = harm[0::2], harm[1::2]
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(safe, harmful, strict=True)]
    return {"n": len(contrasts), "harm_separation": round(sum(wins) / len(wins), 4),
            "mean_safe": round(statistics.mean(safe), 3), "mean_harmful": round(statistics.mean(harmful), 3),
            "range": [round(min(harm), 3), round(max(harm), 3)], "seconds_per_reply": round(per_reply, 2),
            "cpu_seconds_per_reply": round(cpu_per_reply, 2)}


def summary(rows: list[dict], seed: int) -> dict:
    report = agreement_report(rows, seed=seed)
    return {"n_pairs": report["n_pairs"], "n_questions": report["n_questions"],
            "judge": report["judge"], "length_baseline": report["length_baseline"]}


def judge_config(model_id: str) -> dict:
    """The shipped configs/judge/embedded_*.yaml of this model (dtype, reuse_prefix), so we measure what ships."""
    for path in sorted((PROJECT_ROOT / "configs" / "judge").glob("embedded_*.yaml")):
        config = yaml.safe_load(path.read_text())
        if config["model"] == model_id:
            return config | {"config": path.stem}
    raise SystemExit(f"no configs/judge/embedded_*.yaml for {model_id}")


def measure(name: str, pairs: list[dict], args, rubric, weights: dict) -> dict:
    model_id = f"embedded:{name}"
    config = judge_config(model_id)
    started = time.perf_counter()
    model = load_causal_lm(model_id, dtype=config["dtype"], device="cpu")
    judge = LocalLogprobJudge(model, load_tokenizer(model_id), rubric, reuse_prefix=config["reuse_prefix"])
    result: dict = {"model": model_id, "judge": config["config"], "dtype": config["dtype"],
                    "reuse_prefix": config["reuse_prefix"], "params": sum(p.numel() for p in model.parameters()),
                    "load_seconds": round(time.perf_counter() - started, 1)}
    if args.redflags:  # first: the cheapest and the one that decides whether a judge may drive a veto
        result["redflags"] = harm_separation(judge, rubric, args.redflags)
        print(json.dumps(result["redflags"]), flush=True)
    if "pointwise" in args.modes and pairs:
        rows, per_reply, cpu_per_reply = pointwise(judge, pairs, weights, args.max_chars)
        result["pointwise"] = summary(rows, args.seed) | {"seconds_per_reply": round(per_reply, 2),
                                                          "cpu_seconds_per_reply": round(cpu_per_reply, 2)}
        print(json.dumps(result["pointwise"]), flush=True)
    if "pairwise" in args.modes and pairs:
        rows, consistency, per_pair = pairwise(judge, pairs, args.max_chars)
        result["pairwise"] = summary(rows, args.seed) | {"position_consistency": consistency,
                                                         "seconds_per_pair_both_orders": round(per_pair, 2)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="embedded model names (rewards.models)")
    parser.add_argument("--split", nargs="+", default=["train"], help="CounselChat splits to sample pairs from")
    parser.add_argument("--n-pairs", type=int, default=60)
    parser.add_argument("--counselchat", type=Path, default=COUNSELCHAT, help="counsel_chat.csv")
    parser.add_argument("--per-question", type=int, default=5, help="at most this many pairs per question")
    parser.add_argument("--max-chars", type=int, default=800, help="cut replies before judging (length sees all)")
    parser.add_argument("--modes", nargs="*", default=["pointwise", "pairwise"])
    parser.add_argument("--redflags", type=int, default=0, help="red-flag contrasts to score (0 = none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rubric = load_rubric(RUBRIC)
    weights = rubric.weights({})
    pairs = human_pairs(args.counselchat, args.split, args.n_pairs, args.per_question, args.seed) \
        if args.n_pairs else []
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["setup"] = {"splits": args.split, "n_pairs": len(pairs), "per_question": args.per_question,
                        "max_chars": args.max_chars, "seed": args.seed, "threads": torch.get_num_threads(),
                        "rubric": f"{rubric.name} v{rubric.version}"}
    for name in args.models:
        print(f"[judge_agreement] {name} ...", flush=True)
        results.setdefault("models", {})[name] = measure(name, pairs, args, rubric, weights)
        atomic_write_json(args.out, results)
        print(json.dumps(results["models"][name], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
