"""Stage: KTO on unpaired human signal (top-voted answers desirable, unvoted answers of the same train question
undesirable; TRL KTOTrainer, LoRA by default)."""

from __future__ import annotations

from collections import Counter

from omegaconf import DictConfig

from recipes._entry import StageContext, entry, run_stage
from recipes.sft import check_before_training, train_on_human_data, train_questions
from rewards.errors import UserError
from rewards.training.sft_kto import build_kto_trainer, kto_examples


def build_examples(cfg: DictConfig) -> list[dict]:
    data = cfg.kto.data
    examples = kto_examples(train_questions(cfg, "kto"), data.min_score, data.undesirable_max_score,
                            data.max_undesirable_per_question, data.max_examples, cfg.seed)
    labels = Counter(e["label"] for e in examples)
    if not labels[True] or not labels[False]:
        raise UserError(f"kto.data: {data.source} gave {labels[True]} desirable and {labels[False]} undesirable "
                        "answers; KTO needs both (check kto.data.min_score and kto.data.undesirable_max_score)")
    return examples


def work(ctx: StageContext) -> dict:
    examples = build_examples(ctx.cfg)
    metrics = train_on_human_data(ctx, "kto", examples, ["prompt", "completion", "label"], build_kto_trainer)
    labels = Counter(e["label"] for e in examples)
    return {"counts": {"n_desirable": labels[True], "n_undesirable": labels[False],
                       "n_questions": len({e["prompt_id"] for e in examples})}, "metrics": metrics}


def run(cfg: DictConfig) -> dict:
    check_before_training(cfg, "kto")
    return run_stage(cfg, "kto", work)


main = entry("kto", run)

if __name__ == "__main__":
    raise SystemExit(main())
