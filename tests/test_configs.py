"""Every option of every config group and every experiment preset composes, with its option types checked.

In the style of lightning-hydra-template's tests/test_configs.py: a group option that no longer composes (a key the
schema does not have, a value of the wrong type, a stale `defaults:` entry) fails here, not in a user's run.
"""

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from recipes._entry import CONFIG_DIR, check_command_options, compose_config, rewrite_deprecated
from recipes.config_schema import (
    JUDGE_SCHEMAS,
    SCHEMAS,
    CounselAlignConfig,
    LocalJudgeOptions,
    OpenAICompatibleJudgeOptions,
)
from recipes.stages import STAGES
from rewards.errors import UserError
from tests.conftest import PROJECT_ROOT

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


def test_every_section_is_typed_by_its_schema():
    cfg = compose_config([])
    assert OmegaConf.get_type(cfg) is CounselAlignConfig
    for name, kind in typing.get_type_hints(CounselAlignConfig).items():
        if dataclasses.is_dataclass(kind):
            assert OmegaConf.get_type(cfg[name]) is kind, name
    assert OmegaConf.get_type(cfg.judge) is LocalJudgeOptions
    assert OmegaConf.get_type(compose_config(["judge=openai_compatible"]).judge) is OpenAICompatibleJudgeOptions
    assert OmegaConf.get_type(compose_config(["judge=embedded_gemma3_270m"]).judge) is LocalJudgeOptions


def test_every_key_is_a_field_of_a_schema():
    """Nothing in the composed config is untyped: each section's keys are exactly its dataclass's fields."""
    cfg = compose_config(["pairs.human.sources=[{path: a.csv}]", "judge=openai_compatible"])

    def check(node, path: str) -> None:
        kind = OmegaConf.get_type(node)
        assert dataclasses.is_dataclass(kind), f"{path or 'the root'} is untyped"
        assert list(node) == [f.name for f in dataclasses.fields(kind)], path
        for key in node:
            child = node._get_node(key)
            if node[key] is None:
                continue
            if OmegaConf.is_dict(child) and key not in ("weights", "columns", "architecture"):  # typed mappings
                check(child, f"{path}.{key}".lstrip("."))
            elif OmegaConf.is_list(child):
                for index, item in enumerate(child):
                    if OmegaConf.is_dict(item):
                        check(item, f"{path}.{key}[{index}]".lstrip("."))

    check(cfg, "")


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
    # the sections of configs/config.yaml and the other groups, typed by CounselAlignConfig and the group schemas
    ("generate.batchsize=8", "config: unknown key 'generate.batchsize'"),
    ("generate.batch_size=abc", "config: generate.batch_size='abc' is not an integer"),
    ("generate.pool=[{name: a, model: m, num_samples: two}]",
     "config: generate.pool[*].num_samples='two' is not an integer"),
    ("generate.pool=[{name: a, model: m, tempreature: 1}]", "config: unknown key 'generate.pool[*].tempreature'"),
    ("generate.pool=[{name: a}]", "config: generate.pool[0].model not set"),
    ("pairs.margn=0.1", "config: unknown key 'pairs.margn'"),
    ("pairs.safety_threshold=low", "config: pairs.safety_threshold='low' is not a number"),
    ("pairs.human.sources=[{path: a.csv, wieght: 2}]", "config: unknown key 'pairs.human.sources[*].wieght'"),
    ("pairs.human.sources=[{path: a.csv, weight: heavy}]",
     "config: pairs.human.sources[*].weight='heavy' is not a number"),
    ("pairs.human.sources=[{name: a}]", "config: pairs.human.sources[0].path not set"),
    ("evaluate.gate_tolerance=abc", "config: evaluate.gate_tolerance='abc' is not a number"),
    ("evaluate.redflag_limt=3", "config: unknown key 'evaluate.redflag_limt'"),
    ("judge.batchsize=2", "config: unknown key 'judge.batchsize'"),
    ("judge.reuse_prefix=maybe", "config: judge.reuse_prefix='maybe' is not true or false"),
    ("calibration.max_pairs=few", "config: calibration.max_pairs='few' is not an integer"),
    ("seed=abc", "config: seed='abc' is not an integer"),
    ("model.trust_remote_code=maybe", "config: model.trust_remote_code='maybe' is not true or false"),
    ("data.max_train_prompts=many", "config: data.max_train_prompts='many' is not an integer"),
    ("agreement.n_pairs=all", "config: agreement.n_pairs='all' is not an integer"),
    ("simulate.temperature=hot", "config: simulate.temperature='hot' is not a number"),
    ("distributed.num_processes=eight", "config: distributed.num_processes='eight' is not an integer"),
    ("principles.weights.clarity=high", "config: principles.weights.clarity='high' is not a number"),
])
def test_a_wrong_type_or_key_fails_at_compose_in_one_line(override: str, message: str):
    with pytest.raises(UserError) as info:
        compose_config([override])
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize(("override", "message"), [
    ("threads=abc", "config: threads='abc' is not auto or a positive integer"),
    ("threads=0", "config: threads=0 is not auto or a positive integer"),
    ("resume=maybe", "config: resume='maybe' is not auto, true or false"),
])
def test_options_the_schema_cannot_type_are_checked_when_a_command_starts(override: str, message: str):
    cfg = compose_config([override])  # `auto` or a number: no scalar union in OmegaConf
    for command in ("pipeline", "dpo", "plan"):
        with pytest.raises(UserError) as info:
            check_command_options(cfg, command)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
    for good in (["threads=2", "resume=false"], ["threads=auto", "resume=true"], []):
        check_command_options(compose_config(good), "pipeline")


def test_mappings_and_lists_are_given_whole_on_the_command_line():
    cfg = compose_config(["calibration.columns={prompt: q, response: a, score: s}",
                          "model.architecture={hidden_size: 8}", "data.topics=[anxiety,grief]",
                          "pairs.human.sources=[{path: a.csv, columns: {prompt: q}}]",
                          "generate.pool=[{name: api, model: m, endpoint: {base_url: 'http://h/v1', concurrency: 2}}]"])
    assert dict(cfg.calibration.columns) == {"prompt": "q", "response": "a", "score": "s"}
    assert cfg.model.architecture.hidden_size == 8 and list(cfg.data.topics) == ["anxiety", "grief"]
    assert dict(cfg.pairs.human.sources[0].columns) == {"prompt": "q"} and cfg.pairs.human.sources[0].weight == 1.0
    endpoint = cfg.generate.pool[0].endpoint
    assert (endpoint.concurrency, endpoint.max_retries, cfg.generate.pool[0].num_samples) == (2, 5, 1)


def test_judge_options_differ_by_backend():
    with pytest.raises(UserError, match=r"^config: judge.timeout='abc' is not a number"):
        compose_config(["judge=openai_compatible", "judge.timeout=abc"])
    with pytest.raises(UserError, match=r"^config: unknown key 'judge.reuse_prefix'"):
        compose_config(["judge=openai_compatible", "judge.reuse_prefix=true"])  # a local judge's option
    with pytest.raises(UserError, match=r"^config: unknown key 'judge.timeout'"):
        compose_config(["judge.timeout=5"])  # a remote judge's option
    with pytest.raises(UserError, match=r"^config: judge.backend=openai_compatible does not fit .* judge=openai_comp"):
        check_command_options(compose_config(["judge.backend=openai_compatible"]), "judge")  # local options


def test_interpolations_reach_the_typed_sections():
    cfg = compose_config(["model.name_or_path=some/model", "model.dtype=bfloat16", "agreement.format=pairs"])
    assert (cfg.judge.model, cfg.judge.dtype) == ("some/model", "bfloat16")
    assert [m.model for m in cfg.generate.pool] == ["some/model", "some/model"] and cfg.simulate.model == "some/model"
    assert cfg.calibration.format == "pairs" and cfg.calibration.columns == cfg.agreement.columns
    remote = compose_config(["judge=openai_compatible", "output_root=/o"]).judge
    assert remote.cache_path == "/o/.cache/judgments.sqlite"


@pytest.mark.parametrize(("args", "expected"), [
    (["generate.batch_size=abc"], "generate.batch_size='abc' is not an integer"),
    (["judge=openai_compatible", "judge.timout=5"], "unknown key 'judge.timout'"),
])
def test_the_cli_refuses_a_bad_option_in_one_line_before_any_stage(tmp_path, args, expected):
    result = subprocess.run([sys.executable, "-m", "recipes.cli", "pipeline", *args, f"output_root={tmp_path}"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  ")]
    assert lines == [f"counsel-align pipeline: error: config: {expected}" + lines[0].split(expected, 1)[1]], lines
    assert not list(tmp_path.iterdir())  # no stage started


def _restated(data: dict, defaults: dict, exempt: tuple[str, ...] = ("peft", "method", "backend")) -> list[str]:
    """Keys of ``data`` (recursively, unresolved) whose value equals the schema default beside them."""
    same = []
    for key, value in data.items():
        if key == "defaults" or key in exempt or key not in defaults:
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict) and value:
            same += [f"{key}.{inner}" for inner in _restated(value, defaults[key], ())]
        elif value == defaults[key]:
            same.append(key)
    return same


def _plain(config) -> dict:
    return OmegaConf.to_container(config, resolve=False)


def test_yaml_files_state_only_what_differs_from_the_schema():
    """Defaults live once, in recipes/config_schema.py: a YAML restating a default is a second place to edit."""
    schemas = [(group, "schema", schema) for group, schema in SCHEMAS.items()]
    schemas += [("judge", name, schema) for name, schema in JUDGE_SCHEMAS.items()]
    for group, name, schema in schemas:
        defaults = _plain(OmegaConf.structured(schema))
        for path in (CONFIG_DIR / group).glob("*.yaml"):
            data = _plain(OmegaConf.load(path))
            parent = data.get("defaults", [name])[0]
            if parent != name:
                continue  # a variant of another file (or of another schema) may restate what that file changed
            same = _restated(data, defaults)
            assert not same, f"{Path(path).relative_to(CONFIG_DIR)} restates schema defaults {same}"
    root = OmegaConf.load(CONFIG_DIR / "config.yaml")
    assert root.defaults[0] == "counsel_align"
    assert not _restated(_plain(root), _plain(OmegaConf.structured(CounselAlignConfig)), ())
