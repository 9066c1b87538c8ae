"""Export reward models (safetensors, LoRA merged on request, a provenance model card) and load them back.

``load_reward(path_or_id)`` returns a batched :class:`~rewards.reward_models.scorer.RewardScorer` on the right device,
which TRL's ``GRPOTrainer``/``RLOOTrainer`` accept as a reward function. Only safetensors are read, and remote
code runs only with ``trust_remote_code=True``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from rewards.artifacts import atomic_replace_dir, atomic_write_json, atomic_write_text
from rewards.errors import UserError
from rewards.models import pick_device, resolve_model_path, torch_dtype
from rewards.reward_models.scorer import RewardScorer, head_ids

REWARD_CONFIG = "reward_config.json"
FORMAT = "counsel-align-reward/1"


def export_reward_model(model, tokenizer, out_dir: str | Path, *, base_model: str, weights: Mapping[str, float],
                        max_length: int, merge_lora: bool = False, provenance: Mapping | None = None,
                        metrics: Mapping | None = None, state_dict: Mapping | None = None) -> Path:
    """Save a trained reward model (full, or LoRA adapter / merged) with ``reward_config.json`` and ``README.md``.

    provenance: e.g. ``rubric_sha256``, ``pairs_sha256``, ``run``; metrics: held-out accuracy and baselines.
    state_dict: the weights to write instead of the model's own (ZeRO-3: gathered from the partitions); an adapter
    is then saved as an adapter. One process only: the folder is written next to its destination and renamed
    into place.
    """
    from peft import PeftModel

    out_dir = Path(out_dir)
    is_adapter = isinstance(model, PeftModel)
    if is_adapter and merge_lora and state_dict is None:
        model, is_adapter = model.merge_and_unload(), False
    heads = head_ids(model.config)
    config = {
        "format": FORMAT,
        "kind": "multihead" if len(heads) > 1 else "scalar",
        "heads": heads,
        "weights": {h: float(weights.get(h, 1.0)) for h in heads},
        "base_model": base_model,
        "adapter": is_adapter,
        "max_length": max_length,
        "provenance": dict(provenance or {}),
        "metrics": dict(metrics or {}),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True,
                              **({"state_dict": dict(state_dict)} if state_dict else {}))
        tokenizer.save_pretrained(folder)
        atomic_write_json(folder / REWARD_CONFIG, config)
        atomic_write_text(folder / "README.md", model_card(config))

    return atomic_replace_dir(out_dir, write)


def model_card(config: Mapping) -> str:
    """A Markdown model card with the provenance an RLHF user needs to trust (or not) this reward."""
    prov, metrics = config.get("provenance", {}), config.get("metrics", {})
    heads = ", ".join(f"`{h}` (weight {config['weights'][h]:g})" for h in config["heads"])
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(metrics.items()) if not isinstance(v, dict))
    prov_rows = "\n".join(f"| {k} | `{v}` |" for k, v in sorted(prov.items()))
    weight_line = ("Aggregate reward = weighted mean of the heads; override weights at inference with "
                   "`load_reward(path, weights={...})` or `counsel-align score ... principles.weights.<id>=<w>`."
                   if config["kind"] == "multihead" else "One scalar Bradley–Terry reward (TRL RewardTrainer).")
    storage = ("LoRA adapter; the base model is loaded from `base_model`." if config["adapter"]
               else "Full weights (LoRA merged where one was trained).")
    return f"""---
library_name: transformers
tags: [reward-model, counsel-align, trl]
base_model: {config['base_model']}
---
# counsel-align reward model ({config['kind']})

Scores a counselor's reply to a client message. Trained with counsel-align on judge-built preference pairs.

- Heads: {heads}
- {weight_line}
- Storage: {storage} Weights in safetensors only.
- Max length: {config['max_length']} tokens (longer conversations keep their last tokens).

## Provenance
| field | value |
|---|---|
| base model | `{config['base_model']}` |
{prov_rows}

## Metrics (held-out pairs)
| metric | value |
|---|---|
{rows}

## Use
```python
from rewards import load_reward
reward = load_reward("<this folder>")       # batched TRL reward function
scores = reward(prompts=[[{{"role": "user", "content": "..."}}]], completions=["..."])
```
"""


def _hub_file(path_or_id: str | Path, name: str) -> str | None:
    """A file of a hub repository (None when the repository has no such file); one-line error when unreachable."""
    from transformers.utils import cached_file

    try:
        return cached_file(str(path_or_id), name, _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path_or_id}: not a local reward-model folder and not reachable as a hub id "
                        f"({type(exc).__name__}); check the path") from None


def read_reward_config(path_or_id: str | Path) -> dict:
    """``reward_config.json`` of a local folder or hub repository; {} when there is none."""
    local = Path(path_or_id)
    if local.is_dir():
        file = local / REWARD_CONFIG
        return json.loads(file.read_text(encoding="utf-8")) if file.exists() else {}
    file = _hub_file(path_or_id, REWARD_CONFIG)
    return json.loads(Path(file).read_text(encoding="utf-8")) if file else {}


def _adapter_config(path_or_id: str | Path) -> dict | None:
    local = Path(path_or_id)
    if local.is_dir():
        file = local / "adapter_config.json"
        if not file.exists():
            return None
        if not (local / "adapter_model.safetensors").exists():
            raise UserError(f"{local}: adapter weights are not in safetensors (adapter_model.safetensors); "
                            "only safetensors are loaded — re-save the adapter with safe_serialization=True")
        return json.loads(file.read_text(encoding="utf-8"))
    file = _hub_file(path_or_id, "adapter_config.json")
    return json.loads(Path(file).read_text(encoding="utf-8")) if file else None


def _check_remote_code(path_or_id: str | Path, trust_remote_code: bool) -> None:
    local = Path(path_or_id) / "config.json"
    if trust_remote_code or not local.exists():
        return
    if json.loads(local.read_text(encoding="utf-8")).get("auto_map"):
        raise UserError(f"{path_or_id}: the checkpoint asks to run its own code (config.json auto_map); "
                        "it is not run unless you pass trust_remote_code=True")


def _load_seq_cls(path: str, labels: list[str], dtype: str, trust_remote_code: bool):
    from transformers import AutoModelForSequenceClassification

    kwargs = {"dtype": torch_dtype(dtype), "use_safetensors": True, "trust_remote_code": trust_remote_code,
              "num_labels": len(labels)}
    if len(labels) > 1:
        kwargs.update(id2label=dict(enumerate(labels)), label2id={h: i for i, h in enumerate(labels)})
    try:
        return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot load reward model weights ({first}); only safetensors are loaded, "
                        "and remote code needs trust_remote_code=True") from None


def load_reward(path_or_id: str | Path, trust_remote_code: bool = False, *, device: str = "auto",
                dtype: str = "float32", merge_lora: bool = False, base_model: str | None = None,
                weights: Mapping[str, float] | None = None, batch_size: int = 8,
                max_length: int | None = None) -> RewardScorer:
    """A batched reward function (TRL signature) from a reward-model folder or hub id.

    Handles scalar and multi-head models, full weights or LoRA adapters (``merge_lora`` merges them into the base
    after loading, for faster scoring). ``weights`` overrides the saved head weights of a multi-head model.
    """
    from transformers import AutoTokenizer

    _check_remote_code(path_or_id, trust_remote_code)
    reward_cfg = read_reward_config(path_or_id)
    adapter = _adapter_config(path_or_id)
    heads = list(reward_cfg.get("heads") or ["reward"])
    if adapter is not None:
        from peft import PeftModel

        base = base_model or reward_cfg.get("base_model") or adapter.get("base_model_name_or_path")
        if not base:
            raise UserError(f"{path_or_id}: holds a LoRA adapter but names no base model; pass base_model=...")
        model = _load_seq_cls(resolve_model_path(base), heads, dtype, trust_remote_code)
        model = PeftModel.from_pretrained(model, str(path_or_id))
        if merge_lora:
            model = model.merge_and_unload()
    else:
        model = _load_seq_cls(str(path_or_id), heads, dtype, trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(str(path_or_id), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    scorer = RewardScorer(model.to(pick_device(device)), tokenizer, batch_size=batch_size,
                          max_length=max_length or int(reward_cfg.get("max_length", 1024)),
                          weights=reward_cfg.get("weights"))
    return scorer.with_weights(weights) if weights else scorer
