"""Judging many items with any judge: batches with per-item failures, token usage and its estimated cost."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rewards.judges.base import CountsUsage, Judge, JudgeItem, ReportsFailures, ScoreResult

USAGE_KEYS = ("requests", "retries", "prompt_tokens", "completion_tokens", "cache_hits", "cache_misses", "failures")


def score_batch(judge: Judge, items: list[JudgeItem]) -> list[ScoreResult]:
    """One result per item; judges that can fail per item (remote ones) report failures instead of raising."""
    if isinstance(judge, ReportsFailures):
        return judge.score_with_failures(items)
    return [ScoreResult(scores=scores) for scores in judge.score(items)]


def judge_usage(judge: Judge) -> dict[str, int]:
    """Request and token counters of a judge so far (zeros for a local judge, which has none)."""
    stats = judge.stats if isinstance(judge, CountsUsage) else {}
    return {key: int(stats.get(key, 0)) for key in USAGE_KEYS}


def failure_kind(reason: str) -> str:
    """The class of a failure reason, for counting: 'invalid answer', 'HTTP 500', 'request timed out', ..."""
    return reason.split(":", 1)[0].strip()


@dataclass
class Pricing:
    """Price of 1,000 prompt (input) and completion (output) tokens, in the currency of the provider's price list."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, usage: dict[str, int]) -> float:
        return round(usage.get("prompt_tokens", 0) / 1000 * self.input_per_1k
                     + usage.get("completion_tokens", 0) / 1000 * self.output_per_1k, 6)


@dataclass
class FailureTally:
    """Failed items of one run and how often each kind of failure occurred."""

    items: list[dict] = field(default_factory=list)

    def add(self, record: dict, reason: str) -> None:
        self.items.append({**record, "error": reason})

    def kinds(self) -> dict[str, int]:
        return dict(Counter(failure_kind(item["error"]) for item in self.items))


def add_usage(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {key: int(total.get(key, 0)) + int(more.get(key, 0)) for key in USAGE_KEYS}
