"""Judges score counselor replies on each principle of a rubric, or compare two replies."""

from rewards.judges.base import Judge, JudgeItem, PrincipleScores
from rewards.judges.cache import JudgmentCache
from rewards.judges.local import LocalLogprobJudge
from rewards.judges.openai_compatible import OpenAICompatibleJudge, ScoreResult

__all__ = [
    "Judge",
    "JudgeItem",
    "JudgmentCache",
    "LocalLogprobJudge",
    "OpenAICompatibleJudge",
    "PrincipleScores",
    "ScoreResult",
]
