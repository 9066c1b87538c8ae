"""Judges score counselor replies on each principle of a rubric, or compare two replies.

Backends are imported on first use (``rewards.judges.LocalLogprobJudge`` pulls in torch), so importing the shared
types from ``rewards.judges.base`` stays cheap.
"""

from importlib import import_module

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


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rewards.judges' has no attribute {name!r}")
