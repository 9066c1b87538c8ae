"""Bradley–Terry reward models trained with TRL's RewardTrainer, and scoring with them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rewards.models import pick_device, resolve_model_path, torch_dtype
from rewards.training import build_lora_config, training_arguments


def train_reward_model(model_path: str, tokenizer, train_dataset, eval_dataset, train_cfg: dict,
                       output_dir: str | Path, report_to: list[str], seed: int = 0):
    """Train a scalar reward model on conversational preference pairs; returns the trainer."""
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(model_path), num_labels=1, dtype=torch_dtype(train_cfg.get("dtype")),
        use_safetensors=True,
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    args = training_arguments(RewardConfig, train_cfg, output_dir, report_to, seed,
                              extra={"max_length": train_cfg.get("max_length", 512),
                                     "center_rewards_coefficient": train_cfg.get("center_rewards_coefficient")})
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=build_lora_config(train_cfg, task_type="SEQ_CLS"),
    )
    return trainer


class RewardScorer:
    """Scores (prompt messages, response) with a saved reward model (full or LoRA adapter)."""

    def __init__(self, model, tokenizer, batch_size: int = 8, max_length: int = 1024) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, path: str | Path, base_model: str | None = None, device: str = "auto",
                        dtype: str = "float32", **kwargs) -> RewardScorer:
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if (path / "adapter_config.json").exists():
            if base_model is None:
                raise ValueError(f"{path} holds a LoRA adapter; pass base_model")
            base = AutoModelForSequenceClassification.from_pretrained(
                resolve_model_path(base_model), num_labels=1, dtype=torch_dtype(dtype), use_safetensors=True)
            base.config.pad_token_id = tokenizer.pad_token_id
            model = PeftModel.from_pretrained(base, path)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch_dtype(dtype),
                                                                       use_safetensors=True)
        return cls(model.to(pick_device(device)), tokenizer, **kwargs)

    def _encode(self, conversation: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
        return ids[-self.max_length:]

    @torch.inference_mode()
    def score(self, prompts: Sequence[list[dict]], responses: Sequence[str], progress: bool = False) -> list[float]:
        conversations = [list(p) + [{"role": "assistant", "content": r}]
                         for p, r in zip(prompts, responses, strict=True)]
        encoded = [self._encode(c) for c in conversations]
        scores: list[float] = []
        starts = range(0, len(encoded), self.batch_size)
        for start in tqdm(starts, desc="reward", disable=not progress):
            batch = encoded[start:start + self.batch_size]
            width = max(len(ids) for ids in batch)
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch])
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch])
            logits = self.model(input_ids=input_ids.to(self.model.device),
                                attention_mask=mask.to(self.model.device)).logits
            scores.extend(float(v) for v in logits[:, 0])
        return scores

    def __call__(self, prompts, completions, **_: object) -> list[float]:
        """TRL reward-function signature: conversational prompts and completions."""
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        convs = [p if isinstance(p, list) else [{"role": "user", "content": p}] for p in prompts]
        return self.score(convs, texts)


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
