"""Peak memory of one LoRA-DPO run vs one LoRA-SFT run on the same sequences (tiny model, CPU).

Each variant runs in a fresh process that first trains one tiny batch (so every library is loaded); the figure
is the process's peak resident memory (``ru_maxrss``) minus its resident memory before the measured run, so
weights, a reference copy if any, activations, gradients and optimizer state all count. SFT trains on the chosen
and the rejected sequences as separate rows, so both see the same tokens. Prints ``memory_ratio`` = DPO / SFT
last (goal <= 1.15).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import preference_batch, write_result

STEPS = 3


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def build(method: str, model_dir: Path, tokenizer, dataset):
    return dpo_trainer(model_dir, tokenizer, dataset) if method == "dpo" else sft_trainer(model_dir, tokenizer, dataset)


def child(method: str, model_dir: Path, pairs: int, tokens: int) -> None:
    """Warm up with a one-pair, few-token run (loads every library a step touches), then measure the real run."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    build(method, model_dir, tokenizer, preference_batch(tokenizer, pairs=1, tokens=8)).train()
    dataset = preference_batch(tokenizer, pairs=pairs, tokens=tokens)
    before = current_rss_mb()
    build(method, model_dir, tokenizer, dataset).train()
    print(json.dumps({"method": method, "before_mb": before, "peak_mb": peak_rss_mb()}))


def common_args(rows: int) -> dict:
    return {"report_to": [], "use_cpu": True, "bf16": False, "gradient_checkpointing": False, "max_length": 1024,
            "per_device_train_batch_size": rows, "max_steps": STEPS, "save_strategy": "no", "learning_rate": 1e-5}


def lora():
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, target_modules="all-linear")


def dpo_trainer(model_dir: Path, tokenizer, dataset):
    from rewards.training.policy import build_dpo_trainer

    settings = {"peft": "lora", "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"}, "beta": 0.1,
                **{k: v for k, v in common_args(len(dataset)).items() if k not in ("report_to", "save_strategy")},
                "save_steps": 10_000}
    return build_dpo_trainer(str(model_dir), tokenizer, dataset, settings, "/tmp/bench-mem-dpo", [], seed=0)


def sft_trainer(model_dir: Path, tokenizer, dataset):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": row["prompt"], "completion": row[side]} for row in dataset for side in ("chosen", "rejected")]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = SFTConfig(output_dir="/tmp/bench-mem-sft", **common_args(len(rows)))
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                      peft_config=lora())


def measure_both(model_dir: Path, pairs: int, tokens: int) -> dict[str, dict]:
    """Both children at once, one core each: each reports its own process's peak, so side by side changes nothing."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    children = {method: subprocess.Popen(
        [sys.executable, "-m", "benchmarks.dpo_memory", "--child", method, "--model", str(model_dir),
         "--pairs", str(pairs), "--tokens", str(tokens)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env)
        for method in ("sft", "dpo")}
    runs = {}
    for method, child_process in children.items():
        stdout, stderr = child_process.communicate()
        if child_process.returncode != 0:
            raise RuntimeError(f"dpo_memory {method} child failed:\n{stderr[-2000:]}")
        runs[method] = json.loads(stdout.strip().splitlines()[-1])
    return runs


def model_folder(folder: Path) -> Path:
    """A small random Llama with a real-sized vocabulary (activations and logits matter, weights are small)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from benchmarks.overhead import tiny_model_dir

    tiny_model_dir(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=["dpo", "sft"])
    parser.add_argument("--model")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, Path(args.model), args.pairs, args.tokens)
        return {}
    if args.quick:
        args.tokens = min(args.tokens, 64)
    with tempfile.TemporaryDirectory() as folder:
        model_dir = model_folder(Path(folder))
        runs = measure_both(model_dir, args.pairs, args.tokens)
    used = {method: run["peak_mb"] - run["before_mb"] for method, run in runs.items()}
    result = {"memory_ratio": round(used["dpo"] / used["sft"], 3),
              "used_mb": {method: round(value, 1) for method, value in used.items()},
              "pairs": args.pairs, "tokens": args.tokens, "steps": STEPS}
    write_result("dpo_memory", result, quick=args.quick)
    print(f"memory_ratio={result['memory_ratio']}")
    return result


if __name__ == "__main__":
    main()
