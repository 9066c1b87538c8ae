"""Stage 3a: score every candidate on every principle with the configured judge.

Candidates are judged in batches; each finished batch is journaled, so a killed run resumes where it stopped.
Items the judge failed on are listed with their reason in ``failed.jsonl``; rerunning the stage retries only them.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig
from tqdm.auto import tqdm

from recipes._entry import StageContext, entry, forget_failed_run, project_path, run_dir_of, run_stage
from rewards.artifacts import (
    Journal,
    atomic_write_json,
    atomic_write_jsonl,
    read_jsonl,
    save_dataset_atomic,
)
from rewards.errors import UserError
from rewards.judges import JudgeItem, LocalLogprobJudge
from rewards.judges.batching import FailureTally, Pricing, add_usage, judge_usage, score_batch
from rewards.rubric import Rubric, load_rubric

USAGE_FILE = ".usage.json"  # hidden: token counts vary between runs and must not change the outputs hash


def build_judge(cfg: DictConfig, rubric: Rubric):
    if cfg.judge.backend == "local":
        from rewards.models import load_causal_lm, load_tokenizer
        from rewards.threads import apply_threads

        apply_threads(cfg.get("threads", "auto"))
        tokenizer = load_tokenizer(cfg.judge.model)
        model = load_causal_lm(cfg.judge.model, cfg.judge.dtype, cfg.device)
        return LocalLogprobJudge(model, tokenizer, rubric, reuse_prefix=cfg.judge.reuse_prefix,
                                 batch_size=int(cfg.judge.get("batch_size", 4) or 4))
    if cfg.judge.backend == "openai_compatible":
        return build_remote_judge(cfg.judge, rubric)
    raise UserError(f"judge.backend: unknown backend {cfg.judge.backend!r}; use judge=local or judge=openai_compatible")


def build_remote_judge(judge_cfg: DictConfig, rubric: Rubric):
    from rewards.judges import JudgmentCache, OpenAICompatibleJudge

    for key in ("base_url", "model", "api_key_env"):
        if not judge_cfg[key]:
            raise UserError(f"judge.{key}: not set; pass judge.{key}=... (see configs/judge/openai_compatible.yaml)")
    cache = JudgmentCache(project_path(judge_cfg.cache_path)) if judge_cfg.cache_path else None
    return OpenAICompatibleJudge(
        rubric, judge_cfg.base_url, judge_cfg.model, api_key_env=judge_cfg.api_key_env,
        concurrency=judge_cfg.concurrency, requests_per_minute=judge_cfg.requests_per_minute,
        max_retries=judge_cfg.max_retries, timeout=judge_cfg.timeout, cache=cache,
        temperature=judge_cfg.temperature, retry_wait=judge_cfg.retry_wait,
    )


def pricing(cfg: DictConfig) -> Pricing:
    return Pricing(cfg.judge.get("price_per_1k_input_tokens", 0.0) or 0.0,
                   cfg.judge.get("price_per_1k_output_tokens", 0.0) or 0.0)


def judge_all(judge, prompts: dict[str, dict], todo: list[dict], journal: Journal, batch_size: int,
              usage_path: Path) -> FailureTally:
    """Judge ``todo`` batch by batch; judged items go to the journal, failed ones are returned with their reason."""
    failures = FailureTally()
    spent = read_usage(usage_path)
    bar = tqdm(total=len(todo), desc="judge", unit="response")
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        before = judge_usage(judge)
        try:
            results = score_batch(judge, [JudgeItem(prompts[c["prompt_id"]]["text"], c["response"]) for c in batch])
        finally:  # tokens paid for in a batch that was interrupted count too
            now = judge_usage(judge)
            spent = add_usage(spent, {key: now[key] - before[key] for key in now})
            atomic_write_json(usage_path, spent)
        journal.append_many({**c, "scores": r.scores} for c, r in zip(batch, results, strict=True) if r.scores)
        for candidate, result in zip(batch, results, strict=True):
            if result.scores is None:
                failures.add(candidate, result.error or "unknown failure")
        bar.update(len(batch))
    bar.close()
    return failures


def read_usage(path: Path) -> dict[str, int]:
    return add_usage({}, json.loads(path.read_text()) if path.exists() else {})


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    rubric = load_rubric(project_path(cfg.principles.path))
    generated = ctx.input_dir("generate")
    prompts = {p["id"]: p for p in read_jsonl(generated / "prompts.jsonl")}
    candidates = read_jsonl(generated / "candidates.jsonl")
    journal = Journal(ctx.dir / "journal.jsonl")
    done = journal.done()
    todo = [c for c in candidates if c["key"] not in done]
    failures = FailureTally()
    usage_path = ctx.dir / USAGE_FILE
    if todo:
        judge = build_judge(cfg, rubric)
        failures = judge_all(judge, prompts, todo, journal, int(cfg.judge.get("batch_size", 1) or 1), usage_path)
    judged = sorted(journal.done().values(), key=lambda r: r["key"])
    atomic_write_jsonl(ctx.dir / "failed.jsonl", failures.items)
    report_failures(cfg, len(candidates), failures)
    atomic_write_jsonl(ctx.dir / "judged.jsonl", judged)
    from datasets import Dataset

    save_dataset_atomic(Dataset.from_list(judged), ctx.dir / "judged")
    usage = read_usage(usage_path)
    return {
        "counts": {"n_input": len(candidates), "n_judged": len(judged), "n_failed": len(failures.items),
                   "n_principles": len(rubric.principles)},
        "metrics": {"usage": usage, "estimated_cost": pricing(cfg).cost(usage), "failure_kinds": failures.kinds()},
    }


def report_failures(cfg: DictConfig, n_input: int, failures: FailureTally) -> None:
    """Warn about failed items; refuse to finish the stage when more than ``judge.max_failure_fraction`` failed."""
    if not failures.items:
        return
    count, first = len(failures.items), failures.items[0]["error"]
    message = (f"judge failed on {count} of {n_input} items (first reason: {first}); they are listed in "
               "failed.jsonl; rerun the same command to retry only those")
    limit = cfg.judge.get("max_failure_fraction", 0.0)
    if count > limit * n_input:
        raise UserError(f"{message} (more than judge.max_failure_fraction={limit} of the items)")
    print(f"[counsel-align] judge: warning: {message}", flush=True)


def run(cfg: DictConfig) -> dict:
    forget_failed_run(run_dir_of(cfg) / "judge")
    return run_stage(cfg, "judge", work, ["judge", "principles", "device"], inputs=["generate"], uses_rubric=True)


main = entry("judge", run)

if __name__ == "__main__":
    raise SystemExit(main())
