"""Training a policy on human counselor replies: SFT examples (the best-voted answer per question), KTO examples
(top-voted vs zero-upvote answers of one question), the TRL SFT/KTO trainers, and merging a LoRA adapter.

Data come from a ranked table (CounselChat or any CSV/JSONL by column map) through ``rewards.human_prefs``, which
drops duplicate answers and keeps val/test questions out of train; only train questions are ever used here.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict
from pathlib import Path

from rewards.artifacts import atomic_replace_dir, sha256_file
from rewards.errors import UserError
from rewards.human_prefs import HELD_OUT_SPLITS, RankedColumns, _check_keys, _digest, group_answers, read_table
from rewards.training.arguments import training_arguments, trl_trainer
from rewards.training.options import KTOOptions, SFTOptions, options_dict

COUNSELCHAT_FILE = "counsel_chat.csv"
SFT_KEYS = ("max_length", "completion_only_loss", "packing", "assistant_only_loss", "pad_to_multiple_of")
KTO_KEYS = ("beta", "loss_type", "max_length", "desirable_weight", "undesirable_weight", "precompute_ref_log_probs")
MERGED_DIR = "merged"


def resolve_table(source: str | os.PathLike) -> str | Path:
    """A folder holding ``counsel_chat.csv`` (the shared copy) stands for that file; else the source as given."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / COUNSELCHAT_FILE).exists():
            raise UserError(f"{path}: a folder without {COUNSELCHAT_FILE}; give a CSV/JSONL file or a hub dataset id")
        return path / COUNSELCHAT_FILE
    if path.exists():
        return path
    if str(source).count("/") != 1 or str(source).startswith((".", "/", "~")):  # not a hub id: fail before any work
        raise UserError(f"{source}: file not found; give a CSV/JSONL path, a CounselChat folder or a hub dataset id")
    return str(source)


def source_fingerprint(source: str | os.PathLike) -> str:
    """The sha256 of a data file, or ``hub:<id>`` for a hub dataset (its content is not at hand before loading)."""
    table = resolve_table(source)
    return sha256_file(table) if isinstance(table, Path) else f"hub:{table}"


def check_training_split(split: str, config_key: str) -> None:
    if split in HELD_OUT_SPLITS:
        raise UserError(f"{config_key}={split}: held-out splits are never used for training; use train")


def load_train_questions(source: str | os.PathLike, columns: dict | None = None, split: str = "train",
                         config_key: str = "sft.data") -> list[dict]:
    """Questions of ``split`` with their deduplicated, scored answers (see ``human_prefs.group_answers``)."""
    check_training_split(split, f"{config_key}.split")
    mapping = {**asdict(RankedColumns()), **{k: v for k, v in (columns or {}).items() if v is not None}}
    _check_keys(mapping, RankedColumns.__dataclass_fields__, f"{config_key}.columns", "ranked")
    rows = read_table(resolve_table(source))
    if not rows:
        raise UserError(f"{source}: no rows")
    groups = group_answers(rows, RankedColumns(**mapping), str(source), f"{config_key}.columns")
    return [question for question in groups.values() if question["split"] == split]


def _conversation(question: dict, answer: dict) -> dict:
    return {"prompt": [{"role": "user", "content": question["prompt"]}],
            "completion": [{"role": "assistant", "content": answer["response"]}],
            "prompt_id": question["prompt_id"], "topic": question["topic"], "score": answer["score"]}


def _best_first(question: dict) -> list[dict]:
    """Answers by score, ties in a fixed order (by content digest) so a rerun picks the same one."""
    return sorted(question["answers"], key=lambda a: (-a["score"], _digest(question["prompt_id"], a["response"])))


def sft_examples(questions: list[dict], min_score: float = 1.0, max_examples: int | None = None,
                 seed: int = 0) -> list[dict]:
    """One conversational prompt/completion per question: its best-voted answer, if it has at least ``min_score``.

    A question nobody voted on has no best answer, only an arbitrary one, so ``min_score=1`` skips it.
    """
    examples = []
    for question in questions:
        best = _best_first(question)[0]
        if best["score"] >= min_score:
            examples.append(_conversation(question, best))
    return _subsample(examples, max_examples, seed)


def kto_examples(questions: list[dict], min_score: float = 1.0, undesirable_max_score: float = 0.0,
                 max_undesirable_per_question: int | None = 3, max_examples: int | None = None,
                 seed: int = 0) -> list[dict]:
    """Unpaired KTO rows (``label`` True/False) from questions whose best answer has at least ``min_score``.

    Desirable: every answer with the question's top score. Undesirable: answers of that same question scoring at most
    ``undesirable_max_score``. Zero upvotes alone mostly means few readers, so only a question where readers did
    vote gives its unvoted answers a (relative) bad label; the cap keeps the few 40-answer questions from dominating.
    """
    rng = random.Random(seed)
    examples = []
    for question in questions:
        ranked = _best_first(question)
        top = ranked[0]["score"]
        if top < min_score:
            continue
        examples += [{**_conversation(question, a), "label": True} for a in ranked if a["score"] == top]
        bad = [a for a in ranked if a["score"] <= undesirable_max_score]
        rng.shuffle(bad)
        bad = bad[:max_undesirable_per_question] if max_undesirable_per_question is not None else bad
        examples += [{**_conversation(question, a), "label": False} for a in bad]
    return _subsample(examples, max_examples, seed)


def _subsample(examples: list[dict], n: int | None, seed: int) -> list[dict]:
    if not n or n >= len(examples):
        return examples
    return random.Random(seed).sample(examples, n)


def build_sft_trainer(model_path: str, tokenizer, train_dataset, train_cfg: dict, output_dir: str | Path,
                      report_to: list[str], seed: int = 0, callbacks=None):
    """A TRL SFTTrainer on conversational prompt/completion rows (loss on the completion only); LoRA by default.

    ``train_cfg``: the sft options (``SFTOptions``); those not given take its defaults."""
    from trl import SFTConfig, SFTTrainer

    from rewards.training.policy import load_policy_model

    train_cfg = options_dict(SFTOptions, train_cfg, "sft")
    args = training_arguments(SFTConfig, train_cfg, output_dir, report_to, seed,
                              extra={key: train_cfg[key] for key in SFT_KEYS})
    return trl_trainer(SFTTrainer, load_policy_model(model_path, train_cfg), args, tokenizer, train_dataset, train_cfg,
                       callbacks=callbacks)


def build_kto_trainer(model_path: str, tokenizer, train_dataset, train_cfg: dict, output_dir: str | Path,
                      report_to: list[str], seed: int = 0, callbacks=None):
    """A TRL KTOTrainer on prompt/completion/label rows; with LoRA the reference is the base with the adapter off.

    ``train_cfg``: the kto options (``KTOOptions``); those not given take its defaults."""
    from trl import KTOConfig, KTOTrainer

    from rewards.training.policy import load_policy_model

    train_cfg = options_dict(KTOOptions, train_cfg, "kto")
    args = training_arguments(KTOConfig, train_cfg, output_dir, report_to, seed,
                              extra={key: train_cfg[key] for key in KTO_KEYS})
    return trl_trainer(KTOTrainer, load_policy_model(model_path, train_cfg), args, tokenizer, train_dataset, train_cfg,
                       ref_model=None, callbacks=callbacks)


def merge_adapter(adapter_dir: str | Path, base_path: str, out_dir: str | Path, dtype: str | None = None) -> Path:
    """Write base + LoRA adapter as one full model (with the adapter's tokenizer) to ``out_dir``, atomically."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewards.models import resolve_model_path, torch_dtype

    out_dir = Path(out_dir)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(base_path), dtype=torch_dtype(dtype),
                                                use_safetensors=True)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()

    def write(tmp: Path) -> None:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(tmp))

    atomic_replace_dir(out_dir, write)
    return out_dir


def sft_policy_path(sft_dir: str | Path) -> Path:
    """The full SFT model a later stage starts from: the merged adapter, or the model itself after full SFT."""
    sft_dir = Path(sft_dir)
    return sft_dir / MERGED_DIR if (sft_dir / MERGED_DIR).is_dir() else sft_dir / "model"
