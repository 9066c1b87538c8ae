"""Stage 5: align the policy with DPO on the train pairs (LoRA by default)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from recipes.reward import load_pairs
from rewards.artifacts import read_manifest
from rewards.distributed import is_main_process
from rewards.errors import UserError
from rewards.models import load_tokenizer
from rewards.reporting.model_card import weights_kind
from rewards.training.arguments import qlora_quantization_config
from rewards.training.checkpointing import save_final_model
from rewards.training.loop import stage_provenance, train_and_save
from rewards.training.policy import build_dpo_trainer, held_out_metrics
from rewards.training.sft_kto import merge_adapter, sft_policy_path
from rewards.training.tracking import configure_wandb

INIT_FROM = ("base", "sft")


def init_from(cfg: DictConfig) -> str:
    """Where the policy (and its reference) starts: the base model, or the SFT stage's model."""
    value = cfg.dpo.init_from
    if value not in INIT_FROM:
        raise UserError(f"dpo.init_from: {value!r} is not one of {list(INIT_FROM)}")
    return value


def inputs(cfg: DictConfig) -> list[str]:
    return ["pairs", "sft"] if init_from(cfg) == "sft" else ["pairs"]


def start_model(ctx: StageContext) -> str:
    """The SFT model (merged) with ``dpo.init_from=sft``: with LoRA its disabled-adapter view is the reference."""
    if init_from(ctx.cfg) == "sft":
        return str(sft_policy_path(ctx.input_dir("sft")))
    return ctx.cfg.model.name_or_path


def merge_into_start_model(ctx: StageContext, model_path: str, train_cfg: dict) -> None:
    """An adapter over the SFT model becomes full weights: evaluate and export put adapters onto model.name_or_path."""
    model_dir = ctx.dir / "model"
    if weights_kind(model_dir) == "lora_adapter":
        merge_adapter(model_dir, model_path, model_dir, train_cfg["dtype"])


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    train_cfg = OmegaConf.to_container(cfg.dpo, resolve=True)
    pairs = load_pairs(ctx)
    model_path = start_model(ctx)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    report_to = configure_wandb(cfg.wandb.mode, cfg.wandb.project, ctx.run_dir / "wandb", f"{cfg.run}-dpo")
    columns = ["prompt", "chosen", "rejected"]
    train = pairs["train"].select_columns(columns)
    held_out = held_out_pairs(pairs, columns, cfg.dpo.max_eval_pairs)
    trainer = build_dpo_trainer(model_path, tokenizer, train, train_cfg, ctx.dir / "checkpoints",
                                report_to, cfg.seed, eval_dataset=held_out)
    provenance = stage_provenance(stage="dpo", run=cfg.run, base_model=cfg.model.name_or_path,
                                  config={**train_cfg, "seed": cfg.seed},
                                  inputs={stage: read_manifest(ctx.input_dir(stage)) or {} for stage in inputs(cfg)},
                                  rubric_path=project_path(cfg.principles.path))

    def export(trainer, metrics: dict) -> Path:
        model_dir = save_final_model(trainer, tokenizer, ctx.dir / "model")  # ZeRO-3: consolidated safetensors
        if init_from(cfg) == "sft" and is_main_process():
            merge_into_start_model(ctx, model_path, train_cfg)
        return model_dir

    # held_out_metrics: TRL's evaluate() on the test pairs after training; eval_reward_margin is the sweep objective.
    outcome = train_and_save(trainer, tokenizer, ctx.dir, cfg.resume, provenance, save_model=export,
                             metrics=held_out_metrics)
    margins = [row["rewards/margins"] for row in outcome.log_history if "rewards/margins" in row]
    metrics = {**outcome.metrics, "reward_margin": margins[-1] if margins else None,  # train, at the last logged step
               "peft": cfg.dpo.peft, "base_model": cfg.model.name_or_path,
               "init_from": init_from(cfg), "loss_type": train_cfg["loss_type"]}
    return {"counts": {"n_train_pairs": len(train), "n_eval_pairs": len(held_out) if held_out else 0},
            "metrics": metrics}


def held_out_pairs(pairs, columns: list[str], max_pairs: int | None):
    """The test pairs TRL's evaluate() scores after training (the first ``max_pairs``: its cost is two forward
    passes of policy and reference per pair); None when there are none."""
    if "test" not in pairs or not len(pairs["test"]) or max_pairs == 0:
        return None
    test = pairs["test"].select_columns(columns)
    return test.select(range(min(max_pairs, len(test)))) if max_pairs is not None else test


def run(cfg: DictConfig) -> dict:
    if cfg.dry_run:
        from recipes.commands.plan import run as print_plan

        return print_plan(cfg)
    qlora_quantization_config(OmegaConf.to_container(cfg.dpo, resolve=True), "dpo")  # fail before any work
    return run_stage(cfg, "dpo", work, inputs=inputs(cfg))


main = entry("dpo", run)

if __name__ == "__main__":
    raise SystemExit(main())
