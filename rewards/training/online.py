"""Online RLHF against a reward model: TRL GRPOTrainer / RLOOTrainer on client prompts (vLLM when available)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rewards.errors import UserError
from rewards.training.arguments import training_arguments, trl_trainer
from rewards.training.options import GRPOOptions, RLOOOptions, options_dict
from rewards.training.policy import load_policy_model

# Options of ours passed to GRPOConfig / RLOOConfig when set (GRPOOptions / RLOOOptions: each has only what its
# trainer supports).
ONLINE_KEYS = ("beta", "num_generations", "max_completion_length", "temperature", "top_p", "num_iterations",
               "epsilon", "loss_type", "scale_rewards", "normalize_advantages", "mask_truncated_completions",
               "generation_batch_size", "steps_per_generation", "log_completions", "vllm_mode",
               "vllm_gpu_memory_utilization")
METHODS = {"grpo": GRPOOptions, "rloo": RLOOOptions}


def want_vllm(setting: object) -> bool:
    """``use_vllm``: auto = vLLM when it is installed and a GPU is present; true insists on it; false never."""
    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if setting in ("auto", None):
        return available
    if setting and not available:
        raise UserError("use_vllm=true: vLLM generation needs the vllm package and a CUDA GPU; "
                        "set use_vllm=auto to fall back to transformers generate")
    return bool(setting)


def prompt_dataset(prompts: Sequence[dict]):
    """A TRL conversational prompt dataset (``prompt`` = one user message) from client prompt records."""
    from datasets import Dataset

    if not prompts:
        raise UserError("online RL: no training prompts; check data.max_train_prompts and the generate stage")
    return Dataset.from_list([{"prompt": [{"role": "user", "content": p["text"]}], "prompt_id": p["id"],
                               "topic": p.get("topic", "")} for p in prompts])


def build_online_trainer(method: str, model_path: str, tokenizer, train_dataset, reward_fn: Callable,
                         train_cfg: dict, output_dir: str | Path, report_to: list[str], seed: int = 0,
                         callbacks=None):
    """A GRPOTrainer or RLOOTrainer; with LoRA the KL reference (``beta`` > 0) is the base with the adapter off.

    ``train_cfg``: the grpo or rloo options (``GRPOOptions`` / ``RLOOOptions``); those not given take its defaults."""
    if method not in METHODS:
        raise UserError(f"method: {method!r} is not one of {list(METHODS)}")
    if method == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    train_cfg = options_dict(METHODS[method], train_cfg, method)
    extra = {key: train_cfg[key] for key in ONLINE_KEYS if key in train_cfg}
    extra["use_vllm"] = want_vllm(train_cfg["use_vllm"])
    if extra["use_vllm"] and not extra["vllm_mode"]:
        extra["vllm_mode"] = "colocate"  # one process shares the GPU between training and generation
    args = training_arguments(Config, train_cfg, output_dir, report_to, seed, extra=extra)
    model = load_policy_model(model_path, train_cfg)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return trl_trainer(Trainer, model, args, tokenizer, train_dataset, train_cfg, reward_funcs=reward_fn,
                       callbacks=callbacks)


def reward_trajectory(log_history: list[dict]) -> dict:
    """First and last logged mean reward (and the KL where logged) from a trainer's log history."""
    steps = [row for row in log_history if "reward" in row]
    if not steps:
        return {"n_logged_steps": 0}
    result = {"reward_first": round(steps[0]["reward"], 4), "reward_last": round(steps[-1]["reward"], 4),
              "n_logged_steps": len(steps)}
    if "kl" in steps[-1]:
        result["kl_last"] = round(steps[-1]["kl"], 6)
    return result
