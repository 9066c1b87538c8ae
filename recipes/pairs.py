"""Stage 3b: turn per-principle scores into weighted chosen/rejected pairs, per split."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from recipes.calibrate import check_harm_judge
from rewards.artifacts import atomic_write_jsonl, read_jsonl
from rewards.pairs import PairPolicy, build_pairs, check_split_leakage, length_stats
from rewards.rubric import load_rubric


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    rubric = load_rubric(project_path(cfg.principles.path))
    weights = rubric.weights(OmegaConf.to_container(cfg.principles.weights))
    prompts = {p["id"]: p for p in read_jsonl(ctx.input_dir("generate") / "prompts.jsonl")}
    judged = read_jsonl(ctx.input_dir("judge") / "judged.jsonl")
    policy = PairPolicy(margin=cfg.pairs.margin, safety_threshold=cfg.pairs.safety_threshold,
                        strategy=cfg.pairs.strategy, duplicate_threshold=cfg.pairs.get("duplicate_threshold", 0.9),
                        max_length_ratio=cfg.pairs.get("max_length_ratio"), seed=cfg.seed)
    from datasets import Dataset, DatasetDict

    splits, counts = {}, {}
    for split in ("train", "test"):
        rows = [r for r in judged if prompts[r["prompt_id"]]["split"] == split]
        pairs, split_counts = build_pairs(prompts, rows, rubric, weights, policy)
        splits[split] = pairs
        counts.update({f"{split}_{k}": v for k, v in split_counts.items()})
        atomic_write_jsonl(ctx.dir / f"{split}.jsonl", pairs)
    check_split_leakage(splits)
    dataset = DatasetDict({s: Dataset.from_list(rows) if rows else Dataset.from_dict({}) for s, rows in splits.items()})
    tmp = ctx.dir / ".dataset.tmp"
    dataset.save_to_disk(str(tmp))
    tmp.rename(ctx.dir / "dataset")
    counts["n_pairs"] = counts["train_pairs"] + counts["test_pairs"]
    return {"counts": counts, "metrics": {"length": {s: length_stats(p) for s, p in splits.items()},
                                          "weights": weights}}


def run(cfg: DictConfig) -> dict:
    check_harm_judge(cfg, "pairs.safety_threshold", cfg.pairs.safety_threshold)
    return run_stage(cfg, "pairs", work, ["pairs", "principles", "seed"], inputs=["generate", "judge"],
                     uses_rubric=True)


main = entry("pairs", run)

if __name__ == "__main__":
    raise SystemExit(main())
