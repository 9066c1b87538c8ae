"""Judges score counselor replies on each principle of a rubric, or compare two replies.

Backends are imported on first use (``rewards.judges.LocalLogprobJudge`` pulls in torch), so importing the shared
types from ``rewards.judges.base`` stays cheap.
"""

from rewards._lazy import lazy_getattr

_EXPORTS = {
    "Judge": "rewards.judges.base",
    "JudgeItem": "rewards.judges.base",
    "PrincipleScores": "rewards.judges.base",
    "ScoreResult": "rewards.judges.base",
    "JudgmentCache": "rewards.judges.cache",
    "LocalLogprobJudge": "rewards.judges.local",
    "OpenAICompatibleJudge": "rewards.judges.openai_compatible",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
