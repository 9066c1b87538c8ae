"""Shared benchmark helpers: the model to measure on, a fixed preference batch, and result files."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from rewards.artifacts import atomic_write_json
from rewards.versions import package_versions

RESULTS = Path(__file__).resolve().parent / "results"


def bench_model():
    """SmolLM2-135M when the embedded package is installed, else a random model of the same shape."""
    from rewards.models import load_tokenizer, resolve_model_path

    try:
        path = resolve_model_path("embedded:smollm2-135m-instruct")
        return Path(path), load_tokenizer(path), "SmolLM2-135M-Instruct"
    except Exception:  # noqa: BLE001 - fall back to a same-shaped random model
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        from tests.conftest import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                             num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
        folder = Path("/tmp/counsel-align-bench-model")
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder, AutoTokenizer.from_pretrained(folder), "random SmolLM2-135M-shaped Llama"


def preference_batch(tokenizer, pairs: int, tokens: int):
    """A fixed conversational preference dataset whose rows are about ``tokens`` tokens long."""
    from datasets import Dataset

    filler = "I hear how tiring this has been, and I wonder what support would feel right for you now. "
    prompt_words = "I have been anxious at work for months and I cannot sleep well anymore. "
    rows = []
    for index in range(pairs):
        reply = (filler * 40)[: tokens * 3]
        rows.append({
            "prompt": [{"role": "user", "content": prompt_words * 3 + f"Case {index}."}],
            "chosen": [{"role": "assistant", "content": reply}],
            "rejected": [{"role": "assistant", "content": reply[: len(reply) * 2 // 3]}],
        })
    return Dataset.from_list(rows)


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()}


def write_result(name: str, figures: dict, quick: bool = False) -> None:
    """``results/<name>.json``; a ``--quick`` run writes ``results/quick/<name>.json`` and leaves full figures alone."""
    folder = RESULTS / "quick" if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / f"{name}.json", {
        "name": name, "mode": "quick" if quick else "full", "figures": figures, "machine": machine(),
        "versions": package_versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    })


def load_results() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
