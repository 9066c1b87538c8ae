"""Model cards: what an exported checkpoint is, how it was made, how it scored, and what it must not be used for.

An exported checkpoint folder holds the policy (LoRA adapter or full model) with its tokenizer, ``README.md``
(the card for people, with Hugging Face front matter) and ``model_card.json`` (the same facts for programs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rewards.artifacts import atomic_replace_dir, atomic_write_json, atomic_write_text
from rewards.errors import UserError
from rewards.reporting.html import fmt

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
    judge_checks: dict | None = None,
    calibration: dict | None = None,
) -> dict[str, Any]:
    """The machine-readable card. ``rubric`` has name, version, path, sha256 and text; ``judge_checks`` the judge's
    probe detection and human agreement (``rewards.judges.probes.judge_checks``); ``calibration`` the calibrate
    stage's agreement with human preferences (``judge_agreement``, ``judge_length_baseline``, ...)."""
    return {
        "card_version": CARD_VERSION,
        "name": name,
        "base_model": base_model,
        "weights": weights,
        "rubric": rubric,
        "data": data,
        "judge": judge,
        "judge_checks": judge_checks or {},
        "judge_calibration": calibration or {},
        "training": training,
        "metrics": metrics,
        "safety": safety,
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "versions": versions or {},
    }


def _table(rows: list[tuple[str, Any]]) -> str:
    return "\n".join(["| field | value |", "|---|---|", *(f"| {k} | {fmt(v)} |" for k, v in rows)])


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
    forced = " **Pushed anyway with `--force`.**" if card.get("forced_release") else ""
    from rewards.judges.agreement import judge_warning  # here: the judges package imports torch; cards need not

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
({gate.get('reason', 'no red-flag evaluation recorded')}).{forced}

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

{_judge_checks(card.get('judge_checks') or {})}

### Judge calibration (agreement with human preferences)
{_table([(k, v) for k, v in calibration.items() if k != "details"]) if calibration else "Not measured."}

## Red-flag safety suite (pass rate per category)
| category | base | trained |
|---|---|---|
{safety_rows}

Overall: base {fmt(gate.get('base_pass_rate'))}, trained {fmt(gate.get('trained_pass_rate'))}, tolerance \
{fmt(gate.get('tolerance'))}.

### Release gate checks
{_gate_section(gate, card)}

## Intended use
{card['intended_use']}

## Limitations
{chr(10).join(f"- {item}" for item in card['limitations'])}

## Rubric (full text)
```yaml
{card['rubric'].get('text', '').rstrip()}
```
"""


def _gate_section(gate: dict, card: dict) -> str:
    """The gate's floors and every check with its threshold and value; a forced push is stated first."""
    lines = []
    if card.get("forced_release"):
        lines.append("**Pushed with `--force` although the gate said do not release** "
                     f"({card.get('forced_release_reason')}).\n")
    crisis = ", ".join(gate.get("crisis_categories", [])) or "none"
    lines.append(f"Floors: overall red-flag pass rate >= {fmt(gate.get('min_pass_rate'))} "
                 f"(`evaluate.gate_min_pass_rate`); each crisis category ({crisis}"
                 f") >= {fmt(gate.get('min_crisis_pass_rate'))} (`evaluate.gate_min_crisis_pass_rate`); "
                 f"trained >= base - tolerance.\n")
    lines += ["| check | value | threshold | passed |", "|---|---|---|---|"]
    lines += [f"| {c['check']} | {fmt(c['value'])} | {fmt(c['threshold'])} | {'yes' if c['passed'] else '**no**'} |"
              for c in gate.get("checks", [])]
    return "\n".join(lines)


def _judge_checks(checks: dict) -> str:
    """How far the judge behind these numbers can be trusted: probe detection per principle, human agreement."""
    from rewards.reporting.report import judge_check_rows  # here: the report module pulls in matplotlib

    if not checks:
        return "### The judge\nNo probe or agreement figures were recorded for this judge."
    rates = checks.get("probe_detection_by_principle") or {}
    by_principle = ", ".join(f"{pid} {rate:.2f}" for pid, rate in rates.items())
    return (f"### The judge\nContrastive probes (`data/probes`) test whether the judge scores a reply that breaks one "
            f"principle below the intact reply (chance = 0.5).\n\n{_table(judge_check_rows(checks))}\n\n"
            f"Detection per principle: {by_principle or 'n/a'}.")


def _rate(summary: dict | None, category: str) -> str:
    entry = (summary or {}).get("by_category", {}).get(category)
    return "n/a" if entry is None else f"{entry['pass_rate']:.2f} ({entry['passed']}/{entry['total']})"


def export_checkpoint(target: str | Path, model_dir: str | Path, card: dict,
                      reward_model_dir: str | Path | None = None) -> Path:
    """Copy the policy (and optionally the reward model) into ``target`` with both cards; replaces ``target``."""
    target, model_dir = Path(target), Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: model folder not found; run `counsel-align dpo` first")

    def write(folder: Path) -> None:
        shutil.copytree(model_dir, folder, ignore=shutil.ignore_patterns("checkpoint-*", "training_args.bin"))
        if reward_model_dir is not None and Path(reward_model_dir).is_dir():
            shutil.copytree(reward_model_dir, folder / REWARD_MODEL_DIR,
                            ignore=shutil.ignore_patterns("training_args.bin"))
        write_card(folder, card)

    return atomic_replace_dir(target, write)


def write_card(folder: str | Path, card: dict) -> None:
    """``model_card.json`` and ``README.md`` of ``card`` into ``folder``."""
    atomic_write_json(Path(folder) / CARD_JSON, card)
    atomic_write_text(Path(folder) / CARD_MD, render_card(card))


def read_card(folder: str | Path, allow_training: bool = False) -> dict:
    """The machine-readable card of a checkpoint folder.

    A training stage's model folder has a card too, but no release decision: it is refused (so that `pull`/`push`
    never pass on an unevaluated model) unless ``allow_training`` (reading facts such as the base model).
    """
    path = Path(folder) / CARD_JSON
    if not path.is_file():
        raise UserError(f"{folder}: not an exported checkpoint (no {CARD_JSON}); export one with "
                        "`counsel-align pipeline` or point at outputs/<run>/evaluate/checkpoint")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}); re-export the checkpoint") from None
    if card.get("kind") == "training" and not allow_training:
        raise UserError(f"{folder}: a training stage's model, not evaluated (no release decision); run "
                        "`counsel-align evaluate` and use outputs/<run>/evaluate/checkpoint")
    return card


def weights_kind(model_dir: str | Path) -> str:
    return "lora_adapter" if (Path(model_dir) / "adapter_config.json").exists() else "full_model"


# Cards written by the training stages into their model folders (outputs/<run>/<stage>/model/): how the weights
# were made, before any evaluation. The evaluation card above replaces them in the exported checkpoint.


def build_training_card(*, model_dir: str | Path, provenance: dict, metrics: dict) -> dict[str, Any]:
    """The machine-readable card of a trained model; ``provenance`` comes from ``training_loop.stage_provenance``."""
    stage = provenance.get("stage", "train")
    return {
        "card_version": CARD_VERSION,
        "kind": "training",
        "name": f"counsel-align {stage} model ({provenance.get('run')})",
        "base_model": provenance.get("base_model"),
        "weights": weights_kind(model_dir),
        "method": provenance.get("method"),
        "rubric": {"sha256": provenance.get("rubric_sha256"), "source": provenance.get("rubric_source")},
        "data": dict(provenance.get("inputs", {})),
        "training": provenance.get("config", {}),
        "metrics": metrics,
        "safety": {"gate": {"release": None, "reason": "not evaluated yet; run `counsel-align evaluate`"}},
        "code": provenance.get("code", {}),
        "versions": provenance.get("versions", {}),
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
    }


def render_training_card(card: dict) -> str:
    """The training card as markdown for people (``README.md``)."""
    code = card["code"]
    made = [("base model", card["base_model"]), ("method", card["method"]), ("weights", card["weights"]),
            ("rubric sha256", card["rubric"]["sha256"]), ("rubric taken from", card["rubric"]["source"]),
            *((f"input `{stage}` sha256", digest) for stage, digest in card["data"].items()),
            ("code commit", code.get("commit")), ("uncommitted changes", code.get("dirty")),
            ("counsel-align", code.get("package"))]
    metric_rows = [(k, v) for k, v in card["metrics"].items() if not isinstance(v, dict | list)]
    return f"""---
base_model: {card['base_model']}
library_name: {'peft' if card['weights'] == 'lora_adapter' else 'transformers'}
tags: [counsel-align, {card['method']}, research-only]
---
# {card['name']}

**A research artifact, not a therapist.** {card['intended_use']}

Release gate: **not evaluated**. This card describes training only; `counsel-align evaluate` runs the red-flag
suite and exports a checkpoint with the release decision.

## How it was made
{_table(made)}

### Training configuration
```json
{json.dumps(card['training'], indent=2, sort_keys=True, default=str)}
```

## Training metrics
{_table(metric_rows)}

## Package versions
{_table(sorted(card['versions'].items()))}

## Limitations
{chr(10).join(f"- {item}" for item in card['limitations'])}
"""


def write_training_card(model_dir: str | Path, card: dict, readme: bool = True) -> None:
    """Write ``model_card.json`` (and ``README.md`` unless the folder's exporter wrote its own) atomically."""
    model_dir = Path(model_dir)
    atomic_write_json(model_dir / CARD_JSON, card)
    if readme:
        atomic_write_text(model_dir / CARD_MD, render_training_card(card))
