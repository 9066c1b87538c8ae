"""Stage 4: train a reward model on the train pairs (scalar TRL RM or one head per principle); export it with a
model card; report held-out pairwise accuracy beside the length-only baseline."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from rewards.artifacts import atomic_write_json, read_manifest
from rewards.distributed import is_main_process
from rewards.errors import UserError
from rewards.log import get_logger
from rewards.models import load_tokenizer
from rewards.reward_models.data import response_text, tokenize_pairs
from rewards.reward_models.io import export_reward_model
from rewards.reward_models.scorer import RewardScorer, length_baseline_accuracy, pairwise_accuracy
from rewards.reward_models.training import train_reward_model
from rewards.rubric import load_rubric
from rewards.training.checkpointing import consolidated_state_dict, zero_stage
from rewards.training.loop import stage_provenance, train_and_save
from rewards.training.tracking import configure_wandb

log = get_logger(__name__)

METHODS = ("reward", "reward_multihead")


def load_pairs(ctx: StageContext):
    from datasets import load_from_disk

    # In memory: a Trainer's map over a dataset read from disk writes its cache files into that folder, i.e. into
    # the finished pairs stage (changing what its manifest hashed, and different per reader).
    dataset = load_from_disk(str(ctx.input_dir("pairs") / "dataset"), keep_in_memory=True)
    if len(dataset["train"]) == 0:
        raise UserError("pairs: no training pairs; lower pairs.margin or generate more candidates")
    return dataset


def scorable(pairs) -> list[dict]:
    return [r for r in pairs if response_text(r["chosen"]).strip() and response_text(r["rejected"]).strip()]


def held_out_accuracy(scorer: RewardScorer, pairs) -> dict:
    rows = scorable(pairs)
    if not rows:
        return {"rm_accuracy": float("nan"), "rm_length_baseline": float("nan"), "n_eval_pairs": 0,
                "n_eval_pairs_dropped_empty": len(pairs)}
    prompts = [r["prompt"] for r in rows]
    chosen = scorer.score(prompts, [response_text(r["chosen"]) for r in rows])
    rejected = scorer.score(prompts, [response_text(r["rejected"]) for r in rows])
    return {"rm_accuracy": round(pairwise_accuracy(chosen, rejected), 4),
            "rm_length_baseline": round(length_baseline_accuracy(rows), 4),
            "n_eval_pairs": len(rows), "n_eval_pairs_dropped_empty": len(pairs) - len(rows)}


def build_trainer(ctx: StageContext, train_cfg: dict, tokenizer, pairs, principle_ids: list[str]):
    """Tokenize the train pairs (counting drops/truncations) and build the trainer for the configured method."""
    cfg = ctx.cfg
    multihead = train_cfg["method"] == "reward_multihead"
    rows, report = tokenize_pairs(pairs["train"], tokenizer, train_cfg["max_length"], train_cfg["overflow"],
                                  principle_ids=principle_ids if multihead else (),
                                  use_margin=bool(train_cfg["use_margin"]) and not multihead,
                                  source=str(ctx.input_dir("pairs") / "dataset"))
    log.info(f"reward: train pairs: {report.summary()}")
    if not rows:
        raise UserError(f"reward: every train pair was dropped ({report.summary()}); raise reward.max_length "
                        "or set reward.overflow=truncate")
    report_to = configure_wandb(cfg.wandb.mode, cfg.wandb.project, ctx.run_dir / "wandb", f"{cfg.run}-reward")
    if multihead:
        from rewards.reward_models.multihead import train_multihead_reward_model

        trainer = train_multihead_reward_model(cfg.model.name_or_path, tokenizer, rows, principle_ids, train_cfg,
                                               ctx.dir / "checkpoints", report_to, cfg.seed,
                                               trust_remote_code=cfg.model.trust_remote_code)
    else:
        from datasets import Dataset

        trainer = train_reward_model(cfg.model.name_or_path, tokenizer, Dataset.from_list(rows), None, train_cfg,
                                     ctx.dir / "checkpoints", report_to, cfg.seed)
    return trainer, report


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    train_cfg = OmegaConf.to_container(cfg.reward, resolve=True)
    method = cfg.reward.method
    if method not in METHODS:
        raise UserError(f"reward.method: {method!r} is not one of {list(METHODS)}")
    rubric = load_rubric(project_path(cfg.principles.path))
    pairs = load_pairs(ctx)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    trainer, data_report = build_trainer(ctx, train_cfg, tokenizer, pairs, rubric.ids)
    if zero_stage(trainer) == 3 and cfg.reward.merge_lora and cfg.reward.peft != "none":
        raise UserError("reward.merge_lora=true: under ZeRO-3 the base weights are partitioned and cannot be "
                        "merged at export; set reward.merge_lora=false (load_reward(..., merge_lora=True) "
                        "merges the adapter when it loads)")
    multihead = method == "reward_multihead"
    weights = rubric.weights(OmegaConf.to_container(cfg.principles.weights)) if multihead else {"reward": 1.0}
    provenance = stage_provenance(stage="reward", run=cfg.run, base_model=cfg.model.name_or_path,
                                  config={**train_cfg, "seed": cfg.seed},
                                  inputs={"pairs": read_manifest(ctx.input_dir("pairs")) or {}},
                                  rubric_path=project_path(cfg.principles.path))

    def evaluate(trainer) -> dict:
        scorer = RewardScorer(trainer.model, tokenizer, batch_size=8, max_length=train_cfg["max_length"],
                              weights=weights)
        metrics = held_out_accuracy(scorer, list(pairs["test"]))
        if multihead:
            from rewards.reward_models.multihead import principle_accuracy

            metrics["principle_accuracy"] = principle_accuracy(scorer, scorable(pairs["test"]), rubric.ids)
        return metrics

    def save(trainer, metrics: dict):
        if is_main_process():
            atomic_write_json(ctx.dir / "metrics.json", metrics)
        return export(ctx, trainer, tokenizer, train_cfg, weights, metrics, provenance)

    metrics = train_and_save(trainer, tokenizer, ctx.dir, cfg.resume, provenance, save_model=save,
                             metrics=evaluate).metrics
    log.info(f"reward: held-out accuracy {metrics['rm_accuracy']} "
             f"(length-only baseline {metrics['rm_length_baseline']}) on {metrics['n_eval_pairs']} pairs")
    return {"counts": {"n_train_pairs": len(pairs["train"]), "n_eval_pairs": metrics["n_eval_pairs"],
                       "train_data": data_report.as_dict()},
            "metrics": {**metrics, "base_model": cfg.model.name_or_path}}


def export(ctx: StageContext, trainer, tokenizer, train_cfg: dict, weights: dict[str, float], metrics: dict,
           provenance: dict) -> Path:
    """Write outputs/<run>/reward/model from rank 0 alone; under ZeRO-3 every rank first helps gather the weights."""
    cfg = ctx.cfg
    model_dir = ctx.dir / "model"
    state_dict = consolidated_state_dict(trainer)
    if not is_main_process():
        return model_dir
    code = provenance["code"]
    export_reward_model(trainer.model, tokenizer, model_dir, base_model=cfg.model.name_or_path,
                        weights=weights, max_length=train_cfg["max_length"],
                        merge_lora=bool(train_cfg["merge_lora"]),
                        provenance={"run": cfg.run, "method": train_cfg["method"], "peft": train_cfg["peft"],
                                    "rubric_sha256": provenance["rubric_sha256"],
                                    "pairs_sha256": provenance["inputs"]["pairs"],
                                    "code_commit": code.get("commit"), "code_dirty": code.get("dirty")},
                        metrics={k: v for k, v in metrics.items() if not isinstance(v, dict)}, state_dict=state_dict)
    return model_dir


def run(cfg: DictConfig) -> dict:
    return run_stage(cfg, "reward", work)


main = entry("reward", run)

if __name__ == "__main__":
    raise SystemExit(main())
