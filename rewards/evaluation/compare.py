"""Comparing a trained policy with its base: reward-model scores, judged win rate, principle means."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rewards.judges.base import ComparesMany, ReportsFailures

FAILED = "failed"


@dataclass(frozen=True)
class PairwiseOutcome:
    """Both presentation orders of one comparison; disagreement between them is a tie.

    A comparison the judge could not answer (in either order) carries ``error`` and is never a tie.
    """

    p_first_as_a: float | None   # P(candidate better) when the candidate is shown as reply A
    p_first_as_b: float | None   # P(candidate better) when the candidate is shown as reply B
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def verdict(self, tie_band: float = 0.0) -> str:
        """win, tie, loss, or ``failed``."""
        if self.failed:
            return FAILED
        high, low = 0.5 + tie_band, 0.5 - tie_band
        if self.p_first_as_a > high and self.p_first_as_b > high:
            return "win"
        if self.p_first_as_a < low and self.p_first_as_b < low:
            return "loss"
        return "tie"


def judged_comparison(judge, client: str, candidate: str, reference: str) -> PairwiseOutcome:
    """Ask the judge in both orders to cancel position bias."""
    return judged_comparisons(judge, [(client, candidate, reference)])[0]


def judged_comparisons(judge, comparisons: list[tuple[str, str, str]]) -> list[PairwiseOutcome]:
    """Each (client, candidate, reference) in both orders; all at once for judges with ``compare_many`` (remote)."""
    asks = [(c, cand, ref) for c, cand, ref in comparisons] + [(c, ref, cand) for c, cand, ref in comparisons]
    if isinstance(judge, ReportsFailures):  # remote judges can fail per request: keep the reason, do not guess 0.5
        answers = judge.compare_many_with_failures(asks)
    elif isinstance(judge, ComparesMany):
        answers = [(p, None) for p in judge.compare_many(asks)]
    else:
        answers = [(judge.compare(*ask), None) for ask in asks]
    n = len(comparisons)
    return [_outcome(answers[i], answers[n + i]) for i in range(n)]


def _outcome(as_a: tuple[float | None, str | None], as_b: tuple[float | None, str | None]) -> PairwiseOutcome:
    (p_a, error_a), (p_b, error_b) = as_a, as_b
    if p_a is None or p_b is None:
        return PairwiseOutcome(None, None, error=error_a or error_b or "no answer")
    return PairwiseOutcome(p_a, 1.0 - p_b)


def principle_means(scores: list[dict[str, float]]) -> dict[str, float]:
    if not scores:
        return {}
    return {pid: round(statistics.mean(s[pid] for s in scores), 4) for pid in scores[0]}
