"""Scoring with a Bradley–Terry reward model (one or many heads): a batched TRL reward function, pairwise accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tqdm.auto import tqdm

from rewards.errors import UserError
from rewards.reward_models.data import encode_conversation, fit_length, prompt_messages, response_text


def head_ids(config) -> list[str]:
    """Names of a score model's outputs: principle ids for a multi-head model, ['reward'] for a scalar one."""
    if getattr(config, "num_labels", 1) == 1:
        return ["reward"]
    return [config.id2label[i] for i in range(config.num_labels)]


class RewardScorer:
    """Scores (prompt, response) with a reward model; with several heads the reward is their weighted mean.

    Batched; the instance is a TRL reward function (``GRPOTrainer(reward_funcs=scorer)``).
    """

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int = 1024,
                 weights: Mapping[str, float] | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.heads = head_ids(model.config)
        self.weights = self._check_weights(weights or dict.fromkeys(self.heads, 1.0))

    def _check_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(self.heads))
        if unknown:
            raise UserError(f"principles.weights: unknown principle id(s) {unknown}; this reward model's heads: "
                            f"{self.heads}")
        merged = {h: float(weights.get(h, 1.0)) for h in self.heads}
        if sum(merged.values()) <= 0 or min(merged.values()) < 0:
            raise UserError(f"principles.weights: weights must be >= 0 with a positive sum (got {merged})")
        return merged

    def with_weights(self, overrides: Mapping[str, float]) -> RewardScorer:
        """The same model with some head weights replaced (no retraining; the model is shared)."""
        unknown = sorted(set(overrides) - set(self.heads))
        if unknown:
            raise UserError(f"principles.weights: unknown principle id(s) {unknown}; known ids: {self.heads}")
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.weights = self._check_weights({**self.weights, **{k: float(v) for k, v in overrides.items()}})
        return clone


    @torch.inference_mode()
    def head_scores(self, prompts: Sequence[object], responses: Sequence[str], progress: bool = False) -> torch.Tensor:
        """An (n, heads) float32 CPU tensor of raw head outputs."""
        encoded = [fit_length(encode_conversation(self.tokenizer, p, r), self.max_length)
                   for p, r in zip(prompts, responses, strict=True)]
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        chunks = []
        for start in tqdm(range(0, len(encoded), self.batch_size), desc="reward", disable=not progress):
            batch = encoded[start:start + self.batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=device)
            chunks.append(self.model(input_ids=input_ids, attention_mask=mask).logits.float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, len(self.heads))

    def aggregate(self, heads: torch.Tensor) -> torch.Tensor:
        weights = torch.tensor([self.weights[h] for h in self.heads], dtype=heads.dtype)
        return heads @ weights / weights.sum()

    def score(self, prompts: Sequence[object], responses: Sequence[str], progress: bool = False) -> list[float]:
        return self.aggregate(self.head_scores(prompts, responses, progress)).tolist()

    def explain(self, prompt: object, response: str) -> dict[str, float]:
        """Per-head scores of one reply, plus the weighted aggregate under the current weights."""
        heads = self.head_scores([prompt], [response])
        return {**dict(zip(self.heads, heads[0].tolist(), strict=True)),
                "aggregate": float(self.aggregate(heads)[0])}

    def __call__(self, prompts, completions, **_: object) -> list[float]:
        """TRL reward-function signature: prompts and completions, conversational or plain text."""
        return self.score([prompt_messages(p) for p in prompts], [response_text(c) for c in completions])


def pairwise_accuracy(chosen_scores: Sequence[float], rejected_scores: Sequence[float]) -> float:
    """Fraction of pairs where chosen scores strictly higher; ties count half."""
    if not chosen_scores:
        return float("nan")
    wins = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen_scores, rejected_scores, strict=True))
    return wins / len(chosen_scores)


def length_baseline_accuracy(pairs: Sequence[dict]) -> float:
    """Accuracy of 'the longer response is better' on the same pairs."""
    lengths_chosen = [len(p["chosen"][-1]["content"]) for p in pairs]
    lengths_rejected = [len(p["rejected"][-1]["content"]) for p in pairs]
    return pairwise_accuracy(lengths_chosen, lengths_rejected)
