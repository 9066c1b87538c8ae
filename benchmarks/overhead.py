"""Overhead of our ``dpo`` recipe's trainer over a minimal plain-TRL ``DPOTrainer`` script.

Same tiny random model, data and settings; both run ``trainer.train()`` and a callback times every optimizer step.
Runs alternate (ours, plain, ours, plain) so machine load hits both alike; the first steps of each run are warm-up
and are dropped. ``overhead_ratio`` = median steady-state step of ours / of plain TRL (goal <= 1.03).
``overhead_ratio_same_rule`` repeats the comparison with TRL's own LM-head scoring rule restored, i.e. the cost of
our wrapping alone (callbacks, guards, config plumbing), without the speed-up of ``tune_for_device``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from benchmarks.common import preference_batch, write_result
from benchmarks.dpo_step import ORIGINAL_COMPACT_RULE, trl_utils

WARMUP_STEPS = 3


class StepTimes(TrainerCallback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._started)


def tiny_model_dir(folder: Path):
    """A small random Llama (4 layers, hidden 256) with the test tokenizer, saved like a hub checkpoint."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer


def settings(steps: int, batch: int) -> dict:
    return {"peft": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
            "beta": 0.1, "max_length": 512, "learning_rate": 1e-5, "per_device_train_batch_size": batch,
            "max_steps": steps, "logging_steps": 1, "save_steps": 10_000, "bf16": False,
            "gradient_checkpointing": False, "use_cpu": True}


def our_run(model_dir: Path, tokenizer, dataset, train_cfg: dict, output: Path) -> list[float]:
    """What ``recipes/dpo.py`` builds: our trainer, our guards, then ``train()``."""
    from rewards.training.checkpointing import install_guards
    from rewards.training.policy import build_dpo_trainer

    timer = StepTimes()
    trainer = build_dpo_trainer(str(model_dir), tokenizer, dataset, train_cfg, output, [], seed=0,
                                callbacks=[timer])
    install_guards(trainer)
    trainer.train()
    return timer.seconds[WARMUP_STEPS:]


def plain_run(model_dir: Path, tokenizer, dataset, train_cfg: dict, output: Path) -> list[float]:
    """A minimal plain-TRL script with the same settings."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    timer = StepTimes()
    args = DPOConfig(output_dir=str(output), report_to=[], use_cpu=True, seed=0, beta=0.1, max_length=512,
                     learning_rate=1e-5, per_device_train_batch_size=train_cfg["per_device_train_batch_size"],
                     max_steps=train_cfg["max_steps"], logging_steps=1, save_steps=10_000, bf16=False,
                     gradient_checkpointing=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft,
                         callbacks=[timer])
    trainer.train()
    return timer.seconds[WARMUP_STEPS:]


def alternate(runs: dict, rounds: int) -> dict[str, float]:
    steps: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            steps[name] += run()
    return {name: statistics.median(values) for name, values in steps.items()}


def with_trl_rule(run):
    def wrapped():
        adapted, trl_utils._use_triton = trl_utils._use_triton, ORIGINAL_COMPACT_RULE
        try:
            return run()
        finally:
            trl_utils._use_triton = adapted
    return wrapped


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 steps per run, 2 rounds, no same-rule run")
    args = parser.parse_args(argv)
    steps, rounds, batch = (8, 2, 4) if args.quick else (24, 3, 4)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        tokenizer = tiny_model_dir(root / "model")
        dataset = preference_batch(tokenizer, pairs=steps * batch, tokens=64)
        train_cfg = settings(steps, batch)

        def ours():
            return our_run(root / "model", tokenizer, dataset, train_cfg, root / "ours")

        def plain():
            return with_trl_rule(lambda: plain_run(root / "model", tokenizer, dataset, train_cfg, root / "plain"))()

        seconds = alternate({"ours": ours, "plain_trl": plain}, rounds)
        same_rule = {} if args.quick else alternate({"ours": with_trl_rule(ours), "plain_trl": plain}, rounds)
    result = {
        "overhead_ratio": round(seconds["ours"] / seconds["plain_trl"], 3),
        "step_seconds": {name: round(value, 4) for name, value in seconds.items()},
        **({"overhead_ratio_same_rule": round(same_rule["ours"] / same_rule["plain_trl"], 3),
            "step_seconds_same_rule": {name: round(value, 4) for name, value in same_rule.items()}}
           if same_rule else {}),
        "steps_per_run": steps, "warmup_steps_dropped": WARMUP_STEPS, "rounds": rounds, "batch_pairs": batch,
    }
    write_result("overhead", result, quick=args.quick)
    if same_rule:
        print(f"overhead_ratio_same_rule={result['overhead_ratio_same_rule']}")
    print(f"overhead_ratio={result['overhead_ratio']}")
    return result


if __name__ == "__main__":
    main()
