"""Export/load of reward models (same scores, safetensors only, no remote code), QLoRA on CPU, and the exported
reward model driving 2-step GRPO and RLOO runs on a tiny policy."""

import json

import pytest
import torch

from rewards.artifacts import atomic_write_json, atomic_write_jsonl
from rewards.errors import UserError
from tests.conftest import count_reward_calls

PROMPTS = [[{"role": "user", "content": "I feel anxious and I cannot sleep at night."}],
           [{"role": "user", "content": "My partner and I argue about money and I feel alone."}]]
REPLIES = ["That sounds really hard. What goes through your mind?", "Sleep more."]


def lora_reward_model(model_dir, tokenizer):
    """A scalar LoRA reward model with non-trivial adapter weights (so merging changes the stored weights)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, use_safetensors=True)
    base.config.pad_token_id = tokenizer.pad_token_id
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    from rewards.reward_models.io import export_reward_model
    from rewards.reward_models.scorer import RewardScorer

    model = lora_reward_model(tiny_model_dir, tiny_tokenizer)
    before = RewardScorer(model, tiny_tokenizer).score(PROMPTS, REPLIES)
    root = tmp_path_factory.mktemp("rm")
    kwargs = {"base_model": str(tiny_model_dir), "weights": {}, "max_length": 256,
              "provenance": {"rubric_sha256": "a" * 64, "pairs_sha256": "b" * 64}, "metrics": {"rm_accuracy": 0.5}}
    adapter = export_reward_model(model, tiny_tokenizer, root / "run" / "reward" / "model", **kwargs)
    merged = export_reward_model(lora_reward_model(tiny_model_dir, tiny_tokenizer), tiny_tokenizer,
                                 root / "merged", merge_lora=True, **kwargs)
    return {"before": before, "adapter": adapter, "merged": merged, "root": root}


def test_reloaded_reward_gives_the_same_scores(exported):
    from rewards import load_reward

    assert (exported["adapter"] / "adapter_model.safetensors").exists()
    assert (exported["merged"] / "model.safetensors").exists()
    assert not (exported["merged"] / "adapter_config.json").exists()
    assert exported["before"][0] != pytest.approx(exported["before"][1], abs=1e-3)  # a real, non-constant reward
    for folder, merge in ((exported["adapter"], False), (exported["adapter"], True), (exported["merged"], False)):
        scores = load_reward(folder, device="cpu", merge_lora=merge)(PROMPTS, REPLIES)
        assert scores == pytest.approx(exported["before"], abs=1e-4), folder
    card = (exported["merged"] / "README.md").read_text()
    assert "a" * 64 in card and "b" * 64 in card and "rm_accuracy" in card
    config = json.loads((exported["merged"] / "reward_config.json").read_text())
    assert config["kind"] == "scalar" and config["adapter"] is False


def test_only_safetensors_and_no_remote_code(exported, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from rewards.reward_models.io import load_reward

    pickled = tmp_path / "pickled"
    shutil.copytree(exported["merged"], pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(UserError, match="safetensors"):
        load_reward(pickled, device="cpu")
    remote = tmp_path / "remote"
    shutil.copytree(exported["merged"], remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "evil.Model"}
    (remote / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="trust_remote_code=True"):
        load_reward(remote, device="cpu")


def test_qlora_on_cpu_is_a_one_line_error(monkeypatch, tiny_model_dir):
    from rewards.reward_models.training import load_score_model
    from rewards.training.arguments import qlora_quantization_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="reward.peft=qlora: QLoRA needs a CUDA GPU") as info:
        load_score_model(str(tiny_model_dir), {"peft": "qlora"}, pad_token_id=0)
    assert "\n" not in str(info.value)
    assert qlora_quantization_config({"peft": "lora"}, "reward") is None
    with pytest.raises(UserError, match="reward.peft"):
        load_score_model(str(tiny_model_dir), {"peft": "qlroa"}, pad_token_id=0)


def fake_finished_run(root, run: str) -> None:
    """generate + reward stages as finished manifests: the prompts and the exported reward model."""
    prompts = [{"id": f"p{i}", "text": text[0]["content"], "topic": "t", "split": "train"}
               for i, text in enumerate(PROMPTS)]
    atomic_write_jsonl(root / run / "generate" / "prompts.jsonl", prompts)
    for stage in ("generate", "reward"):
        atomic_write_json(root / run / stage / "manifest.json", {"stage": stage, "outputs_sha256": stage * 8})


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_online_rl_runs_two_steps_with_the_exported_reward(method, exported, tiny_model_dir, monkeypatch):
    from recipes.grpo import main as grpo_main
    from recipes.rloo import main as rloo_main

    fake_finished_run(exported["root"], "run")
    calls = count_reward_calls(monkeypatch)
    main = grpo_main if method == "grpo" else rloo_main
    overrides = [f"model.name_or_path={tiny_model_dir}", f"output_root={exported['root']}", "run=run",
                 "device=cpu", "wandb.mode=disabled", f"{method}.max_steps=2", f"{method}.num_generations=2",
                 f"{method}.per_device_train_batch_size=2", f"{method}.max_completion_length=8",
                 f"{method}.save_steps=1000"]
    assert main(overrides) == 0
    stage = exported["root"] / "run" / method
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["n_logged_steps"] == 2 and metrics["use_vllm"] is False
    assert sum(calls) >= 4 and all(n % 2 == 0 for n in calls)  # 2 completions per prompt, scored in batches
    assert (stage / "model" / "adapter_model.safetensors").exists()
    assert json.loads((stage / "manifest.json").read_text())["config"][method]["method"] == method
    card = json.loads((stage / "model" / "model_card.json").read_text())  # the rubric of the reward model
    assert card["method"] == method and card["rubric"]["sha256"] == "a" * 64 and len(card["code"]["commit"]) == 40
    assert len(json.loads((stage / "log_history.json").read_text())) > 2


def test_online_rl_refuses_a_config_for_the_other_method(exported, tiny_model_dir, capsys):
    from recipes.grpo import main as grpo_main

    fake_finished_run(exported["root"], "run")
    code = grpo_main([f"model.name_or_path={tiny_model_dir}", f"output_root={exported['root']}", "run=run",
                      "grpo.method=rloo", "wandb.mode=disabled"])
    assert code == 2 and "`counsel-align grpo` trains grpo" in capsys.readouterr().err
