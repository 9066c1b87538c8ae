"""Every option of every config group and every experiment preset composes, with its option types checked.

In the style of lightning-hydra-template's tests/test_configs.py: a group option that no longer composes (a key the
schema does not have, a value of the wrong type, a stale `defaults:` entry) fails here, not in a user's run.
"""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from recipes._entry import CONFIG_DIR, check_command_options, compose_config, rewrite_deprecated
from recipes.config_schema import SCHEMAS
from recipes.stages import STAGES
from rewards.errors import UserError

GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml"))
                and p.name not in ("accelerate", "deepspeed", "hydra"))  # ZeRO files and Hydra's own settings
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONFIG_DIR / group).glob("*.yaml"))]


def _check_every_stage(cfg) -> None:
    check_command_options(cfg, "pipeline")
    for spec in STAGES.values():
        check_command_options(cfg, spec.cli_name)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(group: str, option: str):
    cfg = compose_config([f"{group}={option}"])
    assert group == "experiment" or OmegaConf.is_dict(cfg[group])
    _check_every_stage(cfg)


def test_the_stage_groups_are_typed_by_their_schema():
    cfg = compose_config([])
    for group in SCHEMAS:
        assert OmegaConf.get_type(cfg[group]) is SCHEMAS[group], group


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_with_each_training_variant(preset: str):
    for variant in (["dpo=full"], ["reward=multihead"], ["dpo=qlora", "reward=qlora"], []):
        _check_every_stage(compose_config([f"experiment={preset}", *variant]))


def test_the_stage_named_groups_select_their_file():
    cfg = compose_config(["reward=full", "dpo=qlora"])
    assert (cfg.reward.peft, cfg.reward.learning_rate, cfg.reward.method) == ("none", 1.0e-5, "reward")
    assert (cfg.dpo.peft, cfg.dpo.dtype, cfg.dpo.bf16) == ("qlora", "bfloat16", True)
    assert compose_config(["reward=multihead"]).reward.method == "reward_multihead"
    assert compose_config([]).grpo.method == "grpo" and compose_config([]).rloo.method == "rloo"


@pytest.mark.parametrize(("old", "new", "command"), [
    ("train=dpo_full", "dpo=full", "dpo"),
    ("train=dpo_qlora", "dpo=qlora", None),
    ("train.beta=0.2", "dpo.beta=0.2", "dpo"),
    ("train.beta=0.2", "dpo.beta=0.2", "pipeline"),
    ("train.beta=0.2", "grpo.beta=0.2", "grpo"),
    ("train.num_generations=2", "rloo.num_generations=2", "rloo"),
    ("train@reward_train=reward_full", "reward=full", "reward"),
    ("train@reward_train=reward_multihead", "reward=multihead", "reward"),
    ("reward_train=reward_qlora", "reward=qlora", "reward"),
    ("reward_train.learning_rate=0.001", "reward.learning_rate=0.001", "reward"),
    ("++train.warmup_ratio=0.1", "++dpo.warmup_ratio=0.1", "dpo"),
])
def test_old_spellings_are_rewritten_with_a_notice(old: str, new: str, command, capsys):
    assert rewrite_deprecated([old], command) == [new]
    err = capsys.readouterr().err
    assert f"[counsel-align] deprecated: {old} -> {new} (the old spelling goes in the next release)" in err or not err
    assert rewrite_deprecated([old], command) == [new]
    assert "deprecated" not in capsys.readouterr().err  # once per spelling


def test_old_spellings_compose_to_the_same_config():
    old = compose_config(["train=dpo_full", "train.beta=0.3", "train@reward_train=reward_full",
                          "reward_train.max_steps=3"], command="dpo")
    new = compose_config(["dpo=full", "dpo.beta=0.3", "reward=full", "reward.max_steps=3"])
    assert old == new
    assert compose_config(["train.beta=0.3"], command="grpo").grpo.beta == 0.3


@pytest.mark.parametrize(("override", "message"), [
    ("dpo.learning_rate=abc", "config: dpo.learning_rate='abc' is not a number; fix the value"),
    ("reward.max_steps=6.5", "config: reward.max_steps=6.5 is not an integer"),
    ("grpo.gradient_checkpointing=maybe", "config: grpo.gradient_checkpointing='maybe' is not true or false"),
    ("dpo.lerning_rate=1", "config: unknown key 'dpo.lerning_rate'"),
    ("sft.data.max_examples=many", "config: sft.data.max_examples='many' is not an integer"),
])
def test_a_wrong_type_or_key_fails_at_compose_in_one_line(override: str, message: str):
    with pytest.raises(UserError) as info:
        compose_config([override])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_yaml_files_state_only_what_differs_from_the_schema():
    """Defaults live once, in recipes/config_schema.py: a YAML restating a default is a second place to edit."""
    for group, schema in SCHEMAS.items():
        defaults = OmegaConf.structured(schema)
        for path in (CONFIG_DIR / group).glob("*.yaml"):
            data = OmegaConf.load(path)
            parent = data.get("defaults", ["schema"])[0]
            if parent != "schema":
                continue  # a variant of another file may restate what that file changed
            same = [k for k, v in data.items() if k != "defaults" and not OmegaConf.is_dict(v)
                    and k in defaults and defaults[k] == v and k != "peft" and k != "method"]
            assert not same, f"{Path(path).relative_to(CONFIG_DIR)} restates schema defaults {same}"
