"""Stage 3b: turn per-principle scores into weighted chosen/rejected pairs, per split."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from recipes.calibrate import check_harm_judge
from recipes.sft import human_data_path
from rewards.artifacts import atomic_write_jsonl, read_jsonl, save_dataset_atomic
from rewards.errors import UserError
from rewards.human_prefs import HumanSource, load_source_pairs, parse_human_sources
from rewards.pairs import PairPolicy, build_pairs, check_split_leakage, length_stats, mix_in_human_pairs
from rewards.rubric import load_rubric
from rewards.training.sft_kto import resolve_table, source_fingerprint


def human_sources(cfg: DictConfig) -> list[HumanSource]:
    specs = OmegaConf.to_container(cfg.pairs.human.sources, resolve=True)
    return parse_human_sources(specs)


def source_table(source: HumanSource) -> str:
    return str(resolve_table(human_data_path(str(source.path))))


def add_human_pairs(cfg: DictConfig, train: list[dict], rubric_ids: list[str]) -> tuple[list[dict], list[dict]]:
    """Train pairs with each human source's (capped, weighted) pairs appended, and per-source info for the manifest."""
    human, infos = {}, []
    for index, source in enumerate(human_sources(cfg)):
        pairs, info = load_source_pairs(source, source_table(source), cfg.seed, f"pairs.human.sources[{index}]")
        human[source.name] = (pairs, source.weight)
        infos.append({**info, "sha256": source_fingerprint(source_table(source))})
    return mix_in_human_pairs(train, human, rubric_ids), infos


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    rubric = load_rubric(project_path(cfg.principles.path))
    weights = rubric.weights(OmegaConf.to_container(cfg.principles.weights))
    prompts = {p["id"]: p for p in read_jsonl(ctx.input_dir("generate") / "prompts.jsonl")}
    judged = read_jsonl(ctx.input_dir("judge") / "judged.jsonl")
    policy = PairPolicy(margin=cfg.pairs.margin, safety_threshold=cfg.pairs.safety_threshold,
                        strategy=cfg.pairs.strategy, duplicate_threshold=cfg.pairs.duplicate_threshold,
                        max_length_ratio=cfg.pairs.max_length_ratio, seed=cfg.seed)
    from datasets import Dataset, DatasetDict

    splits, counts = {}, {}
    for split in ("train", "test"):
        rows = [r for r in judged if prompts[r["prompt_id"]]["split"] == split]
        pairs, split_counts = build_pairs(prompts, rows, rubric, weights, policy)
        splits[split] = pairs
        counts.update({f"{split}_{k}": v for k, v in split_counts.items()})
        atomic_write_jsonl(ctx.dir / f"{split}.jsonl", pairs)
    sources = human_sources(cfg)
    if sources:  # human pairs join the train split only: test pairs stay judge-built
        splits["train"], human_info = add_human_pairs(cfg, splits["train"], rubric.ids)
        splits["test"] = [{**pair, "source": "judge", "weight": 1.0} for pair in splits["test"]]
        atomic_write_jsonl(ctx.dir / "train.jsonl", splits["train"])
        atomic_write_jsonl(ctx.dir / "test.jsonl", splits["test"])
        counts["train_judge_pairs"] = counts["train_pairs"]
        counts["train_pairs"] = len(splits["train"])
        counts.update({f"human_{info['name']}_pairs": info["n_rows"] for info in human_info})
    check_split_leakage(splits)
    dataset = DatasetDict({s: Dataset.from_list(rows) if rows else Dataset.from_dict({}) for s, rows in splits.items()})
    save_dataset_atomic(dataset, ctx.dir / "dataset")  # replaces a dataset/ left by a run killed before its manifest
    counts["n_pairs"] = counts["train_pairs"] + counts["test_pairs"]
    metrics = {"length": {s: length_stats(p) for s, p in splits.items()}, "weights": weights}
    if sources:
        metrics["human_sources"] = human_info
    return {"counts": counts, "metrics": metrics}


def run(cfg: DictConfig) -> dict:
    check_harm_judge(cfg, "pairs.safety_threshold", cfg.pairs.safety_threshold)
    sources = human_sources(cfg)  # refuse a bad source before any work
    if sources and cfg.reward.method == "reward_multihead":
        raise UserError("pairs.human.sources: human pairs have no per-principle scores for reward_multihead; "
                        "use reward=lora or drop the human sources")
    return run_stage(cfg, "pairs", work)


main = entry("pairs", run)

if __name__ == "__main__":
    raise SystemExit(main())
