"""Judges score counselor replies on each principle of a rubric, or compare two replies."""

from rewards.judges.base import Judge, JudgeItem, PrincipleScores
from rewards.judges.local import LocalLogprobJudge

__all__ = ["Judge", "JudgeItem", "LocalLogprobJudge", "PrincipleScores"]
