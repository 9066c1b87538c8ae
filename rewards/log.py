"""One logger for the library and the CLI: ``[counsel-align] message`` lines, progress on rank 0 only.

Info lines (progress, summaries) go to stdout from rank 0 only, so a run under ``accelerate launch`` prints each
line once; warnings go to stderr from every rank, since a problem of one rank is worth seeing. The streams are looked
up when a line is written, so redirecting ``sys.stdout`` (pytest's capsys, notebooks) catches them.
"""

from __future__ import annotations

import logging
import os
import sys

ROOT = "counsel_align"
PREFIX = "[counsel-align]"


def process_rank() -> int:
    """Global rank of this process under ``accelerate launch``/torchrun (RANK, else LOCAL_RANK); 0 when alone."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


class _Formatter(logging.Formatter):
    # No level name is added: a line that is a warning says so in its text ("judge: warning: ..."), as it always has.
    def format(self, record: logging.LogRecord) -> str:
        return f"{PREFIX} {record.getMessage()}"


class RankZeroHandler(logging.Handler):
    """Info and below to stdout on rank 0; warnings and errors to stderr on every rank."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and process_rank() != 0:
            return
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never stop a run (closed stream at shutdown)
            self.handleError(record)


def _root() -> logging.Logger:
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, RankZeroHandler) for h in root.handlers):
        handler = RankZeroHandler()
        handler.setFormatter(_Formatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False  # our lines are printed once, by our handler, whatever the application configured
    return root


def get_logger(name: str) -> logging.Logger:
    """The logger of one module: ``log = get_logger(__name__)``."""
    _root()
    return logging.getLogger(f"{ROOT}.{name}")


def set_verbosity(quiet: bool = False, verbose: bool = False) -> None:
    """``--quiet``: warnings only; ``--verbose``: debug lines too; else info (progress and summaries)."""
    _root().setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
