"""Stage: KTO on unpaired human signal (top-voted answers desirable, unvoted answers of the same train question
undesirable; TRL KTOTrainer, LoRA by default)."""

from __future__ import annotations

from collections import Counter

from omegaconf import DictConfig, OmegaConf

from recipes._entry import StageContext, entry, run_stage
from recipes.sft import human_data_path
from rewards.artifacts import atomic_write_jsonl
from rewards.distributed import is_main_process
from rewards.errors import UserError
from rewards.models import load_tokenizer
from rewards.training.arguments import qlora_quantization_config
from rewards.training.loop import stage_provenance, train_and_save
from rewards.training.sft_kto import (
    build_kto_trainer,
    kto_examples,
    load_train_questions,
    resolve_table,
    source_fingerprint,
)
from rewards.training.tracking import configure_wandb


def data_source(cfg: DictConfig) -> str:
    return human_data_path(str(cfg.kto.data.source))


def build_examples(cfg: DictConfig) -> list[dict]:
    data = cfg.kto.data
    questions = load_train_questions(data_source(cfg), OmegaConf.to_container(data.columns, resolve=True),
                                     data.split, "kto.data")
    examples = kto_examples(questions, data.min_score, data.undesirable_max_score,
                            data.max_undesirable_per_question, data.max_examples, cfg.seed)
    labels = Counter(e["label"] for e in examples)
    if not labels[True] or not labels[False]:
        raise UserError(f"kto.data: {data.source} gave {labels[True]} desirable and {labels[False]} undesirable "
                        "answers; KTO needs both (check kto.data.min_score and kto.data.undesirable_max_score)")
    return examples


def work(ctx: StageContext) -> dict:
    from datasets import Dataset

    cfg = ctx.cfg
    train_cfg = OmegaConf.to_container(cfg.kto, resolve=True)
    examples = build_examples(cfg)
    if is_main_process():
        atomic_write_jsonl(ctx.dir / "train.jsonl", examples)
    tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
    report_to = configure_wandb(cfg.wandb.mode, cfg.wandb.project, ctx.run_dir / "wandb", f"{cfg.run}-kto")
    train = Dataset.from_list(examples).select_columns(["prompt", "completion", "label"])
    trainer = build_kto_trainer(cfg.model.name_or_path, tokenizer, train, train_cfg, ctx.dir / "checkpoints",
                                report_to, cfg.seed)
    data_sha256 = source_fingerprint(data_source(cfg))
    provenance = stage_provenance(stage="kto", run=cfg.run, base_model=cfg.model.name_or_path,
                                  config={**train_cfg, "seed": cfg.seed},
                                  inputs={"kto_data": {"outputs_sha256": data_sha256}})  # no rubric is read
    outcome = train_and_save(trainer, tokenizer, ctx.dir, cfg.resume, provenance)
    labels = Counter(e["label"] for e in examples)
    metrics = {**outcome.metrics, "peft": cfg.kto.peft, "base_model": cfg.model.name_or_path,
               "data_source": str(cfg.kto.data.source), "data_sha256": data_sha256}
    return {"counts": {"n_desirable": labels[True], "n_undesirable": labels[False],
                       "n_questions": len({e["prompt_id"] for e in examples})}, "metrics": metrics}


def run(cfg: DictConfig) -> dict:
    qlora_quantization_config(OmegaConf.to_container(cfg.kto, resolve=True), "kto")  # fail before any work
    resolve_table(data_source(cfg))  # a missing data file is refused before the stage folder is touched
    return run_stage(cfg, "kto", work)


main = entry("kto", run)

if __name__ == "__main__":
    raise SystemExit(main())
