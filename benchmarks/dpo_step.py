"""Cost of one LoRA-DPO step: our default trainer vs plain TRL vs the same arithmetic in plain torch.

All variants run on the same collated batch and the same model, interleaved round by round so that load on the
machine affects them alike; each figure is a ratio of medians measured in this one run.

- ``dpo_step_ratio``: our trainer (default config, ``tune_for_device``) / plain torch (policy forward+backward on
  chosen and rejected, one reference forward under ``no_grad`` with the adapter disabled). Goal <= 1.5.
- ``trl_same_settings_ratio``: plain TRL with our settings but without ``tune_for_device`` / plain torch.
- ``trl_defaults_ratio``: plain TRL with its own defaults (bf16 autocast, gradient checkpointing) / plain torch:
  the gap users saw before this project.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import trl.trainer.utils as trl_utils

from benchmarks.common import bench_model, preference_batch, write_result

ORIGINAL_COMPACT_RULE = trl_utils._use_triton  # TRL's own rule, captured before our trainer adapts it
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}
OUR_SETTINGS = {"peft": "lora", "lora": LORA, "beta": 0.1, "max_length": 1024, "learning_rate": 1e-5,
                "max_steps": 100, "logging_steps": 1000, "save_steps": 10_000, "bf16": False,
                "gradient_checkpointing": False, "use_cpu": True}


def with_trl_rule(step: Callable[[], None]) -> Callable[[], None]:
    """Run ``step`` with TRL's unmodified compact-scoring rule (for the plain-TRL baselines)."""

    def run() -> None:
        adapted, trl_utils._use_triton = trl_utils._use_triton, ORIGINAL_COMPACT_RULE
        try:
            step()
        finally:
            trl_utils._use_triton = adapted

    return run


def trainer_step(trainer, batch) -> Callable[[], None]:
    """One optimizer step as ``Trainer.train()`` would run it, including its gradient-checkpointing setup."""
    if trainer.args.gradient_checkpointing:  # train() turns it on (as below); training_step alone would not
        kwargs = dict(trainer.args.gradient_checkpointing_kwargs or {})
        trainer.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs or None)
    trainer.model.train()
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    trainer.current_gradient_accumulation_steps = 1

    def step() -> None:
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    return step


def our_trainer(model_dir, tokenizer, dataset):
    from rewards.training.policy import build_dpo_trainer

    settings = {**OUR_SETTINGS, "per_device_train_batch_size": len(dataset)}
    return build_dpo_trainer(str(model_dir), tokenizer, dataset, settings, "/tmp/bench-dpo-ours", [], seed=0)


def plain_trl_trainer(model_dir, tokenizer, dataset, trl_defaults: bool):
    """A minimal plain-TRL script: DPOTrainer + DPOConfig + LoraConfig, nothing of ours."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    settings = {} if trl_defaults else {"bf16": False, "gradient_checkpointing": False}
    args = DPOConfig(output_dir="/tmp/bench-dpo-plain", report_to=[], use_cpu=True, beta=0.1, learning_rate=1e-5,
                     per_device_train_batch_size=len(dataset), max_steps=100, save_steps=10_000, **settings)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    return DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft)


def plain_torch_step(model, batch, beta: float = 0.1) -> Callable[[], None]:
    """The DPO arithmetic with full logits: policy fwd+bwd on chosen+rejected, reference fwd without the adapter."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    labels, mask = input_ids[:, 1:], batch["completion_mask"][:, 1:].float()

    def sequence_logps(logits: torch.Tensor) -> torch.Tensor:
        logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return (logps * mask).sum(-1)

    def step() -> None:
        policy = sequence_logps(model(input_ids=input_ids, attention_mask=attention_mask).logits)
        with torch.no_grad(), model.disable_adapter():
            reference = sequence_logps(model(input_ids=input_ids, attention_mask=attention_mask).logits)
        chosen, rejected = (policy - reference).chunk(2)
        loss = -F.logsigmoid(beta * (chosen - rejected)).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def interleaved_medians(steps: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    for step in steps.values():  # warm-up: allocator, first-call dispatch
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="2 pairs of ~128 tokens, 2 rounds, ours vs plain torch only (no TRL baselines)")
    parser.add_argument("--no-trl-defaults", action="store_true", help="skip the slow bf16+checkpointing baseline")
    parser.add_argument("--pairs", type=int, help="override the number of preference pairs in the batch")
    parser.add_argument("--tokens", type=int, help="override the approximate completion length")
    args = parser.parse_args(argv)
    pairs, tokens, rounds = (2, 128, 2) if args.quick else (4, 256, 4)
    pairs, tokens = args.pairs or pairs, args.tokens or tokens
    model_dir, tokenizer, model_name = bench_model()
    dataset = preference_batch(tokenizer, pairs=pairs, tokens=tokens)
    ours = our_trainer(model_dir, tokenizer, dataset)
    batch = next(iter(ours.get_train_dataloader()))
    same = plain_trl_trainer(model_dir, tokenizer, dataset, trl_defaults=False)
    steps = {"torch": plain_torch_step(same.model, batch), "ours": trainer_step(ours, batch)}
    if not args.quick:
        steps["trl_same_settings"] = with_trl_rule(trainer_step(same, batch))
    if not (args.quick or args.no_trl_defaults):
        defaults = plain_trl_trainer(model_dir, tokenizer, dataset, trl_defaults=True)
        steps["trl_defaults"] = with_trl_rule(trainer_step(defaults, batch))
    seconds = interleaved_medians(steps, rounds)
    result = {
        "dpo_step_ratio": round(seconds["ours"] / seconds["torch"], 3),
        **({"trl_same_settings_ratio": round(seconds["trl_same_settings"] / seconds["torch"], 3)}
           if "trl_same_settings" in seconds else {}),
        **({"trl_defaults_ratio": round(seconds["trl_defaults"] / seconds["torch"], 3)} if "trl_defaults" in seconds
           else {}),
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
        "model": model_name, "batch_shape": list(batch["input_ids"].shape),
        "completion_tokens": int(batch["completion_mask"].sum()), "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
    }
    write_result("dpo_step", result, quick=args.quick)
    for key in ("trl_defaults_ratio", "trl_same_settings_ratio", "dpo_step_ratio"):
        if key in result:
            print(f"{key}={result[key]}")
    return result


if __name__ == "__main__":
    main()
