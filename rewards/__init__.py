"""counsel-align library: rubric, judges, preference pairs, reward models, policy training, evaluation, reports.

Where things are: ``docs/architecture.md``. The public API below is imported on first use, so ``import rewards``
does not pull in torch (the CLI starts fast).
"""

from rewards._lazy import lazy_getattr

_EXPORTS = {
    "UserError": "rewards.errors",
    "Rubric": "rewards.rubric",
    "load_rubric": "rewards.rubric",
    "load_prompts": "rewards.prompts",
    "build_pairs": "rewards.pairs",
    "Judge": "rewards.judges.base",
    "JudgeItem": "rewards.judges.base",
    "LocalLogprobJudge": "rewards.judges.local",
    "OpenAICompatibleJudge": "rewards.judges.openai_compatible",
    "RewardScorer": "rewards.reward_models.scorer",
    "load_reward": "rewards.reward_models.io",
    "export_reward_model": "rewards.reward_models.io",
    "train_and_save": "rewards.training.loop",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
