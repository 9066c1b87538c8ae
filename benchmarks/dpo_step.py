"""Cost of one LoRA-DPO step: our recipe's trainer vs plain TRL vs the same arithmetic in plain torch.

Prints `overhead_ratio` (our trainer / plain-TRL trainer) and `dpo_step_ratio` (our trainer / plain torch),
both measured in one run on the same batch, model and machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.common import bench_model, preference_batch, write_result


def _steady_state(step, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _trainer(model_dir, tokenizer, dataset, tuned: bool):
    from rewards.policy import build_dpo_trainer, tune_for_device

    train_cfg = {"peft": "lora", "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"},
                 "beta": 0.1, "max_length": 512, "learning_rate": 1e-5, "per_device_train_batch_size": len(dataset),
                 "max_steps": 100, "logging_steps": 1000, "save_steps": 10_000, "bf16": False}
    trainer = build_dpo_trainer(str(model_dir), tokenizer, dataset, train_cfg, "/tmp/bench-dpo", [], seed=0,
                                tune=False)
    if tuned:
        tune_for_device(trainer)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    trainer.current_gradient_accumulation_steps = 1

    def step():
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    return trainer, batch, step


def _plain_torch_step(model, batch, beta: float = 0.1):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    input_ids, attention_mask, completion_mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    labels = input_ids[:, 1:]
    mask = completion_mask[:, 1:].float()

    def sequence_logps(logits):
        logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return (logps * mask).sum(-1)

    def step():
        policy = sequence_logps(model(input_ids=input_ids, attention_mask=attention_mask).logits)
        with torch.no_grad(), model.disable_adapter():
            reference = sequence_logps(model(input_ids=input_ids, attention_mask=attention_mask).logits)
        chosen, rejected = (policy - reference).chunk(2)
        loss = -F.logsigmoid(beta * (chosen - rejected)).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 6
    model_dir, tokenizer, model_name = bench_model()
    dataset = preference_batch(tokenizer, pairs=4, tokens=256)
    timings = {}
    plain_trainer, _, plain_step = _trainer(model_dir, tokenizer, dataset, tuned=False)
    timings["plain_trl"] = _steady_state(plain_step, 1, repeats)
    ours, batch, our_step = _trainer(model_dir, tokenizer, dataset, tuned=True)
    timings["ours"] = _steady_state(our_step, 1, repeats)
    timings["plain_torch"] = _steady_state(_plain_torch_step(plain_trainer.model, batch), 1, repeats)
    result = {
        "overhead_ratio": round(timings["ours"] / timings["plain_trl"], 3),
        "dpo_step_ratio": round(timings["ours"] / timings["plain_torch"], 3),
        "plain_trl_vs_torch": round(timings["plain_trl"] / timings["plain_torch"], 3),
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "model": model_name, "batch_shape": list(batch["input_ids"].shape),
    }
    write_result("dpo_step", result)
    print(f"plain_trl_vs_torch={result['plain_trl_vs_torch']}")
    print(f"overhead_ratio={result['overhead_ratio']}")
    print(f"dpo_step_ratio={result['dpo_step_ratio']}")
    return result


if __name__ == "__main__":
    main()
