"""Reward-model data: tokenize preference pairs and account for every pair that is dropped or truncated.

TRL's RewardTrainer silently filters pairs longer than ``max_length``; here every pair is checked first and the
counts (missing columns, empty responses, over-length pairs truncated or dropped) are returned for the manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rewards.errors import UserError

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
OVERFLOW_MODES = ("drop", "truncate")


@dataclass
class PairReport:
    """What happened to the pairs on the way to the trainer: kept, truncated, and dropped by reason."""

    total: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "truncated": self.truncated,
                "dropped": dict(sorted(self.dropped.items())), "n_dropped": sum(self.dropped.values())}

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        return f"{self.kept}/{self.total} pairs kept, {self.truncated} truncated, dropped: {reasons}"


def nonempty_replies(row: dict, report: PairReport) -> tuple[str, str] | None:
    """The chosen and rejected reply texts of a pair, or None (counted in ``report``) when either is empty."""
    chosen, rejected = response_text(row["chosen"]), response_text(row["rejected"])
    if not chosen.strip() or not rejected.strip():
        report.dropped["empty response"] += 1
        return None
    return chosen, rejected


def require_columns(column_names: Iterable[str], required: Sequence[str], source: str) -> None:
    """A one-line error naming the missing columns of a pair dataset."""
    missing = [c for c in required if c not in set(column_names)]
    if missing:
        raise UserError(f"{source}: pair dataset is missing column(s) {missing}; rebuild it with `counsel-align pairs`"
                        f" or add them (needs {list(required)})")


def principle_columns(principle_ids: Sequence[str]) -> list[str]:
    return [f"{side}_{pid}" for pid in principle_ids for side in ("chosen", "rejected")]


def response_text(messages: object) -> str:
    """The assistant text of a TRL completion: a message list (last message) or a plain string."""
    if isinstance(messages, list):
        return str(messages[-1].get("content", "")) if messages else ""
    return "" if messages is None else str(messages)


def prompt_messages(prompt: object) -> list[dict]:
    if isinstance(prompt, list):
        return list(prompt)
    return [{"role": "user", "content": str(prompt)}]


def encode_conversation(tokenizer, prompt: object, response: str) -> list[int]:
    conversation = prompt_messages(prompt) + [{"role": "assistant", "content": response}]
    return list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])


def fit_length(ids: list[int], max_length: int) -> list[int]:
    """Keep the last ``max_length`` tokens: the reward is read at the end, so the reply's end must stay."""
    return ids[-max_length:]


def tokenize_pairs(rows: Iterable[dict], tokenizer, max_length: int, overflow: str = "drop",
                   principle_ids: Sequence[str] = (), use_margin: bool = False,
                   source: str = "pairs") -> tuple[list[dict], PairReport]:
    """``chosen_ids``/``rejected_ids`` rows (plus ``margin`` and ``principle_diff`` when asked) and a report.

    overflow: "drop" removes pairs longer than ``max_length`` (TRL's behaviour, now counted); "truncate" keeps the
    last ``max_length`` tokens of each side.
    """
    if overflow not in OVERFLOW_MODES:
        raise UserError(f"reward.overflow: {overflow!r} is not one of {list(OVERFLOW_MODES)}")
    rows = list(rows)
    required = [*PAIR_COLUMNS, *(["margin"] if use_margin else []), *principle_columns(principle_ids)]
    if rows:
        require_columns(rows[0].keys(), required, source)
    report, encoded = PairReport(total=len(rows)), []
    for row in rows:
        if (replies := nonempty_replies(row, report)) is None:
            continue
        chosen, rejected = replies
        chosen_ids = encode_conversation(tokenizer, row["prompt"], chosen)
        rejected_ids = encode_conversation(tokenizer, row["prompt"], rejected)
        if max(len(chosen_ids), len(rejected_ids)) > max_length:
            if overflow == "drop":
                report.dropped[f"over max_length={max_length}"] += 1
                continue
            report.truncated += 1
            chosen_ids, rejected_ids = fit_length(chosen_ids, max_length), fit_length(rejected_ids, max_length)
        item = {"chosen_ids": chosen_ids, "rejected_ids": rejected_ids}
        if use_margin:
            item["margin"] = float(row["margin"])
        if principle_ids:
            item["principle_diff"] = [float(row[f"chosen_{p}"]) - float(row[f"rejected_{p}"]) for p in principle_ids]
        encoded.append(item)
    report.kept = len(encoded)
    return encoded, report
