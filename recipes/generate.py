"""Stage 1-2: select client prompts and generate candidate responses from the responder pool."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from rewards.artifacts import Journal, atomic_write_jsonl, save_dataset_atomic
from rewards.generation import Responder, generate_candidates
from rewards.models import load_causal_lm, load_tokenizer
from rewards.prompts import load_prompts, select_prompts, split_of


def selected_prompts(cfg: DictConfig) -> list[dict]:
    prompts = load_prompts(project_path(cfg.data.prompts))
    topics = list(cfg.data.topics) if cfg.data.topics else None
    rows = []
    for split, limit in (("train", cfg.data.max_train_prompts), ("test", cfg.data.max_test_prompts)):
        for prompt in select_prompts(prompts, split, cfg.data.test_fraction, limit, topics):
            assert split_of(prompt.id, cfg.data.test_fraction) == split
            rows.append({**prompt.as_dict(), "split": split})
    return rows


def responders(cfg: DictConfig) -> list[Responder]:
    return [Responder(**OmegaConf.to_container(member, resolve=True)) for member in cfg.generate.pool]


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    prompts = selected_prompts(cfg)
    atomic_write_jsonl(ctx.dir / "prompts.jsonl", prompts)
    journal = Journal(ctx.dir / "journal.jsonl")
    pool = responders(cfg)
    for model_name in dict.fromkeys(r.model for r in pool):
        tokenizer = load_tokenizer(model_name, cfg.model.trust_remote_code)
        model = load_causal_lm(model_name, cfg.model.dtype, cfg.device, cfg.model.trust_remote_code)
        for responder in (r for r in pool if r.model == model_name):
            generate_candidates(model, tokenizer, prompts, responder, journal,
                                cfg.generate.batch_size, cfg.generate.max_new_tokens, cfg.seed)
        del model
    by_key = journal.done()
    candidates = sorted(by_key.values(), key=lambda r: r["key"])
    atomic_write_jsonl(ctx.dir / "candidates.jsonl", candidates)
    from datasets import Dataset

    save_dataset_atomic(Dataset.from_list(candidates), ctx.dir / "candidates")
    return {"counts": {
        "n_prompts": len(prompts),
        "n_train_prompts": sum(p["split"] == "train" for p in prompts),
        "n_test_prompts": sum(p["split"] == "test" for p in prompts),
        "n_candidates": len(candidates),
        "n_unfinished": sum(not c["finished"] for c in candidates),
    }}


def run(cfg: DictConfig) -> dict:
    return run_stage(cfg, "generate", work, ["model", "data", "generate", "seed"], inputs=[])


main = entry("generate", run)

if __name__ == "__main__":
    raise SystemExit(main())
