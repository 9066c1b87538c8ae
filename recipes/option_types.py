"""Types of the numeric and boolean options of the untyped sections, checked when a command starts.

The training groups (dpo, reward, grpo, rloo, sft, kto) are typed by their dataclasses in ``recipes.config_schema``
and checked by Hydra when it composes. The other sections are still plain YAML: Hydra accepts
``generate.batch_size=abc`` as the string 'abc', and without this check the mistake surfaces only when the stage that
reads it starts, after earlier stages have spent their time. Checked for every stage the command will run.
Keys are dotted paths; ``list[*].field`` names a field of every item of a list and ``section.*`` every value of a
mapping. A key missing from the composed config is skipped (configs of one group differ in their keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from rewards.errors import UserError

NUMBER, INTEGER, BOOLEAN = "number", "integer", "boolean"
NULLABLE = "|null"

# Section (a top-level config key, as in StageSpec.config_keys) -> {key below it: type}.
OPTION_TYPES: dict[str, dict[str, str]] = {
    "seed": {"": INTEGER},
    "model": {"trust_remote_code": BOOLEAN},
    "data": {"test_fraction": NUMBER, "max_train_prompts": INTEGER + NULLABLE, "max_test_prompts": INTEGER + NULLABLE},
    "generate": {"batch_size": INTEGER, "max_new_tokens": INTEGER, "endpoint_batch_size": INTEGER,
                 "max_failure_fraction": NUMBER, "pool[*].temperature": NUMBER, "pool[*].top_p": NUMBER,
                 "pool[*].num_samples": INTEGER},
    "judge": {"batch_size": INTEGER, "concurrency": INTEGER, "requests_per_minute": NUMBER + NULLABLE,
              "max_retries": INTEGER, "timeout": NUMBER, "temperature": NUMBER, "retry_wait": NUMBER,
              "max_failure_fraction": NUMBER, "reuse_prefix": BOOLEAN,
              "price_per_1k_input_tokens": NUMBER + NULLABLE, "price_per_1k_output_tokens": NUMBER + NULLABLE},
    "principles": {"weights.*": NUMBER},
    "pairs": {"margin": NUMBER, "safety_threshold": NUMBER + NULLABLE, "duplicate_threshold": NUMBER + NULLABLE,
              "max_length_ratio": NUMBER + NULLABLE},
    "evaluate": {"max_new_tokens": INTEGER, "batch_size": INTEGER, "tie_band": NUMBER, "bootstrap_resamples": INTEGER,
                 "confidence": NUMBER, "principle_margin": NUMBER, "redflag_limit": INTEGER + NULLABLE,
                 "harm_threshold": NUMBER + NULLABLE, "gate_tolerance": NUMBER},
    "agreement": {"min_score_gap": NUMBER, "n_pairs": INTEGER + NULLABLE, "max_pairs_per_question": INTEGER + NULLABLE,
                  "tie_margin": NUMBER, "max_chars": INTEGER + NULLABLE, "batch_size": INTEGER},
    "simulate": {"n_clients": INTEGER + NULLABLE, "temperature": NUMBER, "top_p": NUMBER, "max_new_tokens": INTEGER,
                 "batch_size": INTEGER, "duplicate_threshold": NUMBER},
    "reward_eval": {"counselchat_max_pairs": INTEGER + NULLABLE, "loglik_baseline": BOOLEAN, "batch_size": INTEGER},
}

_MISSING = object()


def config_values(cfg: DictConfig, key: str) -> Iterator[tuple[str, Any]]:
    """``(concrete key, value)`` for a dotted key with ``[*]`` (every list item) and ``.*`` (every mapping value)."""
    yield from _walk(cfg, key.split(".") if key else [], "")


def _walk(node: Any, parts: list[str], prefix: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield prefix, node
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, DictConfig):
            for name in node:
                yield from _walk(node[name], rest, f"{prefix}.{name}")
        return
    many = head.endswith("[*]")
    name = head.removesuffix("[*]")
    if not isinstance(node, DictConfig) or name not in node:
        return
    child, path = node[name], f"{prefix}.{name}" if prefix else name
    if not many:
        yield from _walk(child, rest, path)
    elif isinstance(child, ListConfig):
        for index, item in enumerate(child):
            yield from _walk(item, rest, f"{path}[{index}]")


def _fits(value: Any, kind: str) -> bool:
    base, nullable = kind.removesuffix(NULLABLE), kind.endswith(NULLABLE)
    if value is None:
        return nullable
    if isinstance(value, bool):  # bool is an int subclass: True is no learning rate
        return base == BOOLEAN
    if base == NUMBER:
        return isinstance(value, int | float)
    if base == INTEGER:
        return isinstance(value, int)
    return False


def option_errors(cfg: DictConfig, sections: Iterable[str]) -> list[str]:
    """One message per option of ``sections`` whose value has the wrong type."""
    errors = []
    for section in dict.fromkeys(sections):
        for key, kind in OPTION_TYPES.get(section, {}).items():
            pattern = f"{section}.{key}" if key else section
            for name, value in config_values(cfg, pattern):
                if not _fits(value, kind):
                    expected = {NUMBER: "a number", INTEGER: "an integer", BOOLEAN: "true or false"}[
                        kind.removesuffix(NULLABLE)] + (" or null" if kind.endswith(NULLABLE) else "")
                    errors.append(f"{name}={_show(value)} is not {expected}")
    return errors


def _show(value: Any) -> str:
    return repr(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)


def check_options(cfg: DictConfig, sections: Iterable[str]) -> None:
    """Refuse (one line, before any work) when an option of ``sections`` has the wrong type."""
    errors = option_errors(cfg, sections)
    if errors:
        raise UserError(f"config: {'; '.join(errors)}; fix the value on the command line or in the config file")
