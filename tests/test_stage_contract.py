"""The stage contract: one registry, every input file in the fingerprint, provenance, options checked at start."""

import json

import pytest

from recipes import cli, generate
from recipes._entry import check_command_options, compose_config, run_stage
from recipes.stages import STAGES, pipeline_names, stages_of_command, upstream
from rewards.errors import UserError
from tests.conftest import tiny_overrides


def _write_prompts(folder, texts: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    rows = [{"id": f"p-{i:02d}", "text": text, "topic": "sleep", "stage_of_change": "contemplation", "risk": "low"}
            for i, text in enumerate(texts)]
    (folder / "sleep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


TEXTS = [f"Prompt number {i}: I keep waking at four and cannot get back to sleep." for i in range(8)]


def test_registry_drives_the_cli_and_names_every_stage_once():
    assert cli.STAGES == (*(STAGES[name].cli_name for name in pipeline_names()), "pipeline")
    assert pipeline_names() == ("sft", "generate", "calibrate", "judge", "probes", "pairs", "reward", "reward_eval",
                                "dpo", "evaluate", "report")
    for spec in STAGES.values():
        assert set(spec.input_stages) <= set(STAGES), spec.name
        assert spec.in_pipeline or cli.COMMANDS[spec.cli_name][0] == spec.module
    assert upstream("report") == ("generate", "calibrate", "judge", "probes", "pairs", "reward", "dpo", "evaluate")
    assert [s.name for s in stages_of_command("simulate-clients")] == ["simulate"]


def test_editing_a_prompt_file_reruns_generate(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts"
    _write_prompts(prompts, TEXTS)
    cfg = compose_config([*tiny_overrides(tiny_model_dir, tmp_path), f"data.prompts={prompts}"])
    first = generate.run(cfg)
    assert first["input_files"] == {str(prompts): first["input_files"][str(prompts)]}
    assert generate.run(cfg)["fingerprint"] == first["fingerprint"]  # unchanged: skipped
    _write_prompts(prompts, [TEXTS[0].replace("four", "five"), *TEXTS[1:]])
    capsys.readouterr()
    second = generate.run(cfg)
    assert "generate: running" in capsys.readouterr().out
    assert second["fingerprint"] != first["fingerprint"]
    assert second["input_files"][str(prompts)] != first["input_files"][str(prompts)]


def test_a_prompt_folder_with_no_prompts_is_refused_naming_the_key(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "empty.jsonl").write_text("\n")
    assert generate.main([*tiny_overrides(tiny_model_dir, tmp_path), f"data.prompts={prompts}"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "data.prompts" in error and str(prompts) in error
    assert not (tmp_path / "t" / "generate" / "manifest.json").exists()


def test_manifest_records_code_version_and_inherits_the_rubric_hash(tmp_path):
    overrides = [f"output_root={tmp_path}", "run=r"]
    cfg = compose_config(overrides)
    judge = run_stage(cfg, "judge", lambda ctx: {}, inputs=[])
    assert len(judge["rubric_sha256"]) == 64 and "commit" in judge["code_version"]
    pairs = run_stage(cfg, "pairs", lambda ctx: {}, inputs=["judge"], uses_rubric=False)
    assert pairs["rubric_sha256"] == judge["rubric_sha256"]
    assert pairs["code_version"] == judge["code_version"]


def test_an_unregistered_stage_needs_its_config_keys():
    with pytest.raises(KeyError, match="recipes/stages.py"):
        run_stage(compose_config([]), "nosuchstage", lambda ctx: {})


def test_option_types_are_checked_for_the_stages_a_command_runs():
    with pytest.raises(UserError, match=r"^config: dpo.learning_rate='abc' is not a number; fix"):
        compose_config(["dpo.learning_rate=abc"])  # typed groups (recipes/config_schema.py) fail when composed
    with pytest.raises(UserError, match=r"^config: reward.max_steps=6.5 is not an integer"):
        compose_config(["reward.max_steps=6.5"])
    with pytest.raises(UserError, match=r"^config: pairs.margin=null is not set \(it cannot be null\)"):
        compose_config(["pairs.margin=null"])  # every section is typed (CounselAlignConfig), not only the groups
    with pytest.raises(UserError, match=r"^config: principles.weights.clarity='high' is not a number"):
        compose_config(["principles.weights.clarity=high"])
    with pytest.raises(UserError, match=r"^config: generate.pool\[\*\].num_samples='two' is not an integer"):
        compose_config(["generate.pool=[{name: a, model: m, num_samples: two}]"])
    good = compose_config([])
    for command in ("pipeline", *(spec.cli_name for spec in STAGES.values())):
        check_command_options(good, command)


def test_weights_override_by_principle_id_works_as_documented():
    cfg = compose_config(["principles.weights.clarity=0.5"])
    assert cfg.principles.weights.clarity == 0.5
    from recipes._entry import check_command_options

    check_command_options(cfg, "pairs")
    with pytest.raises(UserError, match="clartiy"):
        check_command_options(compose_config(["principles.weights.clartiy=0.5"]), "pairs")


def test_a_comma_value_does_not_suggest_multirun():
    with pytest.raises(UserError) as raised:
        compose_config(["model.name_or_path=a,b"])
    message = str(raised.value)
    assert "multirun" not in message and "model.name_or_path=[a,b]" in message and "\n" not in message


def test_the_135m_caveat_only_for_the_embedded_judge():
    from rewards.reporting.report import reading_note

    assert "135M" in reading_note({"backend": "local", "model": "embedded:smollm2-135m-instruct"}, 8)
    note = reading_note({"backend": "openai_compatible", "model": "gpt-4o"}, 8)
    assert "135M" not in note and "gpt-4o" in note
