"""Training Bradley–Terry reward models (one or many heads) with TRL's RewardTrainer: full, LoRA or QLoRA."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rewards.training.arguments import load_model_for_training, training_arguments, trl_trainer
from rewards.training.options import RewardOptions, options_dict


def load_score_model(model_path: str, train_cfg: Mapping, pad_token_id: int, labels: Sequence[str] = ("reward",),
                     trust_remote_code: bool = False):
    """A sequence-classification model with one output per label (4-bit quantized for QLoRA), from safetensors.

    ``train_cfg``: the reward options (``RewardOptions``); those not given take its defaults."""
    from transformers import AutoModelForSequenceClassification

    train_cfg = options_dict(RewardOptions, train_cfg, "reward")

    kwargs = {"num_labels": len(labels), "trust_remote_code": trust_remote_code}
    if len(labels) > 1:
        kwargs.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    model = load_model_for_training(AutoModelForSequenceClassification, model_path, train_cfg, "reward", **kwargs)
    model.config.pad_token_id = pad_token_id
    return model


def train_reward_model(model_path: str, tokenizer, train_dataset, eval_dataset, train_cfg: dict,
                       output_dir: str | Path, report_to: list[str], seed: int = 0):
    """A TRL RewardTrainer for a scalar reward model on preference pairs (raw or tokenized); full, LoRA or QLoRA.

    ``train_cfg``: the reward options (``RewardOptions``); those not given take its defaults.
    ``center_rewards_coefficient`` and a ``margin`` column in the data are TRL's options, passed through.
    """
    from transformers import set_seed
    from trl import RewardConfig, RewardTrainer

    train_cfg = options_dict(RewardOptions, train_cfg, "reward")

    set_seed(seed)  # the score head is initialised at random when the model is loaded
    model = load_score_model(model_path, train_cfg, tokenizer.pad_token_id)
    args = training_arguments(RewardConfig, train_cfg, output_dir, report_to, seed,
                              extra={"max_length": train_cfg["max_length"],
                                     "center_rewards_coefficient": train_cfg["center_rewards_coefficient"]})
    return trl_trainer(RewardTrainer, model, args, tokenizer, train_dataset, train_cfg, task_type="SEQ_CLS",
                       eval_dataset=eval_dataset)
