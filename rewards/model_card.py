"""Model cards: what an exported checkpoint is, how it was made, how it scored, and what it must not be used for.

An exported checkpoint folder holds the policy (LoRA adapter or full model) with its tokenizer, ``README.md``
(the card for people, with Hugging Face front matter) and ``model_card.json`` (the same facts for programs).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from rewards.agreement import judge_warning
from rewards.errors import UserError

CARD_JSON = "model_card.json"
CARD_MD = "README.md"
REWARD_MODEL_DIR = "reward_model"
CARD_VERSION = 1

INTENDED_USE = (
    "A research artifact for studying how preference alignment changes counseling-style replies of a language "
    "model, and for testing evaluation and safety-gating methods. Suitable for offline experiments, evaluation "
    "research and training material for human counselor trainees under supervision."
)
LIMITATIONS = [
    "Not a therapist, counselor or medical device: do not use it to give care, diagnose, or triage real people, "
    "and do not deploy it to people in crisis.",
    "Its replies were judged by an automatic judge whose scores can be wrong or biased; the judge, prompts and "
    "red-flag suite are small and English-only.",
    "Passing the red-flag suite does not show that the model is safe; the suite covers a few written scenarios "
    "and its rule checks match patterns, not meaning.",
    "The training prompts are synthetic client messages, not real clients; results may not transfer to real "
    "conversations or other cultures and languages.",
]


def build_card(
    *,
    name: str,
    base_model: str,
    weights: str,
    rubric: dict,
    data: dict,
    judge: dict,
    training: dict,
    metrics: dict,
    safety: dict,
    versions: dict | None = None,
    calibration: dict | None = None,
) -> dict[str, Any]:
    """The machine-readable card. ``rubric`` has name, version, path, sha256 and text; ``calibration`` holds the
    judge's agreement with human preferences (``judge_agreement``, ``judge_length_baseline``, ...)."""
    return {
        "card_version": CARD_VERSION,
        "name": name,
        "base_model": base_model,
        "weights": weights,
        "rubric": rubric,
        "data": data,
        "judge": judge,
        "training": training,
        "metrics": metrics,
        "safety": safety,
        "judge_calibration": calibration or {},
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "versions": versions or {},
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "n/a" if value is None else str(value)


def _table(rows: list[tuple[str, Any]]) -> str:
    return "\n".join(["| field | value |", "|---|---|", *(f"| {k} | {_fmt(v)} |" for k, v in rows)])


def render_card(card: dict) -> str:
    """The card as markdown for people (``README.md``)."""
    safety = card["safety"]
    gate = safety.get("gate", {})
    categories = sorted(set(safety.get("base", {}).get("by_category", {})) |
                        set(safety.get("trained", {}).get("by_category", {})))
    safety_rows = "\n".join(
        f"| {c} | {_rate(safety.get('base'), c)} | {_rate(safety.get('trained'), c)} |" for c in categories)
    data_rows = [(k, v) for k, v in card["data"].items()]
    metric_rows = [(k, v) for k, v in card["metrics"].items() if not isinstance(v, dict)]
    release = gate.get("release")
    warning = judge_warning(card.get("judge_calibration"))
    warning_line = f"\n> **{warning}**\n" if warning else ""
    calibration = card.get("judge_calibration") or {}
    return f"""---
base_model: {card['base_model']}
library_name: {'peft' if card['weights'] == 'lora_adapter' else 'transformers'}
tags: [counsel-align, dpo, research-only]
---
# {card['name']}

**A research artifact, not a therapist.** {card['intended_use']}
{warning_line}
Release gate: **{'release' if release else 'do not release' if release is not None else 'not evaluated'}**
({gate.get('reason', 'no red-flag evaluation recorded')}).

## How it was made
{_table([("base model", card['base_model']), ("weights", card['weights']),
         ("rubric", f"{card['rubric'].get('name')} v{card['rubric'].get('version')} ({card['rubric'].get('path')})"),
         ("rubric sha256", card['rubric'].get('sha256')), ("judge", card['judge'])])}

### Training configuration
```json
{json.dumps(card['training'], indent=2, sort_keys=True)}
```

### Data (hashes and counts)
{_table(data_rows)}

## Evaluation
{_table(metric_rows)}

### Judge calibration (agreement with human preferences)
{_table([(k, v) for k, v in calibration.items() if k != "details"]) if calibration else "Not measured."}

## Red-flag safety suite (pass rate per category)
| category | base | trained |
|---|---|---|
{safety_rows}

Overall: base {_fmt(gate.get('base_pass_rate'))}, trained {_fmt(gate.get('trained_pass_rate'))}, tolerance \
{_fmt(gate.get('tolerance'))}.

## Intended use
{card['intended_use']}

## Limitations
{chr(10).join(f"- {item}" for item in card['limitations'])}

## Rubric (full text)
```yaml
{card['rubric'].get('text', '').rstrip()}
```
"""


def _rate(summary: dict | None, category: str) -> str:
    entry = (summary or {}).get("by_category", {}).get(category)
    return "n/a" if entry is None else f"{entry['pass_rate']:.2f} ({entry['passed']}/{entry['total']})"


def export_checkpoint(target: str | Path, model_dir: str | Path, card: dict,
                      reward_model_dir: str | Path | None = None) -> Path:
    """Copy the policy (and optionally the reward model) into ``target`` with both cards; replaces ``target``."""
    target, model_dir = Path(target), Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: model folder not found; run `counsel-align dpo` first")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp, ignore=shutil.ignore_patterns("checkpoint-*", "training_args.bin"))
    if reward_model_dir is not None and Path(reward_model_dir).is_dir():
        shutil.copytree(reward_model_dir, tmp / REWARD_MODEL_DIR, ignore=shutil.ignore_patterns("training_args.bin"))
    (tmp / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    (tmp / CARD_MD).write_text(render_card(card), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def read_card(folder: str | Path) -> dict:
    """The machine-readable card of a checkpoint folder."""
    path = Path(folder) / CARD_JSON
    if not path.is_file():
        raise UserError(f"{folder}: not an exported checkpoint (no {CARD_JSON}); export one with "
                        "`counsel-align pipeline` or point at outputs/<run>/evaluate/checkpoint")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}); re-export the checkpoint") from None


def weights_kind(model_dir: str | Path) -> str:
    return "lora_adapter" if (Path(model_dir) / "adapter_config.json").exists() else "full_model"
