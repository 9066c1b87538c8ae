"""``counsel-align pull`` and ``counsel-align push``: move an exported checkpoint with its model card."""

from __future__ import annotations

import argparse

from recipes._entry import handle_errors
from rewards.log import get_logger
from rewards.reporting.hub import pull_checkpoint, push_checkpoint

log = get_logger(__name__)


def pull_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="counsel-align pull",
                                     description="Copy a checkpoint (Hub id owner/name, or a folder) with its card.")
    parser.add_argument("reference", help="Hub id (owner/name) or checkpoint folder")
    parser.add_argument("--to", default=None, help="destination folder (default: checkpoints/<name>)")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    args = parser.parse_args(argv)

    def action() -> None:
        target = pull_checkpoint(args.reference, args.to, args.revision)
        log.info(f"pulled {args.reference} -> {target}")
        log.info(f"evaluate it with: counsel-align evaluate-checkpoint {target}")

    return handle_errors("pull", action)


def push_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="counsel-align push",
                                     description="Copy a checkpoint with its card to a folder or a Hub repo.")
    parser.add_argument("checkpoint", help="exported checkpoint folder, e.g. outputs/<run>/evaluate/checkpoint")
    parser.add_argument("destination", help="Hub id (owner/name; needs HF_TOKEN) or a new local folder")
    parser.add_argument("--public", action="store_true", help="create the Hub repo as public (default private)")
    parser.add_argument("--force", action="store_true",
                        help="push a checkpoint whose release gate said do not release; the pushed card records it")
    args = parser.parse_args(argv)

    def action() -> None:
        where = push_checkpoint(args.checkpoint, args.destination, private=not args.public, force=args.force)
        forced = " (forced: the release gate said do not release)" if args.force else ""
        log.info(f"pushed {args.checkpoint} -> {where}{forced}")

    return handle_errors("push", action)
