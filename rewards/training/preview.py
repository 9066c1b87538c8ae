"""What the DPO trainer will see: chat-template rendering, loss mask, token counts, BOS/EOS and truncation.

Tokenization mirrors TRL's DPOTrainer (prompt with the generation prompt, then prompt + completion, the completion
starting where the two diverge) and the loss mask comes from TRL's own ``DataCollatorForPreference``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from trl.data_utils import common_prefix_length, is_conversational
from trl.trainer.dpo_trainer import DataCollatorForPreference


@dataclass
class PairTokens:
    """One preference pair as token ids, split where TRL splits it."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_render_len: int  # tokens of the prompt rendered alone; > len(prompt_ids) when the boundary merged

    @property
    def boundary_ok(self) -> bool:
        """The prompt rendered alone is exactly the start of prompt + completion."""
        return self.prompt_render_len == len(self.prompt_ids)

    def sequences(self) -> dict[str, list[int]]:
        return {"chosen": self.prompt_ids + self.chosen_ids, "rejected": self.prompt_ids + self.rejected_ids}


@dataclass
class PreviewReport:
    """Counts over a dataset of pairs at one ``max_length``."""

    max_length: int
    n_pairs: int = 0
    n_truncated: int = 0          # prompt + chosen or prompt + rejected longer than max_length
    n_dropped: int = 0            # prompt alone fills max_length: TRL drops the pair
    n_eos_lost: int = 0           # EOS present but cut off by truncation
    n_missing_eos: int = 0        # a completion without EOS even before truncation
    n_repeated_bos: int = 0       # more than one BOS at the start of a sequence
    n_boundary_mismatch: int = 0  # prompt tokens change when the completion follows
    prompt_tokens: list[int] = field(default_factory=list)
    chosen_tokens: list[int] = field(default_factory=list)
    rejected_tokens: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        def stats(values: list[int]) -> dict:
            return {"mean": round(sum(values) / len(values), 1), "max": max(values)} if values else {}

        counts = {k: v for k, v in self.__dict__.items() if isinstance(v, int)}
        return {**counts, "prompt_tokens": stats(self.prompt_tokens), "chosen_tokens": stats(self.chosen_tokens),
                "rejected_tokens": stats(self.rejected_tokens)}


def _ids(tokenizer, content, **kwargs) -> list[int]:
    if isinstance(content, list):
        return list(tokenizer.apply_chat_template(content, tokenize=True, return_dict=True, **kwargs)["input_ids"])
    return list(tokenizer(text=content)["input_ids"])


def tokenize_pair(tokenizer, row: dict) -> PairTokens:
    """Token ids of one {prompt, chosen, rejected} row, exactly as TRL's DPOTrainer builds them."""
    if is_conversational(row):
        prompt = _ids(tokenizer, row["prompt"], add_generation_prompt=True)
        chosen = _ids(tokenizer, row["prompt"] + row["chosen"])
        rejected = _ids(tokenizer, row["prompt"] + row["rejected"])
    else:  # TRL appends EOS to plain-text completions
        eos = tokenizer.eos_token or ""
        prompt = _ids(tokenizer, row["prompt"])
        chosen = _ids(tokenizer, row["prompt"] + row["chosen"] + ("" if row["chosen"].endswith(eos) else eos))
        rejected = _ids(tokenizer, row["prompt"] + row["rejected"] + ("" if row["rejected"].endswith(eos) else eos))
    split = min(common_prefix_length(prompt, chosen), common_prefix_length(prompt, rejected))
    return PairTokens(prompt[:split], chosen[split:], rejected[split:], prompt_render_len=len(prompt))


def loss_masks(tokenizer, pair: PairTokens, max_length: int | None) -> dict[str, tuple[list[int], list[int]]]:
    """(input_ids, completion_mask) per side after TRL's collator (truncation included), without padding."""
    collator = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id or 0, max_length=max_length)
    batch = collator([{"prompt_ids": pair.prompt_ids, "chosen_ids": pair.chosen_ids,
                       "rejected_ids": pair.rejected_ids}])
    out = {}
    for row, side in enumerate(("chosen", "rejected")):
        length = int(batch["attention_mask"][row].sum())
        out[side] = (batch["input_ids"][row][:length].tolist(), batch["completion_mask"][row][:length].tolist())
    return out


def leading_bos(tokenizer, ids: list[int]) -> int:
    """How many BOS tokens a sequence starts with (2+ is the classic double-BOS mistake)."""
    count = 0
    while tokenizer.bos_token_id is not None and count < len(ids) and ids[count] == tokenizer.bos_token_id:
        count += 1
    return count


def preview_report(tokenizer, rows: Iterable[dict], max_length: int) -> PreviewReport:
    report = PreviewReport(max_length=max_length)
    eos = tokenizer.eos_token_id
    for row in rows:
        pair = tokenize_pair(tokenizer, row)
        report.n_pairs += 1
        report.prompt_tokens.append(len(pair.prompt_ids))
        report.chosen_tokens.append(len(pair.chosen_ids))
        report.rejected_tokens.append(len(pair.rejected_ids))
        sequences = pair.sequences()
        report.n_truncated += any(len(ids) > max_length for ids in sequences.values())
        report.n_dropped += len(pair.prompt_ids) >= max_length
        report.n_boundary_mismatch += not pair.boundary_ok
        report.n_repeated_bos += any(leading_bos(tokenizer, ids) > 1 for ids in sequences.values())
        completions = (pair.chosen_ids, pair.rejected_ids)
        report.n_missing_eos += any(eos not in ids for ids in completions)
        kept = max(0, max_length - len(pair.prompt_ids))
        report.n_eos_lost += any(eos in ids and eos not in ids[:kept] for ids in completions)
    return report


def _runs(mask: list[int]) -> str:
    """Run-length form of a 0/1 mask: ``0x37 1x14``."""
    parts: list[str] = []
    for value in mask:
        if parts and parts[-1][0] == str(value):
            head, count = parts[-1].split("x")
            parts[-1] = f"{head}x{int(count) + 1}"
        else:
            parts.append(f"{value}x1")
    return " ".join(parts)


def render_sample(tokenizer, row: dict, max_length: int, index: int = 0) -> str:
    """Human-readable view of one pair: rendered text with the trained tokens in ⟦…⟧, mask and counts."""
    pair = tokenize_pair(tokenizer, row)
    lines = [f"── sample {index}: prompt {len(pair.prompt_ids)} tokens, chosen {len(pair.chosen_ids)}, "
             f"rejected {len(pair.rejected_ids)} (max_length {max_length})"]
    for side, (ids, mask) in loss_masks(tokenizer, pair, max_length).items():
        start = mask.index(1) if 1 in mask else len(mask)
        full = len(pair.sequences()[side])
        notes = [f"{full} tokens"]
        if full > max_length:
            notes.append(f"TRUNCATED to {max_length}, {full - max_length} lost")
        if leading_bos(tokenizer, ids) > 1:
            notes.append("REPEATED BOS")
        if tokenizer.eos_token_id not in ids[start:]:
            notes.append("NO EOS in the trained part")
        lines.append(f"[{side}] {', '.join(notes)}; loss mask {_runs(mask)}")
        lines.append(tokenizer.decode(ids[:start]) + "⟦" + tokenizer.decode(ids[start:]) + "⟧")
    if not pair.boundary_ok:
        dropped = pair.prompt_render_len - len(pair.prompt_ids)
        lines.append(f"note: {dropped} prompt token(s) merge with the completion; TRL starts the completion earlier")
    return "\n".join(lines)
