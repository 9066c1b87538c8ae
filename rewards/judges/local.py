"""A local model as judge: the score is the expectation over the probabilities of "1".."5".

No free text is parsed. The rubric prompt is shared by every item and the client/response block is
shared by the seven principle questions, so their key/value cache is computed once and reused.
"""

from __future__ import annotations

import torch

from rewards.judges.base import (
    JudgeItem,
    PrincipleScores,
    pairwise_messages,
    score_messages,
)
from rewards.rubric import Rubric

SCORE_PREFIX = "Score: "
CHOICE_PREFIX = "Better reply: "


def common_prefix_length(sequences: list[list[int]]) -> int:
    shortest = min(len(s) for s in sequences)
    for index in range(shortest):
        token = sequences[0][index]
        if any(s[index] != token for s in sequences[1:]):
            return index
    return shortest


def crop_cache(cache, length: int) -> None:
    """Drop cached positions beyond ``length`` (transformers takes the count to remove, negated)."""
    excess = cache.get_seq_length() - length
    if excess > 0:
        cache.crop(-excess)


class LocalLogprobJudge:
    """Judge with a local causal LM; ``reuse_prefix=False`` runs one full pass per principle."""

    def __init__(self, model, tokenizer, rubric: Rubric, reuse_prefix: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.rubric = rubric
        self.reuse_prefix = reuse_prefix
        self.digit_ids = self._answer_token_ids(SCORE_PREFIX, ["1", "2", "3", "4", "5"])
        self.choice_ids = self._answer_token_ids(CHOICE_PREFIX, ["A", "B"])
        self._rubric_cache = None
        self._rubric_tokens: list[int] = []

    # -- tokenization -------------------------------------------------------------------------
    def _encode(self, messages: list[dict], answer_prefix: str, answer: str) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text + answer_prefix + answer, add_special_tokens=False)["input_ids"]

    def _answer_token_ids(self, prefix: str, answers: list[str]) -> list[int]:
        """Token id of each answer right after ``prefix``; each must differ only in its last token."""
        probe = [{"role": "user", "content": "probe"}]
        encoded = [self._encode(probe, prefix, answer) for answer in answers]
        shared = common_prefix_length(encoded)
        if any(len(e) != shared + 1 for e in encoded):
            raise ValueError(f"tokenizer splits the answers {answers} into several tokens; cannot score them")
        return [e[shared] for e in encoded]

    def _context(self, messages: list[dict], answer_prefix: str, answer: str) -> list[int]:
        return self._encode(messages, answer_prefix, answer)[:-1]

    # -- forward passes -----------------------------------------------------------------------
    def _forward(self, input_ids: torch.Tensor, cache=None, attention_mask=None):
        return self.model(input_ids=input_ids.to(self.model.device), past_key_values=cache,
                          attention_mask=attention_mask, use_cache=True)

    def _rubric_prefix(self) -> list[int]:
        """Tokens every judge prompt starts with (system prompt and rubric); their cache is kept."""
        if self._rubric_cache is None:
            probe_a = self._context(score_messages(self.rubric, JudgeItem("a", "a"), self.rubric.principles[0]),
                                    SCORE_PREFIX, "1")
            probe_b = self._context(score_messages(self.rubric, JudgeItem("b", "b"), self.rubric.principles[-1]),
                                    SCORE_PREFIX, "1")
            self._rubric_tokens = probe_a[: common_prefix_length([probe_a, probe_b])]
            self._rubric_cache = self._forward(torch.tensor([self._rubric_tokens])).past_key_values
        return self._rubric_tokens

    def _last_token_logits(self, sequences: list[list[int]]) -> torch.Tensor:
        """Logits after the last token of each sequence, in one forward pass on the cached rubric.

        The shared block (client message and reply) is followed by every question; a block-diagonal
        mask lets each question see the block but not the other questions, and position ids restart
        after the block, so each question's logits equal those of its own full pass.
        """
        rubric = self._rubric_prefix()
        shared = min(common_prefix_length(sequences), min(len(s) for s in sequences) - 1)
        if shared < len(rubric) or any(s[: len(rubric)] != rubric for s in sequences):
            return torch.cat([self._full_pass_logits(s) for s in sequences])
        block = sequences[0][len(rubric):shared]
        questions = [s[shared:] for s in sequences]
        tokens = block + [t for q in questions for t in q]
        width = len(tokens)
        mask = torch.zeros(width, len(rubric) + width, dtype=torch.bool)
        mask[:, : len(rubric)] = True
        mask[: len(block), len(rubric): len(rubric) + len(block)] = torch.ones(len(block), len(block)).tril().bool()
        positions = list(range(len(rubric), shared))
        offset, last = len(block), []
        for question in questions:
            rows = slice(offset, offset + len(question))
            mask[rows, len(rubric): len(rubric) + len(block)] = True
            start = len(rubric) + offset
            mask[rows, start: start + len(question)] = torch.ones(len(question), len(question)).tril().bool()
            positions += range(shared, shared + len(question))
            offset += len(question)
            last.append(offset - 1)
        try:
            logits = self.model(
                input_ids=torch.tensor([tokens], device=self.model.device),
                attention_mask=mask[None, None].to(self.model.device),
                position_ids=torch.tensor([positions], device=self.model.device),
                past_key_values=self._rubric_cache, use_cache=True,
            ).logits
        finally:
            crop_cache(self._rubric_cache, len(rubric))
        return logits[0, last].float()

    # -- public API ---------------------------------------------------------------------------
    @torch.inference_mode()
    def score_one(self, item: JudgeItem) -> PrincipleScores:
        sequences = [self._context(score_messages(self.rubric, item, p), SCORE_PREFIX, "1")
                     for p in self.rubric.principles]
        if self.reuse_prefix:
            logits = self._last_token_logits(sequences)
        else:
            logits = torch.cat([self._full_pass_logits(s) for s in sequences])
        probs = torch.softmax(logits[:, self.digit_ids], dim=-1)
        expected = probs @ torch.arange(1, 6, dtype=probs.dtype, device=probs.device)
        return {p.id: round(float(v), 4) for p, v in zip(self.rubric.principles, expected, strict=True)}

    def _full_pass_logits(self, sequence: list[int]) -> torch.Tensor:
        return self.model(input_ids=torch.tensor([sequence], device=self.model.device)).logits[:, -1].float()

    def score(self, items: list[JudgeItem]) -> list[PrincipleScores]:
        return [self.score_one(item) for item in items]

    @torch.inference_mode()
    def compare(self, client: str, first: str, second: str) -> float:
        sequence = self._context(pairwise_messages(self.rubric, client, first, second), CHOICE_PREFIX, "A")
        logits = self._last_token_logits([sequence])
        probs = torch.softmax(logits[0, self.choice_ids], dim=-1)
        return float(probs[0])
