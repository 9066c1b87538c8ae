"""Stage 1-2: select client prompts and generate candidate responses from the responder pool.

Local responders run with ``model.generate``; responders with an ``endpoint`` ask an OpenAI-compatible server.
Endpoint requests that fail after retries are listed in ``failed.jsonl``; rerunning the stage asks only for them.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, forget_failed_run, project_path, run_dir_of, run_stage
from rewards.artifacts import Journal, atomic_write_jsonl, save_dataset_atomic
from rewards.distributed import (
    all_gather,
    is_main_process,
    join_process_group,
    main_process_first,
    wait_for_all_ranks,
    world_size,
)
from rewards.errors import UserError
from rewards.generation.endpoint import EndpointGenerator
from rewards.generation.responders import Responder, generate_candidates
from rewards.log import get_logger
from rewards.models import load_causal_lm, load_tokenizer
from rewards.prompts import load_prompts, select_prompts, split_of
from rewards.threads import apply_threads

log = get_logger(__name__)


def selected_prompts(cfg: DictConfig) -> list[dict]:
    source = project_path(cfg.data.prompts)
    prompts = load_prompts(source)
    topics = list(cfg.data.topics) if cfg.data.topics else None
    rows = []
    for split, limit in (("train", cfg.data.max_train_prompts), ("test", cfg.data.max_test_prompts)):
        for prompt in select_prompts(prompts, split, cfg.data.test_fraction, limit, topics):
            assert split_of(prompt.id, cfg.data.test_fraction) == split
            rows.append({**prompt.as_dict(), "split": split})
    if not rows:  # a stage that "finishes" with nothing to generate only moves the failure downstream
        raise UserError(f"data.prompts: no prompts selected from {source} ({len(prompts)} read; data.topics="
                        f"{topics}, data.max_train_prompts={cfg.data.max_train_prompts}, data.max_test_prompts="
                        f"{cfg.data.max_test_prompts}); add prompts there or point data.prompts at a file or folder "
                        "that has some")
    return rows


def responders(cfg: DictConfig) -> list[Responder]:
    return [Responder(**OmegaConf.to_container(member, resolve=True)) for member in cfg.generate.pool]


def work(ctx: StageContext) -> dict:
    """Under ``accelerate launch`` every rank generates a shard of the replies into its own journal; rank 0 merges
    them and writes the outputs."""
    cfg = ctx.cfg
    join_process_group()
    prompts = selected_prompts(cfg)
    journal = Journal(ctx.dir / "journal.jsonl")
    if is_main_process():  # rank files left by a killed launch count as done, whatever the number of processes
        atomic_write_jsonl(ctx.dir / "prompts.jsonl", prompts)
        journal.merge_rank_files()
    wait_for_all_ranks()  # every rank reads the same merged journal, so their shards are disjoint and complete
    pool = responders(cfg)
    # Built first, so that a missing API key stops the stage before any local generation.
    remote = [EndpointGenerator(r, cfg.generate.max_new_tokens, cfg.seed) for r in pool if r.endpoint is not None]
    local = [r for r in pool if r.endpoint is None]
    if local:
        apply_threads(cfg.threads)
    for model_name in dict.fromkeys(r.model for r in local):
        tokenizer = load_tokenizer(model_name, cfg.model.trust_remote_code)
        model = load_causal_lm(model_name, cfg.model.dtype, cfg.device, cfg.model.trust_remote_code)
        for responder in (r for r in local if r.model == model_name):
            generate_candidates(model, tokenizer, prompts, responder, journal,
                                cfg.generate.batch_size, cfg.generate.max_new_tokens, cfg.seed)
        del model
    failed, usage = generate_with_endpoints(cfg, remote, prompts, journal)
    failed = sorted((item for part in all_gather(failed) for item in part), key=lambda r: r["key"])
    usage = merge_usage(all_gather(usage))
    wait_for_all_ranks()  # every rank has finished appending to its journal
    if is_main_process():
        atomic_write_jsonl(ctx.dir / "failed.jsonl", failed)
        journal.merge_rank_files()
    # Every rank decides alike, so none is left waiting for a rank that stopped.
    check_failures(cfg, failed, len(prompts) * sum(g.responder.num_samples for g in remote))
    if not is_main_process():
        return {}
    candidates = journal.compact()
    atomic_write_jsonl(ctx.dir / "candidates.jsonl", candidates)
    from datasets import Dataset

    save_dataset_atomic(Dataset.from_list(candidates), ctx.dir / "candidates")
    return {"counts": {
        "n_prompts": len(prompts),
        "n_train_prompts": sum(p["split"] == "train" for p in prompts),
        "n_test_prompts": sum(p["split"] == "test" for p in prompts),
        "n_candidates": len(candidates),
        "n_unfinished": sum(not c["finished"] for c in candidates),
        "n_failed": len(failed),
        "by_source": {r.name: sum(c["source"] == r.name for c in candidates) for r in pool},
    }, "metrics": {"endpoint_usage": usage, "processes": world_size()}}


def merge_usage(per_rank: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum each endpoint responder's request and token counts over the ranks."""
    total: dict[str, dict[str, int]] = {}
    for usage in per_rank:
        for name, counts in usage.items():
            total[name] = {key: total.get(name, {}).get(key, 0) + value for key, value in counts.items()}
    return total


def generate_with_endpoints(cfg: DictConfig, generators: list[EndpointGenerator], prompts: list[dict],
                            journal: Journal) -> tuple[list[dict], dict]:
    """Replies of the endpoint responders; returns the failed requests and the usage per responder."""
    failed, usage = [], {}
    for generator in generators:
        generator.generate(prompts, journal, cfg.generate.endpoint_batch_size)
        failed += generator.failures
        usage[generator.responder.name] = generator.usage
    return failed, usage


def check_failures(cfg: DictConfig, failed: list[dict], n_requested: int) -> None:
    """Refuse to finish when more than ``generate.max_failure_fraction`` of the replies could not be generated."""
    if not failed:
        return
    message = (f"generate: {len(failed)} of {n_requested} endpoint replies failed (first reason: "
               f"{failed[0]['error']}); they are listed in failed.jsonl; rerun the same command to retry only those")
    if len(failed) > cfg.generate.max_failure_fraction * n_requested:
        raise UserError(f"{message} (more than generate.max_failure_fraction={cfg.generate.max_failure_fraction})")
    log.info(f"warning: {message}")


def run(cfg: DictConfig) -> dict:
    main_process_first(lambda: forget_failed_run(run_dir_of(cfg) / "generate"))
    return run_stage(cfg, "generate", work)


main = entry("generate", run)

if __name__ == "__main__":
    raise SystemExit(main())
