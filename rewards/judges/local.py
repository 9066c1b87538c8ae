"""A local model as judge: the score is the expectation over the probabilities of "1".."5".

No free text is parsed. The rubric prompt is shared by every item and the client/response block is
shared by the seven principle questions, so their key/value cache is computed once and reused. Several
items go through one forward pass (left-padded), and the vocabulary projection is applied only at the
positions where an answer token is read.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

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
DEFAULT_BATCH_SIZE = 4  # items per forward pass; the best CPU time in benchmarks/README.md (judge_batch)


def common_prefix_length(sequences: list[list[int]]) -> int:
    shortest = min(len(s) for s in sequences)
    for index in range(shortest):
        token = sequences[0][index]
        if any(s[index] != token for s in sequences[1:]):
            return index
    return shortest


@dataclass(frozen=True)
class PackedRow:
    """One item after the rubric: a shared block, then questions that each see the block but not each other."""

    block: list[int]
    questions: list[list[int]]

    @property
    def length(self) -> int:
        return len(self.block) + sum(len(q) for q in self.questions)


def pack_rows(rows: list[PackedRow], prefix_length: int, pad_id: int):
    """Left-padded tokens, position ids, a boolean attention mask over (prefix + row) and the answer read positions.

    Position ids restart after the block for each question, so each question's logits equal those of its own
    full pass. Padding rows may see the prefix only: a row that sees nothing makes attention's softmax NaN.
    """
    width, batch = max(r.length for r in rows), len(rows)
    tokens = torch.full((batch, width), pad_id, dtype=torch.long)
    positions = torch.zeros((batch, width), dtype=torch.long)
    mask = torch.zeros((batch, width, prefix_length + width), dtype=torch.bool)
    mask[:, :, :prefix_length] = True
    reads = torch.zeros((batch, len(rows[0].questions)), dtype=torch.long)
    for b, row in enumerate(rows):
        start, n_block = width - row.length, len(row.block)
        block_cols = slice(prefix_length + start, prefix_length + start + n_block)
        tokens[b, start:start + n_block] = torch.tensor(row.block, dtype=torch.long)
        positions[b, start:start + n_block] = torch.arange(prefix_length, prefix_length + n_block)
        mask[b, start:start + n_block, block_cols] = torch.ones(n_block, n_block, dtype=torch.bool).tril()
        offset = start + n_block
        for j, question in enumerate(row.questions):
            n = len(question)
            tokens[b, offset:offset + n] = torch.tensor(question, dtype=torch.long)
            positions[b, offset:offset + n] = torch.arange(prefix_length + n_block, prefix_length + n_block + n)
            mask[b, offset:offset + n, block_cols] = True
            mask[b, offset:offset + n, prefix_length + offset:prefix_length + offset + n] = torch.ones(
                n, n, dtype=torch.bool).tril()
            reads[b, j] = offset + n - 1
            offset += n
    return tokens, positions, mask, reads


class LocalLogprobJudge:
    """Judge with a local causal LM.

    ``batch_size`` items share one forward pass; ``reuse_prefix=False`` runs one full pass per principle
    (the slow reference the prefix reuse is checked against).
    """

    def __init__(self, model, tokenizer, rubric: Rubric, reuse_prefix: bool = True,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.rubric = rubric
        self.reuse_prefix = reuse_prefix
        self.batch_size = batch_size
        self.digit_ids = self._answer_token_ids(SCORE_PREFIX, ["1", "2", "3", "4", "5"])
        self.choice_ids = self._answer_token_ids(CHOICE_PREFIX, ["A", "B"])
        self._rubric_cache = None
        self._rubric_tokens: list[int] = []
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad or 0)

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
    def _rubric_prefix(self) -> list[int]:
        """Tokens every judge prompt starts with (system prompt and rubric); their cache is kept."""
        if self._rubric_cache is None:
            probe_a = self._context(score_messages(self.rubric, JudgeItem("a", "a"), self.rubric.principles[0]),
                                    SCORE_PREFIX, "1")
            probe_b = self._context(score_messages(self.rubric, JudgeItem("b", "b"), self.rubric.principles[-1]),
                                    SCORE_PREFIX, "1")
            self._rubric_tokens = probe_a[: common_prefix_length([probe_a, probe_b])]
            self._rubric_cache = self.model(input_ids=torch.tensor([self._rubric_tokens], device=self.model.device),
                                            use_cache=True, **self._keep(1)).past_key_values
        return self._rubric_tokens

    def _keep(self, positions) -> dict:
        """``logits_to_keep`` where the model takes it: the LM head then projects only those positions."""
        return {"logits_to_keep": positions} if self._keeps_logits else {}

    def _batch_cache(self, batch: int):
        """A fresh cache holding the rubric prefix for ``batch`` rows; the kept one is never written to."""
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=[(k, v) for k, v, *_ in self._rubric_cache], config=self.model.config)
        for layer in cache.layers:
            # A broadcast view: the forward pass concatenates onto it, so rows are never copied up front.
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys.expand(batch, -1, -1, -1)
                layer.values = layer.values.expand(batch, -1, -1, -1)
        return cache

    def _split(self, sequences: list[list[int]]) -> PackedRow | None:
        """The item's block and questions after the rubric prefix, or None if it does not start with it."""
        rubric = self._rubric_prefix()
        shared = min(common_prefix_length(sequences), min(len(s) for s in sequences) - 1)
        if shared < len(rubric) or any(s[: len(rubric)] != rubric for s in sequences):
            return None
        return PackedRow(sequences[0][len(rubric):shared], [s[shared:] for s in sequences])

    def _rows_logits(self, rows: list[PackedRow]) -> torch.Tensor:
        """Logits ``[rows, questions, vocab]`` after the last token of each question, one forward pass for all."""
        prefix = len(self._rubric_tokens)
        tokens, positions, mask, reads = pack_rows(rows, prefix, self._pad_id)
        device = self.model.device
        logits = self.model(
            input_ids=tokens.to(device), attention_mask=mask[:, None].to(device), position_ids=positions.to(device),
            past_key_values=self._batch_cache(len(rows)), use_cache=True, **self._keep(reads.to(device)),
        ).logits
        if not self._keeps_logits:
            logits = torch.take_along_dim(logits, reads.to(device)[..., None], dim=1)
        return logits.float()

    def _full_pass_logits(self, sequence: list[int]) -> torch.Tensor:
        return self.model(input_ids=torch.tensor([sequence], device=self.model.device),
                          **self._keep(1)).logits[:, -1].float()

    def _logits(self, sequence_sets: list[list[list[int]]]) -> list[torch.Tensor]:
        """Per set of sequences (one item), the logits ``[len(set), vocab]`` after each sequence's last token.

        Sets are sorted by length so that a batch pads little, batched, and returned in the caller's order.
        """
        out: list[torch.Tensor | None] = [None] * len(sequence_sets)
        rows: dict[int, PackedRow] = {}
        for index, sequences in enumerate(sequence_sets):
            row = self._split(sequences) if self.reuse_prefix else None
            if row is None:
                out[index] = torch.cat([self._full_pass_logits(s) for s in sequences])
            else:
                rows[index] = row
        order = sorted(rows, key=lambda i: rows[i].length)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for index, logits in zip(chunk, self._rows_logits([rows[i] for i in chunk]), strict=True):
                out[index] = logits
        return out

    # -- public API ---------------------------------------------------------------------------
    def _score_sequences(self, item: JudgeItem) -> list[list[int]]:
        return [self._context(score_messages(self.rubric, item, p), SCORE_PREFIX, "1") for p in self.rubric.principles]

    def _expected_scores(self, logits: torch.Tensor) -> PrincipleScores:
        probs = torch.softmax(logits[:, self.digit_ids], dim=-1)
        expected = probs @ torch.arange(1, 6, dtype=probs.dtype, device=probs.device)
        return {p.id: round(float(v), 4) for p, v in zip(self.rubric.principles, expected, strict=True)}

    @torch.inference_mode()
    def score(self, items: list[JudgeItem]) -> list[PrincipleScores]:
        return [self._expected_scores(logits) for logits in self._logits([self._score_sequences(i) for i in items])]

    @torch.inference_mode()
    def compare(self, client: str, first: str, second: str) -> float:
        return self.compare_many([(client, first, second)])[0]

    @torch.inference_mode()
    def compare_many(self, asks: list[tuple[str, str, str]]) -> list[float]:
        """Probability that ``first`` is better in each (client, first, second), ``batch_size`` asks per pass."""
        sequences = [[self._context(pairwise_messages(self.rubric, client, first, second), CHOICE_PREFIX, "A")]
                     for client, first, second in asks]
        return [float(torch.softmax(logits[0, self.choice_ids], dim=-1)[0]) for logits in self._logits(sequences)]
