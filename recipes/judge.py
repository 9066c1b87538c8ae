"""Stage 3a: score every candidate on every principle with the configured judge.

Candidates are judged in batches; each finished batch is journaled, so a killed run resumes where it stopped.
Items the judge failed on are listed with their reason in ``failed.jsonl``; rerunning the stage retries only them.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig
from tqdm.auto import tqdm

from recipes._entry import StageContext, entry, forget_failed_run, output_path, project_path, run_dir_of, run_stage
from rewards.artifacts import (
    Journal,
    atomic_write_json,
    atomic_write_jsonl,
    read_jsonl,
    save_dataset_atomic,
)
from rewards.distributed import (
    all_gather,
    is_main_process,
    join_process_group,
    main_process_first,
    rank,
    shard,
    wait_for_all_ranks,
    world_size,
)
from rewards.errors import UserError
from rewards.judges import JudgeItem, LocalLogprobJudge
from rewards.judges.batching import FailureTally, Pricing, add_usage, judge_usage, score_batch
from rewards.log import get_logger
from rewards.rubric import Rubric, load_rubric

log = get_logger(__name__)

USAGE_FILE = ".usage.json"  # hidden: token counts vary between runs and must not change the outputs hash


def build_judge(cfg: DictConfig, rubric: Rubric):
    if cfg.judge.backend == "local":
        from rewards.models import load_causal_lm, load_tokenizer
        from rewards.threads import apply_threads

        apply_threads(cfg.threads)
        tokenizer = load_tokenizer(cfg.judge.model)
        model = load_causal_lm(cfg.judge.model, cfg.judge.dtype, cfg.device)
        return LocalLogprobJudge(model, tokenizer, rubric, reuse_prefix=cfg.judge.reuse_prefix,
                                 batch_size=cfg.judge.batch_size)
    if cfg.judge.backend == "openai_compatible":
        return build_remote_judge(cfg.judge, rubric)
    raise UserError(f"judge.backend: unknown backend {cfg.judge.backend!r}; use judge=local or judge=openai_compatible")


def judge_label(cfg: DictConfig) -> str:
    """The configured judge as reports and summaries name it: ``backend (model)``."""
    return f"{cfg.judge.backend} ({cfg.judge.model})"


def build_remote_judge(judge_cfg: DictConfig, rubric: Rubric):
    from rewards.judges import JudgmentCache, OpenAICompatibleJudge

    for key in ("base_url", "model", "api_key_env"):
        if not judge_cfg[key]:
            raise UserError(f"judge.{key}: not set; pass judge.{key}=... (options: recipes/config_schema.py "
                            "OpenAICompatibleJudgeOptions)")
    cache = JudgmentCache(output_path(judge_cfg.cache_path)) if judge_cfg.cache_path else None
    return OpenAICompatibleJudge(
        rubric, judge_cfg.base_url, judge_cfg.model, api_key_env=judge_cfg.api_key_env,
        concurrency=judge_cfg.concurrency, requests_per_minute=judge_cfg.requests_per_minute,
        max_retries=judge_cfg.max_retries, timeout=judge_cfg.timeout, cache=cache,
        temperature=judge_cfg.temperature, retry_wait=judge_cfg.retry_wait,
    )


def pricing(cfg: DictConfig) -> Pricing:
    if cfg.judge.backend != "openai_compatible":
        return Pricing(0.0, 0.0)  # a local judge is paid in time, not tokens (its schema has no prices)
    return Pricing(cfg.judge.price_per_1k_input_tokens or 0.0, cfg.judge.price_per_1k_output_tokens or 0.0)


def judge_all(judge, prompts: dict[str, dict], todo: list[dict], journal: Journal, batch_size: int,
              usage_path: Path) -> FailureTally:
    """Judge ``todo`` batch by batch; judged items go to the journal, failed ones are returned with their reason.

    Under ``accelerate launch`` this rank judges its shard of the batches (the batches of one process, so a batched
    local judge pads them alike) into its own rank journal.
    """
    failures = FailureTally()
    spent = read_usage(usage_path)
    batches = shard([todo[start:start + batch_size] for start in range(0, len(todo), batch_size)])
    writer = journal.for_rank(rank(), world_size())
    bar = tqdm(total=sum(len(batch) for batch in batches), desc="judge", unit="response")
    for batch in batches:
        before = judge_usage(judge)
        try:
            results = score_batch(judge, [JudgeItem(prompts[c["prompt_id"]]["text"], c["response"]) for c in batch])
        finally:  # tokens paid for in a batch that was interrupted count too
            now = judge_usage(judge)
            spent = add_usage(spent, {key: now[key] - before[key] for key in now})
            atomic_write_json(usage_path, spent)
        writer.append_many({**c, "scores": r.scores} for c, r in zip(batch, results, strict=True) if r.scores)
        for candidate, result in zip(batch, results, strict=True):
            if result.scores is None:
                failures.add(candidate, result.error or "unknown failure")
        bar.update(len(batch))
    bar.close()
    return failures


def read_usage(path: Path) -> dict[str, int]:
    return add_usage({}, json.loads(path.read_text()) if path.exists() else {})


def rank_usage_path(stage_dir: Path) -> Path:
    """Where this rank counts its tokens: the stage's usage file in one process, a file of its own under a launch."""
    return stage_dir / (USAGE_FILE if world_size() == 1 else f".usage.rank{rank()}.json")


def merge_rank_usage(stage_dir: Path) -> None:
    """Add the ranks' token counts into the stage's usage file (rank 0, after every rank stopped writing)."""
    parts = sorted(stage_dir.glob(".usage.rank*.json"))
    if not parts:
        return
    total = read_usage(stage_dir / USAGE_FILE)
    for part in parts:
        total = add_usage(total, read_usage(part))
    atomic_write_json(stage_dir / USAGE_FILE, total)
    for part in parts:
        part.unlink()


def work(ctx: StageContext) -> dict:
    """Under ``accelerate launch`` every rank judges a shard of the candidates; rank 0 merges the rank journals and
    writes the outputs."""
    cfg = ctx.cfg
    join_process_group()
    rubric = load_rubric(project_path(cfg.principles.path))
    generated = ctx.input_dir("generate")
    prompts = {p["id"]: p for p in read_jsonl(generated / "prompts.jsonl")}
    candidates = read_jsonl(generated / "candidates.jsonl")
    journal = Journal(ctx.dir / "journal.jsonl")
    if is_main_process():  # what a killed launch finished counts as done, whatever the number of processes
        journal.merge_rank_files()
        merge_rank_usage(ctx.dir)
    wait_for_all_ranks()  # every rank reads the same merged journal, so their shards are disjoint and complete
    done = journal.done()
    todo = [c for c in candidates if c["key"] not in done]
    failed: list[dict] = []
    if todo:
        judge = build_judge(cfg, rubric)
        failed = judge_all(judge, prompts, todo, journal, cfg.judge.batch_size,
                           rank_usage_path(ctx.dir)).items
    failures = FailureTally(sorted((item for part in all_gather(failed) for item in part), key=lambda r: r["key"]))
    wait_for_all_ranks()  # every rank has finished appending to its journal and usage file
    if is_main_process():
        atomic_write_jsonl(ctx.dir / "failed.jsonl", failures.items)
        journal.merge_rank_files()
        merge_rank_usage(ctx.dir)
    report_failures(cfg, len(candidates), failures)  # every rank raises alike, so none waits for a stopped one
    if not is_main_process():
        return {}
    judged = journal.compact()
    atomic_write_jsonl(ctx.dir / "judged.jsonl", judged)
    from datasets import Dataset

    save_dataset_atomic(Dataset.from_list(judged), ctx.dir / "judged")
    usage = read_usage(ctx.dir / USAGE_FILE)
    return {
        "counts": {"n_input": len(candidates), "n_judged": len(judged), "n_failed": len(failures.items),
                   "n_principles": len(rubric.principles)},
        "metrics": {"usage": usage, "estimated_cost": pricing(cfg).cost(usage), "failure_kinds": failures.kinds(),
                    "processes": world_size()},
    }


def report_failures(cfg: DictConfig, n_input: int, failures: FailureTally) -> None:
    """Warn about failed items; refuse to finish the stage when more than ``judge.max_failure_fraction`` failed."""
    if not failures.items:
        return
    count, first = len(failures.items), failures.items[0]["error"]
    message = (f"judge failed on {count} of {n_input} items (first reason: {first}); they are listed in "
               "failed.jsonl; rerun the same command to retry only those")
    limit = cfg.judge.max_failure_fraction
    if count > limit * n_input:
        raise UserError(f"{message} (more than judge.max_failure_fraction={limit} of the items)")
    log.info(f"judge: warning: {message}")


def run(cfg: DictConfig) -> dict:
    main_process_first(lambda: forget_failed_run(run_dir_of(cfg) / "judge"))
    return run_stage(cfg, "judge", work)


main = entry("judge", run)

if __name__ == "__main__":
    raise SystemExit(main())
