"""``counsel-align evaluate-checkpoint <path|hub-id> [key=value ...]``: evaluate an exported checkpoint.

Needs nothing but the checkpoint: its card names the base model; held-out prompts come from ``data``; a Hub id is
pulled into ``checkpoints/`` first. Results go to ``outputs/eval-<name>/evaluate/`` (report.html included).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from recipes import evaluate
from recipes._entry import handle_errors
from rewards.reporting.hub import default_destination, is_hub_id, pull_checkpoint

USAGE = "usage: counsel-align evaluate-checkpoint <checkpoint folder | hub-id> [key=value ...]"


def resolve(reference: str) -> Path:
    if not is_hub_id(reference):
        return Path(reference).expanduser().resolve()
    target = default_destination(reference)
    return target.resolve() if target.is_dir() else pull_checkpoint(reference, target).resolve()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or "=" in args[0]:
        print(USAGE)
        return 0 if args and args[0] in ("-h", "--help") else 2
    reference, overrides = args[0], args[1:]
    checkpoint = None

    def resolve_reference() -> None:
        nonlocal checkpoint
        checkpoint = resolve(reference)

    if (code := handle_errors("evaluate-checkpoint", resolve_reference)) != 0:
        return code
    name = re.sub(r"[^\w.-]+", "-", checkpoint.name if checkpoint.name != "checkpoint" else
                  f"{checkpoint.parent.parent.name}-checkpoint")
    defaults = [f"run=eval-{name}"] if not any(o.startswith("run=") for o in overrides) else []
    return evaluate.main([*defaults, f"evaluate.checkpoint={checkpoint}", *overrides])


if __name__ == "__main__":
    raise SystemExit(main())
