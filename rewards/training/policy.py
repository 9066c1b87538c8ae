"""Policy alignment with TRL's DPOTrainer (full, LoRA) on the preference pairs."""

from __future__ import annotations

from pathlib import Path

from rewards.errors import UserError
from rewards.log import get_logger
from rewards.training.arguments import load_model_for_training, training_arguments, trl_trainer
from rewards.training.options import DPOOptions, options_dict, training_options
from rewards.training.trl_compat import score_labelled_positions_only_on_eager_devices

log = get_logger(__name__)

DPO_KEYS = ("beta", "loss_type", "loss_weights", "max_length", "precompute_ref_log_probs", "label_smoothing",
            "padding_free", "pad_to_multiple_of")
# TRL 1.16 DPOConfig.loss_type values; docs/policy_training.md says when to use which.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


def check_loss_type(loss_type: str | list[str] | None) -> None:
    """One-line error for a loss TRL's DPO does not have (TRL itself would fail deep inside the trainer)."""
    for name in [loss_type] if isinstance(loss_type, str) else list(loss_type or []):
        if name not in DPO_LOSS_TYPES:
            raise UserError(f"dpo.loss_type: {name!r} is not a TRL DPO loss; use one of {', '.join(DPO_LOSS_TYPES)}")


def build_dpo_trainer(model_path: str, tokenizer, train_dataset, train_cfg: dict, output_dir: str | Path,
                      report_to: list[str], seed: int = 0, eval_dataset=None, callbacks=None, tune: bool = True):
    """A DPOTrainer; with LoRA the reference is the base model with the adapter disabled (no copy).

    ``train_cfg``: the dpo options (``DPOOptions``); those not given take its defaults."""
    from trl import DPOConfig, DPOTrainer

    train_cfg = options_dict(DPOOptions, train_cfg, "dpo")
    check_loss_type(train_cfg["loss_type"])
    model = load_policy_model(model_path, train_cfg)
    extra = {key: train_cfg[key] for key in DPO_KEYS}
    for key in ("loss_type", "loss_weights"):
        if isinstance(extra[key], list | tuple):
            extra[key] = list(extra[key])
    args = training_arguments(DPOConfig, train_cfg, output_dir, report_to, seed, extra=extra)
    trainer = trl_trainer(DPOTrainer, model, args, tokenizer, train_dataset, train_cfg, ref_model=None,
                          eval_dataset=eval_dataset, callbacks=callbacks)
    if tune:
        tune_for_device(trainer)
    return trainer


# TRL's evaluation metrics of a DPO trainer -> the names our manifests use (held out: the pairs' test split).
HELD_OUT_METRICS = {"eval_rewards/margins": "eval_reward_margin", "eval_rewards/accuracies": "eval_reward_accuracy",
                    "eval_loss": "eval_loss"}


def held_out_metrics(trainer) -> dict:
    """TRL's own evaluation of the trained policy on the trainer's ``eval_dataset``: the mean DPO reward margin
    (chosen minus rejected implicit reward), how often it is positive, and the DPO loss. Called on every rank (the
    evaluation gathers across processes); None for each figure when there is no eval dataset."""
    if trainer.eval_dataset is None or len(trainer.eval_dataset) == 0:
        return {name: None for name in HELD_OUT_METRICS.values()}
    results = trainer.evaluate()  # timings (eval_runtime, ...) stay out of the metrics: they differ between runs
    log.info(f"dpo: held-out evaluation of {len(trainer.eval_dataset)} pairs in {results.get('eval_runtime', 0):.1f}s")
    return {name: float(results[key]) if key in results else None for key, name in HELD_OUT_METRICS.items()}


def load_policy_model(model_path: str, train_cfg: dict):
    """The policy from safetensors; in 4-bit nf4 on the GPU for ``peft: qlora`` (prepared for k-bit training)."""
    from transformers import AutoModelForCausalLM

    train_cfg = training_options(train_cfg)
    return load_model_for_training(AutoModelForCausalLM, model_path, train_cfg, train_cfg["method"])


def tune_for_device(trainer) -> list[str]:
    """Remove work a built DPOTrainer does not need on this device; returns what was changed.

    The patches live in ``rewards.training.trl_compat`` (checked against the installed TRL version). Measured in
    ``benchmarks/dpo_step.py``; cause written in ``benchmarks/README.md``.
    """
    changes = []
    if score_labelled_positions_only_on_eager_devices():
        changes.append("fused LM head scores completion positions only on CPU")
    return changes
