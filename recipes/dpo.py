"""Stage 5: align the policy with DPO on the train pairs (LoRA by default)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, run_stage
from recipes.reward import load_pairs
from rewards.artifacts import atomic_write_json
from rewards.checkpointing import install_guards, resume_checkpoint, save_final_model
from rewards.distributed import is_main_process
from rewards.models import load_tokenizer
from rewards.policy import build_dpo_trainer
from rewards.tracking import configure_wandb
from rewards.training import qlora_quantization_config


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    train_cfg = OmegaConf.to_container(cfg.train, resolve=True)
    pairs = load_pairs(ctx)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    report_to = configure_wandb(cfg.wandb.mode, cfg.wandb.project, ctx.run_dir / "wandb", f"{cfg.run}-dpo")
    columns = ["prompt", "chosen", "rejected"]
    train = pairs["train"].select_columns(columns)
    checkpoint = resume_checkpoint(ctx.dir / "checkpoints", cfg.resume)
    trainer = build_dpo_trainer(cfg.model.name_or_path, tokenizer, train, train_cfg, ctx.dir / "checkpoints",
                                report_to, cfg.seed)
    guard = install_guards(trainer)
    trainer.train(resume_from_checkpoint=checkpoint)
    guard.raise_if_tripped(ctx.dir / "checkpoints")
    save_final_model(trainer, tokenizer, ctx.dir / "model")  # ZeRO-3: consolidated safetensors
    if is_main_process():
        atomic_write_json(ctx.dir / "log_history.json", trainer.state.log_history)  # training curves for the report
    history = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "train_loss": round(trainer.state.log_history[-1].get("train_loss", float("nan")), 4),
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": history[-1]["loss"] if history else None,
        "steps": trainer.state.global_step,
        "peft": train_cfg.get("peft"),
        "base_model": cfg.model.name_or_path,
    }
    return {"counts": {"n_train_pairs": len(train)}, "metrics": metrics}


def run(cfg: DictConfig) -> dict:
    if cfg.dry_run:
        from recipes.plan import run as print_plan

        return print_plan(cfg)
    qlora_quantization_config(OmegaConf.to_container(cfg.train, resolve=True), "train")  # fail before any work
    return run_stage(cfg, "dpo", work)


main = entry("dpo", run)

if __name__ == "__main__":
    raise SystemExit(main())
