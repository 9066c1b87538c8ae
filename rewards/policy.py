"""Policy alignment with TRL's DPOTrainer (full, LoRA) on the preference pairs."""

from __future__ import annotations

from pathlib import Path

from rewards.models import resolve_model_path, torch_dtype
from rewards.training import build_lora_config, training_arguments

DPO_KEYS = ("beta", "loss_type", "max_length", "precompute_ref_log_probs", "label_smoothing",
            "padding_free", "pad_to_multiple_of")


def build_dpo_trainer(model_path: str, tokenizer, train_dataset, train_cfg: dict, output_dir: str | Path,
                      report_to: list[str], seed: int = 0, eval_dataset=None, callbacks=None, tune: bool = True):
    """A DPOTrainer; with LoRA the reference is the base model with the adapter disabled (no copy)."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_path(model_path), dtype=torch_dtype(train_cfg.get("dtype")), use_safetensors=True)
    extra = {key: train_cfg.get(key) for key in DPO_KEYS}
    if isinstance(extra.get("loss_type"), list | tuple):
        extra["loss_type"] = list(extra["loss_type"])
    args = training_arguments(DPOConfig, train_cfg, output_dir, report_to, seed, extra=extra)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=build_lora_config(train_cfg, task_type="CAUSAL_LM"),
        callbacks=callbacks,
    )
    if tune:
        tune_for_device(trainer)
    return trainer


def tune_for_device(trainer) -> None:
    """Adaptations of a built DPOTrainer that remove work it does not need here (see benchmarks/README.md)."""
