"""Stage 4: train a reward model on the train pairs; report held-out pairwise accuracy."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, run_stage
from rewards.artifacts import atomic_write_json
from rewards.errors import UserError
from rewards.models import load_tokenizer
from rewards.reward_model import RewardScorer, length_baseline_accuracy, pairwise_accuracy, train_reward_model
from rewards.tracking import configure_wandb


def load_pairs(ctx: StageContext):
    from datasets import load_from_disk

    dataset = load_from_disk(str(ctx.input_dir("pairs") / "dataset"))
    if len(dataset["train"]) == 0:
        raise UserError("pairs: no training pairs; lower pairs.margin or generate more candidates")
    return dataset


def held_out_accuracy(scorer: RewardScorer, pairs) -> dict:
    rows = list(pairs)
    if not rows:
        return {"rm_accuracy": float("nan"), "rm_length_baseline": float("nan"), "n_eval_pairs": 0}
    prompts = [r["prompt"] for r in rows]
    chosen = scorer.score(prompts, [r["chosen"][0]["content"] for r in rows])
    rejected = scorer.score(prompts, [r["rejected"][0]["content"] for r in rows])
    return {"rm_accuracy": round(pairwise_accuracy(chosen, rejected), 4),
            "rm_length_baseline": round(length_baseline_accuracy(rows), 4),
            "n_eval_pairs": len(rows)}


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    train_cfg = OmegaConf.to_container(cfg.reward_train, resolve=True)
    pairs = load_pairs(ctx)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    report_to = configure_wandb(cfg.wandb.mode, cfg.wandb.project, ctx.run_dir / "wandb", f"{cfg.run}-reward")
    trainer = train_reward_model(cfg.model.name_or_path, tokenizer, pairs["train"], None, train_cfg,
                                 ctx.dir / "checkpoints", report_to, cfg.seed)
    trainer.train(resume_from_checkpoint=_last_checkpoint(ctx))
    trainer.save_model(str(ctx.dir / "model"))
    tokenizer.save_pretrained(str(ctx.dir / "model"))
    scorer = RewardScorer(trainer.model, tokenizer, batch_size=8, max_length=train_cfg["max_length"])
    metrics = held_out_accuracy(scorer, pairs["test"])
    metrics["train_loss"] = round(trainer.state.log_history[-1].get("train_loss", float("nan")), 4)
    atomic_write_json(ctx.dir / "metrics.json", metrics)
    print(f"[counsel-align] reward: held-out accuracy {metrics['rm_accuracy']} "
          f"(length-only baseline {metrics['rm_length_baseline']}) on {metrics['n_eval_pairs']} pairs", flush=True)
    return {"counts": {"n_train_pairs": len(pairs["train"]), "n_eval_pairs": metrics["n_eval_pairs"]},
            "metrics": {**metrics, "base_model": cfg.model.name_or_path}}


def _last_checkpoint(ctx: StageContext) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = ctx.dir / "checkpoints"
    return get_last_checkpoint(str(folder)) if folder.exists() else None


def run(cfg: DictConfig) -> dict:
    return run_stage(cfg, "reward", work, ["model", "reward_train", "seed"], inputs=["pairs"])


main = entry("reward", run)

if __name__ == "__main__":
    raise SystemExit(main())
