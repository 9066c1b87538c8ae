"""Stage: supervised fine-tuning on human counselor replies (best-voted answer per train question; LoRA by default),
the warm start that DPO takes with ``dpo.init_from=sft``. ``train_on_human_data`` here also runs the kto stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, project_path, run_stage
from rewards.artifacts import atomic_write_jsonl
from rewards.distributed import is_main_process
from rewards.errors import UserError
from rewards.models import load_tokenizer
from rewards.training.arguments import qlora_quantization_config
from rewards.training.checkpointing import save_final_model
from rewards.training.loop import stage_provenance, train_and_save
from rewards.training.sft_kto import (
    MERGED_DIR,
    build_sft_trainer,
    load_train_questions,
    merge_adapter,
    resolve_table,
    sft_examples,
    source_fingerprint,
)
from rewards.training.tracking import configure_wandb


def human_data_path(source: str) -> str:
    """A human data path from a config: from the working directory, else the project root; else a hub id as given."""
    return str(project_path(source)) if project_path(source).exists() else source


def data_source(cfg: DictConfig, stage: str) -> str:
    """The human data file (or hub id) of a stage that trains on human replies (``sft``, ``kto``)."""
    return human_data_path(str(cfg[stage].data.source))


def train_questions(cfg: DictConfig, stage: str) -> list[dict]:
    """The train questions of ``<stage>.data`` with their scored answers."""
    data = cfg[stage].data
    return load_train_questions(data_source(cfg, stage), OmegaConf.to_container(data.columns, resolve=True),
                                data.split, f"{stage}.data")


def check_before_training(cfg: DictConfig, stage: str) -> None:
    """Refuse QLoRA without CUDA and a missing data file before the stage folder is touched."""
    qlora_quantization_config(OmegaConf.to_container(cfg[stage], resolve=True), stage)
    resolve_table(data_source(cfg, stage))


def train_on_human_data(ctx: StageContext, stage: str, examples: list[dict], columns: list[str],
                        build_trainer: Callable, save_model: Callable[[Any, Any], Path] | None = None) -> dict:
    """Train ``build_trainer``'s TRL trainer on ``examples`` (written to train.jsonl) and save it; the stage's metrics.

    One procedure for every stage on human replies (sft, kto): tokenizer, W&B, provenance naming the data file's hash
    (no rubric is read), ``train_and_save``. ``save_model(trainer, tokenizer)`` replaces the default final save.
    """
    from datasets import Dataset

    cfg = ctx.cfg
    train_cfg = OmegaConf.to_container(cfg[stage], resolve=True)
    if is_main_process():
        atomic_write_jsonl(ctx.dir / "train.jsonl", examples)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    report_to = configure_wandb(cfg.wandb.mode, cfg.wandb.project, ctx.run_dir / "wandb", f"{cfg.run}-{stage}")
    train = Dataset.from_list(examples).select_columns(columns)
    trainer = build_trainer(cfg.model.name_or_path, tokenizer, train, train_cfg, ctx.dir / "checkpoints",
                            report_to, cfg.seed)
    data_sha256 = source_fingerprint(data_source(cfg, stage))
    provenance = stage_provenance(stage=stage, run=cfg.run, base_model=cfg.model.name_or_path,
                                  config={**train_cfg, "seed": cfg.seed},
                                  inputs={f"{stage}_data": {"outputs_sha256": data_sha256}})
    export = True if save_model is None else lambda trainer, metrics: save_model(trainer, tokenizer)
    outcome = train_and_save(trainer, tokenizer, ctx.dir, cfg.resume, provenance, save_model=export)
    return {**outcome.metrics, "peft": cfg[stage].peft, "base_model": cfg.model.name_or_path,
            "data_source": str(cfg[stage].data.source), "data_sha256": data_sha256}


def build_examples(cfg: DictConfig) -> list[dict]:
    data = cfg.sft.data
    examples = sft_examples(train_questions(cfg, "sft"), data.min_score, data.max_examples, cfg.seed)
    if not examples:
        raise UserError(f"sft.data: no train question of {data.source} has an answer scoring at least "
                        f"{data.min_score}; lower sft.data.min_score")
    return examples


def work(ctx: StageContext) -> dict:
    cfg = ctx.cfg
    examples = build_examples(cfg)

    def export(trainer, tokenizer) -> Path:
        model_dir = save_final_model(trainer, tokenizer, ctx.dir / "model")
        if is_main_process() and cfg.sft.peft != "none":  # later stages start from full weights
            merge_adapter(model_dir, cfg.model.name_or_path, ctx.dir / MERGED_DIR, cfg.sft.dtype)
        return model_dir

    metrics = train_on_human_data(ctx, "sft", examples, ["prompt", "completion"], build_sft_trainer, export)
    return {"counts": {"n_train_examples": len(examples), "n_questions": len({e["prompt_id"] for e in examples})},
            "metrics": metrics}


def run(cfg: DictConfig) -> dict:
    check_before_training(cfg, "sft")
    return run_stage(cfg, "sft", work)


main = entry("sft", run)

if __name__ == "__main__":
    raise SystemExit(main())
