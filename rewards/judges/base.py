"""What every judge provides, and the prompt text all judges render from a rubric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rewards.rubric import Principle, Rubric

TEMPLATE_VERSION = 1
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
