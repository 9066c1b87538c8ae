"""The ``counsel-align`` command: ``counsel-align <command> [hydra overrides | options]``."""

from __future__ import annotations

import importlib
import sys

# Pipeline stages, in order. Each module under recipes/ exposes ``main(argv) -> int``.
STAGES = ("generate", "calibrate", "judge", "pairs", "reward", "dpo", "evaluate", "report", "pipeline")

# Further commands: name -> (module, one-line help). Each module exposes ``main(argv) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "preview": ("recipes.preview", "rendered pairs, loss mask, token counts and truncation at max_length"),
    "plan": ("recipes.plan", "dry run: launch plan, per-GPU memory estimate, token budget (no weights)"),
    "agreement": ("recipes.agreement", "judge accuracy on human preference pairs (CounselChat) vs length"),
    "principles": ("recipes.principles_cli", "principles validate|show|diff: check a rubric, print prompts, diff"),
    "simulate-clients": ("recipes.simulate_clients", "client prompts from persona x topic x stage x risk, deduped"),
    "score": ("recipes.score", "per-principle scores of one (prompt, response) from a trained reward model"),
    "reward-eval": ("recipes.reward_eval", "reward-model accuracy by principle, topic, length; baselines; CounselChat"),
    "grpo": ("recipes.grpo", "online RLHF with TRL GRPOTrainer against the trained reward model"),
    "rloo": ("recipes.rloo", "online RLHF with TRL RLOOTrainer against the trained reward model"),
    "runs": ("recipes.runs", "table of runs under outputs/ with key metrics and checkpoints"),
    "pull": ("recipes.pull", "pull <hub-id|path> [--to DIR]: copy a checkpoint with its model card"),
    "push": ("recipes.push", "push <checkpoint> <hub-id|path>: publish a checkpoint with its model card"),
    "evaluate-checkpoint": ("recipes.evaluate_checkpoint", "evaluate-checkpoint <path|hub-id>: evaluate a checkpoint"),
    "feedback": ("recipes.feedback", "judge a trainee's reply: per-principle scores, reasons, one suggestion"),
}

USAGE = """usage: counsel-align <command> [key=value ...] [--cfg]

stages: {stages}
  pipeline runs every stage in order, skipping finished ones.
{commands}
example: counsel-align pipeline run=demo data.max_train_prompts=16"""


def usage() -> str:
    commands = "\n".join(f"  {name:<14} {help_text}" for name, (_, help_text) in sorted(COMMANDS.items()))
    return USAGE.format(stages=", ".join(STAGES), commands=f"other commands:\n{commands}" if commands else "")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name in STAGES:
        module_name = f"recipes.{name}"
    elif name in COMMANDS:
        module_name = COMMANDS[name][0]
    else:
        known = ", ".join([*STAGES, *sorted(COMMANDS)])
        print(f"counsel-align: error: unknown command {name!r}; choose one of {known}", file=sys.stderr)
        return 2
    return importlib.import_module(module_name).main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
