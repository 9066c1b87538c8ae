"""The training options' defaults live once (rewards/training/options.py): a library caller passing a partial dict
gets them, an unknown option is one clear error, and the composed config's sections pass through unchanged."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from rewards.errors import UserError
from rewards.training.options import STAGE_OPTIONS, DPOOptions, KTOOptions, options_dict
from tests.conftest import PROJECT_ROOT


def test_build_lora_config_of_an_empty_dict_is_the_schemas_lora():
    from rewards.training.arguments import build_lora_config

    lora = build_lora_config({}, task_type="CAUSAL_LM")  # peft: lora is the default (it was "none" here)
    assert lora is not None
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules) == (16, 32, 0.0, "all-linear")
    partial = build_lora_config({"lora": {"r": 4}}, task_type="CAUSAL_LM")
    assert (partial.r, partial.lora_alpha) == (4, 32)  # a nested section given in part keeps the other defaults
    assert build_lora_config({"peft": "none"}, task_type="CAUSAL_LM") is None


def test_training_arguments_of_a_partial_dict_take_our_defaults_not_trls(tmp_path):
    from trl import DPOConfig

    from rewards.training.arguments import training_arguments

    args = training_arguments(DPOConfig, {"beta": 0.3}, tmp_path, [], seed=0)
    defaults = DPOOptions()
    assert (args.learning_rate, args.per_device_train_batch_size, args.logging_steps, args.save_steps,
            args.save_total_limit) == (defaults.learning_rate, defaults.per_device_train_batch_size,
                                       defaults.logging_steps, defaults.save_steps, defaults.save_total_limit)


@pytest.mark.parametrize("stage", sorted(STAGE_OPTIONS))
def test_the_composed_section_is_already_complete(stage):
    from recipes._entry import compose_config

    cfg = compose_config([])
    section = OmegaConf.to_container(cfg[stage], resolve=True)
    assert options_dict(STAGE_OPTIONS[stage], section, stage) == section
    assert options_dict(STAGE_OPTIONS[stage], {}, stage) == OmegaConf.to_container(
        OmegaConf.structured(STAGE_OPTIONS[stage]), resolve=True)


def test_nested_data_options_are_completed():
    data = options_dict(KTOOptions, {"data": {"min_score": 2}}, "kto")["data"]
    assert (data["min_score"], data["split"], data["undesirable_max_score"]) == (2, "train", 0)


def test_an_unknown_option_is_one_line_naming_it():
    with pytest.raises(UserError, match=r"^dpo\.lroa: not an option of DPOOptions; did you mean 'lora'\?") as error:
        options_dict(DPOOptions, {"lroa": {"r": 4}}, "dpo")
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match=r"^kto\.data\.splt: "):
        options_dict(KTOOptions, {"data": {"splt": "train"}}, "kto")


def test_a_trainer_refuses_an_unknown_option_before_loading_anything(tmp_path):
    from rewards.training.policy import build_dpo_trainer

    with pytest.raises(UserError, match=r"^dpo\.betta: .*did you mean 'beta'"):
        build_dpo_trainer(str(tmp_path / "no-model-here"), None, None, {"betta": 0.2}, tmp_path, [])


def test_no_training_option_is_read_with_a_second_default():
    """Option reads are ``train_cfg[key]`` after ``options_dict``; ``.get(key, default)`` would be a second default."""
    sources = [*sorted((PROJECT_ROOT / "rewards" / "training").glob("*.py")),
               *sorted((PROJECT_ROOT / "rewards" / "reward_models").glob("*.py"))]
    found = [f"{path.name}:{line_no}: {line.strip()}" for path in sources
             for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\b(train_cfg|lora)\.get\(", line)]
    assert not found, found
