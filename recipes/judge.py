"""Stage 3a: score every candidate on every principle with the configured judge."""

from __future__ import annotations

from omegaconf import DictConfig
from tqdm.auto import tqdm

from recipes._entry import StageContext, entry, project_path, run_stage
from rewards.artifacts import Journal, atomic_write_jsonl, read_jsonl, save_dataset_atomic
from rewards.errors import UserError
from rewards.judges import JudgeItem, LocalLogprobJudge
from rewards.rubric import Rubric, load_rubric


def build_judge(cfg: DictConfig, rubric: Rubric):
    if cfg.judge.backend == "local":
        from rewards.models import load_causal_lm, load_tokenizer

        tokenizer = load_tokenizer(cfg.judge.model)
        model = load_causal_lm(cfg.judge.model, cfg.judge.dtype, cfg.device)
        return LocalLogprobJudge(model, tokenizer, rubric, reuse_prefix=cfg.judge.reuse_prefix)
    raise UserError(f"judge.backend: unknown backend {cfg.judge.backend!r}; use judge=local")


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    rubric = load_rubric(project_path(cfg.principles.path))
    generated = ctx.input_dir("generate")
    prompts = {p["id"]: p for p in read_jsonl(generated / "prompts.jsonl")}
    candidates = read_jsonl(generated / "candidates.jsonl")
    journal = Journal(ctx.dir / "journal.jsonl")
    done = journal.done()
    todo = [c for c in candidates if c["key"] not in done]
    if todo:
        judge = build_judge(cfg, rubric)
        for candidate in tqdm(todo, desc="judge", unit="response"):
            item = JudgeItem(prompts[candidate["prompt_id"]]["text"], candidate["response"])
            scores = judge.score([item])[0]
            journal.append_many([{**candidate, "scores": scores}])
    judged = sorted(journal.done().values(), key=lambda r: r["key"])
    atomic_write_jsonl(ctx.dir / "judged.jsonl", judged)
    from datasets import Dataset

    save_dataset_atomic(Dataset.from_list(judged), ctx.dir / "judged")
    return {"counts": {"n_judged": len(judged), "n_failed": len(candidates) - len(judged),
                       "n_principles": len(rubric.principles)}}


def run(cfg: DictConfig) -> dict:
    return run_stage(cfg, "judge", work, ["judge", "principles", "device"], inputs=["generate"], uses_rubric=True)


main = entry("judge", run)

if __name__ == "__main__":
    raise SystemExit(main())
