"""The ``counsel-align`` command: ``counsel-align <command> [hydra overrides | options]``."""

from __future__ import annotations

import importlib
import sys

from recipes._entry import pop_verbosity
from recipes.stages import STAGES as STAGE_SPECS
from recipes.stages import pipeline_stages

# Pipeline stages by command name, in order, then `pipeline` itself. Each module under recipes/ exposes
# ``main(argv) -> int``.
PIPELINE_COMMANDS = {spec.cli_name: spec.module for spec in pipeline_stages()}
STAGES = (*PIPELINE_COMMANDS, "pipeline")

# Further commands: name -> (module, one-line help). Each module exposes ``main(argv) -> int``.
# Stages outside the pipeline (grpo, rloo, agreement, ...) come from their registry entries.
CMD = "recipes.commands"  # non-stage commands live in recipes/commands/
COMMANDS: dict[str, tuple[str, str]] = {
    "preview": (f"{CMD}.preview", "rendered pairs, loss mask, token counts and truncation at max_length"),
    "plan": (f"{CMD}.plan", "dry run: launch plan, per-GPU memory estimate, token budget (no weights)"),
    "principles": (f"{CMD}.principles_cli", "principles validate|show|diff: check a rubric, print prompts, diff"),
    "score": (f"{CMD}.score", "per-principle scores of one (prompt, response) from a trained reward model"),
    "runs": (f"{CMD}.runs", "table of runs under outputs/ with key metrics and checkpoints"),
    "pull": (f"{CMD}.pull", "pull <hub-id|path> [--to DIR]: copy a checkpoint with its model card"),
    "push": (f"{CMD}.push", "push <checkpoint> <hub-id|path>: publish a checkpoint with its model card"),
    "evaluate-checkpoint": (f"{CMD}.evaluate_checkpoint", "evaluate-checkpoint <path|hub-id>: evaluate a checkpoint"),
    "feedback": (f"{CMD}.feedback", "judge a trainee's reply: per-principle scores, reasons, one suggestion"),
    **{spec.cli_name: (spec.module, spec.help) for spec in STAGE_SPECS.values() if not spec.in_pipeline},
}

USAGE = """usage: counsel-align <command> [key=value ...] [-m|--multirun] [--cfg job|hydra] [--info] [-q|-v]

stages: {stages}
  pipeline runs every stage in order, skipping finished ones (sft when dpo.init_from=sft or evaluate
  compares with it; reward-eval when reward_eval.counselchat is set).
{commands}
example: counsel-align pipeline run=demo data.max_train_prompts=16"""


def usage() -> str:
    commands = "\n".join(f"  {name:<14} {help_text}" for name, (_, help_text) in sorted(COMMANDS.items()))
    return USAGE.format(stages=", ".join(STAGES), commands=f"other commands:\n{commands}" if commands else "")


def main(argv: list[str] | None = None) -> int:
    args = pop_verbosity(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name in PIPELINE_COMMANDS:
        module_name = PIPELINE_COMMANDS[name]
    elif name == "pipeline":
        module_name = "recipes.pipeline"
    elif name in COMMANDS:
        module_name = COMMANDS[name][0]
    else:
        known = ", ".join([*STAGES, *sorted(COMMANDS)])
        print(f"counsel-align: error: unknown command {name!r}; choose one of {known}", file=sys.stderr)
        return 2
    return importlib.import_module(module_name).main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
