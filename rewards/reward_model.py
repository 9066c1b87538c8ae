"""Bradley–Terry reward models trained with TRL's RewardTrainer, and scoring with them (one or many heads)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rewards.errors import UserError
from rewards.models import resolve_model_path, torch_dtype
from rewards.rm_data import encode_conversation, fit_length, prompt_messages, response_text
from rewards.training import build_lora_config, qlora_quantization_config, training_arguments


def quantization_config(train_cfg: Mapping, section: str = "reward"):
    """A 4-bit nf4 ``BitsAndBytesConfig`` for ``peft: qlora`` (CUDA only), else None."""
    return qlora_quantization_config(train_cfg, section)


def load_score_model(model_path: str, train_cfg: Mapping, pad_token_id: int, labels: Sequence[str] = ("reward",),
                     trust_remote_code: bool = False):
    """A sequence-classification model with one output per label (4-bit quantized for QLoRA), from safetensors."""
    from transformers import AutoModelForSequenceClassification

    quant = quantization_config(train_cfg)
    kwargs = {"num_labels": len(labels), "dtype": torch_dtype(train_cfg.get("dtype")), "use_safetensors": True,
              "trust_remote_code": trust_remote_code}
    if len(labels) > 1:
        kwargs.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()})
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(model_path), **kwargs)
    model.config.pad_token_id = pad_token_id
    if quant is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(train_cfg.get("gradient_checkpointing")))
    return model


def train_reward_model(model_path: str, tokenizer, train_dataset, eval_dataset, train_cfg: dict,
                       output_dir: str | Path, report_to: list[str], seed: int = 0):
    """A TRL RewardTrainer for a scalar reward model on preference pairs (raw or tokenized); full, LoRA or QLoRA.

    ``center_rewards_coefficient`` and a ``margin`` column in the data are TRL's options, passed through.
    """
    from transformers import set_seed
    from trl import RewardConfig, RewardTrainer

    set_seed(seed)  # the score head is initialised at random when the model is loaded
    model = load_score_model(model_path, train_cfg, tokenizer.pad_token_id)
    args = training_arguments(RewardConfig, train_cfg, output_dir, report_to, seed,
                              extra={"max_length": train_cfg.get("max_length", 512),
                                     "center_rewards_coefficient": train_cfg.get("center_rewards_coefficient")})
    return RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=build_lora_config(train_cfg, task_type="SEQ_CLS"),
    )


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

    @classmethod
    def from_pretrained(cls, path: str | Path, base_model: str | None = None, device: str = "auto",
                        dtype: str = "float32", **kwargs) -> RewardScorer:
        from rewards.reward_io import load_reward

        return load_reward(path, base_model=base_model, device=device, dtype=dtype, **kwargs)

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
