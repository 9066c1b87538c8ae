"""User errors print one line naming the problem and exit non-zero, without a traceback."""

import os
import subprocess
import sys

import yaml

from tests.conftest import PROJECT_ROOT


def _run(*args: str, cwd=PROJECT_ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recipes.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line
            and not line.startswith("  ")]


def test_misspelt_key_is_one_line_naming_it():
    result = _run("pipeline", "model.nme=x")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1 and "model.nme" in lines[0]


def test_rubric_with_missing_field_is_one_line_naming_file_and_field(tmp_path, rubric):
    data = rubric.model_dump(mode="json")
    del data["principles"][0]["weight"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = _run("judge", f"principles.path={path}", f"output_root={tmp_path}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1 and str(path) in lines[0] and "principles.0.weight" in lines[0]


def test_unknown_stage_and_config_group_option():
    assert _run("trian").returncode == 2
    result = _run("dpo", "dpo=fulll")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1 and "dpo/fulll" in lines[0] and "full lora qlora" in lines[0]


def test_old_spellings_work_with_one_deprecation_line_each():
    result = _run("reward", "reward_train=reward_full", "train.beta=0.2", "--cfg")
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["reward"]["peft"] == "none" and cfg["dpo"]["beta"] == 0.2
    notices = [line for line in result.stderr.splitlines() if "deprecated" in line]
    assert notices == ["[counsel-align] deprecated: reward_train=reward_full -> reward=full (the old spelling goes in "
                       "the next release)", "[counsel-align] deprecated: train.beta=0.2 -> dpo.beta=0.2 (the old "
                       "spelling goes in the next release)"]


def test_dpo_qlora_without_a_gpu_fails_before_any_work(tmp_path):
    result = _run("dpo", "dpo=qlora", f"output_root={tmp_path}", env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1 and "dpo.peft=qlora" in lines[0] and "dpo=lora" in lines[0]
    assert [p.name for p in tmp_path.rglob("*") if ".hydra" not in p.parts] == ["quickstart"]  # only Hydra's record


def test_downstream_stage_without_inputs_says_what_to_run(tmp_path):
    result = _run("pairs", f"output_root={tmp_path}")
    assert result.returncode == 2 and "run `counsel-align generate` first" in result.stderr


def test_cfg_prints_the_composed_config():
    result = _run("pipeline", "--cfg")
    assert result.returncode == 0
    cfg = yaml.safe_load(result.stdout)
    assert cfg["model"]["name_or_path"] == "embedded:smollm2-135m-instruct" and cfg["run"] == "quickstart"


def test_a_mistyped_option_is_refused_before_any_stage_runs(tmp_path):
    result = _run("pipeline", "dpo.learning_rate=abc", f"output_root={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1 and "dpo.learning_rate='abc' is not a number" in lines[0]
    assert not list(tmp_path.iterdir())  # no stage started


def test_a_weight_for_an_unknown_principle_is_refused_at_start(tmp_path):
    result = _run("pairs", "principles.weights.clartiy=0.5", f"output_root={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1 and "clartiy" in lines[0] and "clarity" in lines[0]
