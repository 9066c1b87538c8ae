"""Per-principle multi-head reward model: one scalar head per rubric principle on a shared backbone.

The model is a sequence-classification model with ``num_labels = len(principles)`` and ``config.id2label`` naming
the heads, so it saves, merges LoRA, exports and loads like a TRL reward model. The aggregate reward is the
weighted mean of the heads with the rubric weights; weights are applied at inference time
(``RewardScorer.with_weights``), so changing them needs no retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from rewards.reward_models.data import response_text
from rewards.reward_models.scorer import RewardScorer, pairwise_accuracy
from rewards.reward_models.training import load_score_model
from rewards.training.arguments import build_lora_config, training_arguments
from rewards.training.options import RewardOptions, options_dict


def principle_bt_loss(chosen: torch.Tensor, rejected: torch.Tensor, diff: torch.Tensor,
                      margin_scale: float = 0.0) -> torch.Tensor:
    """Bradley–Terry loss for each principle over the pairs where the judge scored that principle differently.

    ``chosen``/``rejected`` are (batch, principles) head outputs, ``diff`` the judge's score differences
    ``chosen_<id> - rejected_<id>``. For head k and a pair with diff != 0 the loss is
    ``-log sigmoid(sign(diff) * (r_k(chosen) - r_k(rejected)) - margin_scale * |diff|)``; pairs with diff == 0
    carry no preference on k and are masked out. Each principle's loss is averaged over its decided pairs, then
    the principles present in the batch are averaged, so a principle that rarely decides still gets its share.

    Why Bradley–Terry and not regression on the 1..5 judge scores: (1) the pairs are built from within-prompt
    comparisons, and a judge's absolute level drifts between prompts while its ordering of two replies to the same
    prompt is far more reliable; (2) it is the loss of the aggregate TRL reward model (``-logsigmoid(c - r - m)``),
    so each head's scale is comparable to a scalar RM and the weighted heads are a drop-in reward for GRPO/RLOO;
    (3) it is invariant to a per-prompt offset, so heads need not learn the judge's calibration. The optional
    margin (TRL's margin term, scaled by the score gap) keeps the gap size when it matters. TRL has no multi-head
    reward loss, hence this small function.
    """
    decided = diff != 0
    if not bool(decided.any()):
        return (chosen.sum() + rejected.sum()) * 0.0
    logits = torch.sign(diff) * (chosen - rejected) - margin_scale * diff.abs()
    losses = -F.logsigmoid(logits) * decided
    counts = decided.sum(dim=0)
    present = counts > 0
    per_principle = losses.sum(dim=0)[present] / counts[present]
    return per_principle.mean()


@dataclass
class MultiHeadCollator:
    """TRL's preference collator (chosen rows first, then rejected) plus the per-principle score differences."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        from trl.trainer.reward_trainer import DataCollatorForPreference

        batch = DataCollatorForPreference(pad_token_id=self.pad_token_id)(
            [{"chosen_ids": e["chosen_ids"], "rejected_ids": e["rejected_ids"]} for e in examples])
        batch["principle_diff"] = torch.tensor([e["principle_diff"] for e in examples], dtype=torch.float32)
        return batch


class MultiHeadRewardTrainer(Trainer):
    """A transformers Trainer whose loss is :func:`principle_bt_loss` (plus TRL-style reward centering)."""

    def __init__(self, *args, margin_scale: float = 0.0, center_rewards_coefficient: float | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.margin_scale = margin_scale
        self.center_rewards_coefficient = center_rewards_coefficient

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        diff = inputs.pop("principle_diff")
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        chosen, rejected = torch.chunk(outputs.logits.float(), chunks=2)
        loss = principle_bt_loss(chosen, rejected, diff, self.margin_scale)
        if self.center_rewards_coefficient:
            loss = loss + self.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
        return (loss, outputs) if return_outputs else loss


def train_multihead_reward_model(model_path: str, tokenizer, train_rows: list[dict], principle_ids: Sequence[str],
                                 train_cfg: dict, output_dir: str | Path, report_to: list[str], seed: int = 0,
                                 trust_remote_code: bool = False) -> MultiHeadRewardTrainer:
    """A trainer for one head per principle; ``train_rows`` come from ``tokenize_pairs(..., principle_ids=...)``.

    ``train_cfg``: the reward options (``RewardOptions``); those not given take its defaults."""
    from datasets import Dataset
    from transformers import set_seed

    train_cfg = options_dict(RewardOptions, train_cfg, "reward")

    set_seed(seed)
    model = load_score_model(model_path, train_cfg, tokenizer.pad_token_id, labels=principle_ids,
                             trust_remote_code=trust_remote_code)
    lora = build_lora_config(train_cfg, task_type="SEQ_CLS")
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    args = training_arguments(TrainingArguments, train_cfg, output_dir, report_to, seed)
    args.remove_unused_columns = False
    return MultiHeadRewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        data_collator=MultiHeadCollator(tokenizer.pad_token_id),
        margin_scale=float(train_cfg["margin_scale"]),
        center_rewards_coefficient=train_cfg["center_rewards_coefficient"],
    )


def principle_accuracy(scorer: RewardScorer, pairs: Sequence[dict], principle_ids: Sequence[str],
                       heads: bool = True) -> dict[str, dict]:
    """Per principle: accuracy on the pairs where the judge scored it differently (``n`` = how many).

    With ``heads`` each principle is ranked by its own head (multi-head models), else by the aggregate reward.
    """
    if not pairs:
        return {pid: {"accuracy": float("nan"), "n": 0} for pid in principle_ids}
    prompts = [p["prompt"] for p in pairs]
    chosen = scorer.head_scores(prompts, [response_text(p["chosen"]) for p in pairs])
    rejected = scorer.head_scores(prompts, [response_text(p["rejected"]) for p in pairs])
    result = {}
    for pid in principle_ids:
        column = scorer.heads.index(pid) if heads and pid in scorer.heads else None
        c = chosen[:, column] if column is not None else scorer.aggregate(chosen)
        r = rejected[:, column] if column is not None else scorer.aggregate(rejected)
        better, worse = [], []
        for i, pair in enumerate(pairs):
            gap = float(pair[f"chosen_{pid}"]) - float(pair[f"rejected_{pid}"])
            if gap:
                better.append(float(c[i] if gap > 0 else r[i]))
                worse.append(float(r[i] if gap > 0 else c[i]))
        result[pid] = {"accuracy": round(pairwise_accuracy(better, worse), 4), "n": len(better)}
    return result
