"""What every judge provides, and the prompt text all judges render from a rubric."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from rewards.rubric import Principle, Rubric

TEMPLATE_VERSION = 1
RANDOM_BASELINE = 0.5  # chance level of a two-way choice: probe detection, pairwise agreement
PrincipleScores = dict[str, float]

SYSTEM_INTRO = (
    "You are an experienced clinical supervisor. You rate a counselor's reply to a client's message "
    "on one principle at a time, from 1 (poor) to 5 (excellent)."
)


@dataclass(frozen=True)
class JudgeItem:
    client: str
    response: str


class Judge(Protocol):
    rubric: Rubric

    def score(self, items: list[JudgeItem]) -> list[PrincipleScores]:
        """Expected 1..5 score of each item on each principle of the rubric."""
        ...

    def compare(self, client: str, first: str, second: str) -> float:
        """Probability that ``first`` is the better reply, with ``first`` shown as reply A."""
        ...


@dataclass
class ScoreResult:
    """Outcome of one item: ``scores`` when judged, else ``error`` says why it failed."""

    scores: PrincipleScores | None = None
    error: str | None = None
    cached: bool = False
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})


# Optional judge features. A judge has one when it has the methods (remote judges have all three); callers check with
# isinstance, so a judge written for tests or a notebook needs only ``score`` and ``compare``.
@runtime_checkable
class ReportsFailures(Protocol):
    """A judge that can fail per item or per request (remote): it reports the reason instead of raising."""

    def score_with_failures(self, items: list[JudgeItem]) -> list[ScoreResult]: ...

    def compare_many_with_failures(self, asks: list[tuple[str, str, str]]) -> list[tuple[float | None, str | None]]:
        ...


@runtime_checkable
class ComparesMany(Protocol):
    """A judge that answers many (client, first, second) comparisons in one call."""

    def compare_many(self, asks: list[tuple[str, str, str]]) -> list[float]: ...


@runtime_checkable
class CountsUsage(Protocol):
    """A judge that counts requests and tokens (``stats``: requests, retries, prompt_tokens, ...)."""

    stats: dict[str, int]


def render_principle(principle: Principle) -> str:
    anchors = " ".join(f"Score {level}: {text}" for level, text in principle.anchors.items())
    return f"- {principle.name} [{principle.id}]: {principle.description} {anchors}"


def rubric_system_prompt(rubric: Rubric) -> str:
    lines = "\n".join(render_principle(p) for p in rubric.principles)
    return f"{SYSTEM_INTRO}\n\nPrinciples:\n{lines}"


def item_block(item: JudgeItem) -> str:
    return f"Client message:\n{item.client}\n\nCounselor reply:\n{item.response}\n\n"


def principle_question(principle: Principle) -> str:
    return f"Rate the counselor reply on '{principle.name}' only. Answer with one digit from 1 to 5."


def pairwise_prompt(client: str, first: str, second: str) -> str:
    return (
        f"Client message:\n{client}\n\nReply A:\n{first}\n\nReply B:\n{second}\n\n"
        "Considering all principles, which reply is better for this client? Answer with A or B."
    )


def score_messages(rubric: Rubric, item: JudgeItem, principle: Principle) -> list[dict]:
    return [
        {"role": "system", "content": rubric_system_prompt(rubric)},
        {"role": "user", "content": item_block(item) + principle_question(principle)},
    ]


def pairwise_messages(rubric: Rubric, client: str, first: str, second: str) -> list[dict]:
    return [
        {"role": "system", "content": rubric_system_prompt(rubric)},
        {"role": "user", "content": pairwise_prompt(client, first, second)},
    ]
