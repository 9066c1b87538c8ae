"""Policy alignment with TRL's DPOTrainer (full, LoRA) on the preference pairs."""

from __future__ import annotations

import warnings
from pathlib import Path

from rewards.models import resolve_model_path, torch_dtype
from rewards.training import build_lora_config, qlora_quantization_config, training_arguments

DPO_KEYS = ("beta", "loss_type", "max_length", "precompute_ref_log_probs", "label_smoothing",
            "padding_free", "pad_to_multiple_of")


def build_dpo_trainer(model_path: str, tokenizer, train_dataset, train_cfg: dict, output_dir: str | Path,
                      report_to: list[str], seed: int = 0, eval_dataset=None, callbacks=None, tune: bool = True):
    """A DPOTrainer; with LoRA the reference is the base model with the adapter disabled (no copy)."""
    from trl import DPOConfig, DPOTrainer

    model = load_policy_model(model_path, train_cfg)
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


def load_policy_model(model_path: str, train_cfg: dict):
    """The policy from safetensors; in 4-bit nf4 on the GPU for ``peft: qlora`` (prepared for k-bit training)."""
    import torch
    from transformers import AutoModelForCausalLM

    quant = qlora_quantization_config(train_cfg, "train")
    kwargs = {"dtype": torch_dtype(train_cfg.get("dtype")), "use_safetensors": True}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()})
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(model_path), **kwargs)
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(train_cfg.get("gradient_checkpointing")))
    return model


def tune_for_device(trainer) -> list[str]:
    """Remove work a built DPOTrainer does not need on this device; returns what was changed.

    TRL's fused LM head scores only the completion positions (the ones with a label) on Triton devices, but on
    every other device it projects *every* position -- prompt and padding included -- through the vocabulary,
    because on compiled backends (XLA/Neuron) a varying number of positions would recompile the kernel. Eager CPU
    does not recompile, so there we let it take the compact path too. The per-token log-probabilities are the same;
    only the wasted projections go away. Measured in ``benchmarks/dpo_step.py``; cause written in
    ``benchmarks/README.md``.
    """
    changes = []
    if _score_labelled_positions_only_on_eager_devices():
        changes.append("fused LM head scores completion positions only on CPU")
    return changes


def _score_labelled_positions_only_on_eager_devices() -> bool:
    """Make TRL's compact scoring rule (``trl.trainer.utils._use_triton``) also true for CPU and MPS devices."""
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_use_triton", None)
    if current is None:
        warnings.warn("trl.trainer.utils._use_triton not found; DPO on CPU scores every position (slower, same result)",
                      stacklevel=3)
        return False
    if getattr(current, "counsel_align_patched", False):
        return True

    def compact_on_eager_devices(device) -> bool:
        return device.type in ("cpu", "mps") or current(device)

    compact_on_eager_devices.counsel_align_patched = True
    compact_on_eager_devices.__wrapped_rule__ = current
    trl_utils._use_triton = compact_on_eager_devices
    return True
