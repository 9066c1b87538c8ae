"""Stage 5: align the policy with DPO on the train pairs (LoRA by default)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from recipes.reward import load_pairs
from rewards.artifacts import read_manifest
from rewards.models import load_tokenizer
from rewards.policy import build_dpo_trainer
from rewards.tracking import configure_wandb
from rewards.training import qlora_quantization_config
from rewards.training_loop import stage_provenance, train_and_save


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    train_cfg = OmegaConf.to_container(cfg.train, resolve=True)
    pairs = load_pairs(ctx)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    report_to = configure_wandb(cfg.wandb.mode, cfg.wandb.project, ctx.run_dir / "wandb", f"{cfg.run}-dpo")
    columns = ["prompt", "chosen", "rejected"]
    train = pairs["train"].select_columns(columns)
    trainer = build_dpo_trainer(cfg.model.name_or_path, tokenizer, train, train_cfg, ctx.dir / "checkpoints",
                                report_to, cfg.seed)
    provenance = stage_provenance(stage="dpo", run=cfg.run, base_model=cfg.model.name_or_path,
                                  config={**train_cfg, "seed": cfg.seed},
                                  inputs={"pairs": read_manifest(ctx.input_dir("pairs")) or {}},
                                  rubric_path=project_path(cfg.principles.path))
    outcome = train_and_save(trainer, tokenizer, ctx.dir, cfg.resume, provenance)  # ZeRO-3: consolidated safetensors
    metrics = {**outcome.metrics, "peft": train_cfg.get("peft"), "base_model": cfg.model.name_or_path}
    return {"counts": {"n_train_pairs": len(train)}, "metrics": metrics}


def run(cfg: DictConfig) -> dict:
    if cfg.dry_run:
        from recipes.plan import run as print_plan

        return print_plan(cfg)
    qlora_quantization_config(OmegaConf.to_container(cfg.train, resolve=True), "train")  # fail before any work
    return run_stage(cfg, "dpo", work, ["model", "train", "seed"], inputs=["pairs"])


main = entry("dpo", run)

if __name__ == "__main__":
    raise SystemExit(main())
