"""The ``counsel-align`` command: ``counsel-align <stage> [hydra overrides]``."""

from __future__ import annotations

import importlib
import sys

STAGES = ("generate", "judge", "pairs", "reward", "dpo", "evaluate", "report", "pipeline")

USAGE = f"""usage: counsel-align <stage> [key=value ...] [--cfg]

stages: {', '.join(STAGES)}
  pipeline runs every stage in order, skipping finished ones.
example: counsel-align pipeline run=demo data.max_train_prompts=16"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    stage, rest = args[0], args[1:]
    if stage not in STAGES:
        print(f"counsel-align: error: unknown stage {stage!r}; choose one of {', '.join(STAGES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"recipes.{stage}")
    return module.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
