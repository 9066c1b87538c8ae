"""Shared pieces of every training stage: LoRA configs, TRL/transformers arguments, the model to train (QLoRA
aware) and the TRL trainer around it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rewards.distributed import deepspeed_requested, default_ddp_backend, warn_about_stale_build_locks
from rewards.errors import UserError
from rewards.training.options import training_options

PEFT_MODES = ("none", "lora", "qlora")
FULL_OR_LORA = {"reward": "reward=lora or reward=full", "dpo": "dpo=lora or dpo=full"}


def qlora_quantization_config(train_cfg, section: str = "dpo"):
    """A 4-bit nf4 ``BitsAndBytesConfig`` when ``<section>.peft`` is 'qlora' (needs CUDA), else None."""
    import torch

    peft = training_options(train_cfg)["peft"]
    if peft not in PEFT_MODES:
        raise UserError(f"{section}.peft: {peft!r} is not one of {list(PEFT_MODES)}")
    if peft != "qlora":
        return None
    if not torch.cuda.is_available():
        raise UserError(f"{section}.peft=qlora: QLoRA needs a CUDA GPU (bitsandbytes 4-bit nf4); on CPU use "
                        f"{FULL_OR_LORA.get(section, 'LoRA')}")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


TRAINING_KEYS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "per_device_eval_batch_size", "gradient_accumulation_steps", "gradient_checkpointing", "bf16",
    "logging_steps", "save_steps", "save_total_limit", "warmup_ratio", "lr_scheduler_type",
    "weight_decay", "max_grad_norm", "optim", "dataloader_num_workers", "deepspeed", "ddp_backend",
)


def build_lora_config(train_cfg: dict, task_type: str):
    """A peft ``LoraConfig`` when ``peft`` is 'lora' (the default) or 'qlora', else None (full fine-tuning)."""
    train_cfg = training_options(train_cfg)
    if train_cfg["peft"] in (None, "none"):
        return None
    from peft import LoraConfig

    lora = train_cfg["lora"]
    return LoraConfig(
        task_type=task_type,
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["target_modules"],
    )


def training_arguments(config_cls, train_cfg: dict, output_dir: str | Path, report_to: list[str], seed: int,
                       extra: dict[str, Any] | None = None):
    """Build a TRL config (``DPOConfig``, ``RewardConfig``…) from a plain dict of our train options (missing ones take
    ``TrainingOptions``' defaults; an option set to None is left to the TRL config's own default)."""
    train_cfg = training_options(train_cfg)
    kwargs = {key: train_cfg[key] for key in TRAINING_KEYS if train_cfg[key] is not None}
    kwargs.update({k: v for k, v in (extra or {}).items() if v is not None})
    if "ddp_backend" not in kwargs and (backend := default_ddp_backend()) is not None:
        kwargs["ddp_backend"] = backend  # DeepSpeed without CUDA
    if deepspeed_requested():  # DeepSpeed JIT-builds ops (shm comm on CPU, others on GPU) under torch's build locks
        warn_about_stale_build_locks()
    supported = {f.name for f in dataclasses.fields(config_cls)}
    unsupported = sorted(set(kwargs) - supported)
    if unsupported:
        raise UserError(f"train: option(s) {unsupported} are not supported by {config_cls.__name__}; remove them")
    return config_cls(
        output_dir=str(output_dir),
        report_to=report_to,
        seed=seed,
        save_strategy="steps",
        eval_strategy="no",
        use_cpu=train_cfg["use_cpu"],
        disable_tqdm=False,
        **kwargs,
    )


def load_model_for_training(auto_class, model_path: str, train_cfg, section: str, **kwargs):
    """``auto_class`` from safetensors; in 4-bit nf4 on this process's GPU for ``<section>.peft: qlora`` (prepared for
    k-bit training). ``kwargs`` go to ``from_pretrained`` (e.g. the number of labels of a score model)."""
    import torch

    from rewards.models import resolve_model_path, torch_dtype  # torch: imported when a model is loaded

    train_cfg = training_options(train_cfg)
    quant = qlora_quantization_config(train_cfg, section)
    kwargs = {"dtype": torch_dtype(train_cfg["dtype"]), "use_safetensors": True, **kwargs}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()})
    model = auto_class.from_pretrained(resolve_model_path(model_path), **kwargs)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(train_cfg["gradient_checkpointing"]))
    return model


def trl_trainer(trainer_cls, model, args, tokenizer, train_dataset, train_cfg: dict, task_type: str = "CAUSAL_LM",
                **trainer_kwargs):
    """A TRL trainer the way every stage builds one: the tokenizer as processing class, LoRA per ``train_cfg``'s
    ``peft``; ``trainer_kwargs`` are the trainer's own (``ref_model``, ``reward_funcs``, ``callbacks``...)."""
    return trainer_cls(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                       peft_config=build_lora_config(train_cfg, task_type=task_type), **trainer_kwargs)
