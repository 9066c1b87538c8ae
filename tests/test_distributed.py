"""DeepSpeed ZeRO-2/3 through `accelerate launch` with 2 CPU processes on a tiny random Llama (2 steps each)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rewards.artifacts import sha256_tree
from tests.conftest import PROJECT_ROOT, tiny_overrides
from tests.test_resume_guard import write_pairs

pytestmark = pytest.mark.multiprocess


# DeepSpeed's CPU backend JIT-compiles a shared-memory op (deepspeed_shm_comm) at init_distributed. torch guards
# that build with a `lock` file and waits forever while the file exists, so a build killed once leaves every later
# launch hanging. The tests therefore build it in a folder of their own session, once, before any launch.
SHM_OP_BUILD = ("from deepspeed.accelerator import get_accelerator; "
                "get_accelerator().create_op_builder('ShareMemCommBuilder').load()")


@pytest.fixture(scope="session")
def deepspeed_env(tmp_path_factory) -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(PROJECT_ROOT),
           "TORCH_EXTENSIONS_DIR": str(tmp_path_factory.mktemp("torch_extensions"))}
    try:
        built = subprocess.run([sys.executable, "-c", SHM_OP_BUILD], env=env, capture_output=True, text=True,
                               timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"building DeepSpeed's shm op in {env['TORCH_EXTENSIONS_DIR']} took over 600 s")
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def partitioned_zero3(tmp_path) -> Path:
    """configs/accelerate/zero3.yaml, but every parameter stays partitioned between uses (none persists or lingers
    gathered, as in a model too big for one GPU): a tiny model under the shipped settings would stay gathered."""
    ds_config = json.loads((PROJECT_ROOT / "configs" / "deepspeed" / "zero3.json").read_text())
    ds_config["zero_optimization"].update(stage3_param_persistence_threshold=0, stage3_max_live_parameters=0,
                                          stage3_max_reuse_distance=0)
    (tmp_path / "zero3.json").write_text(json.dumps(ds_config))
    accelerate = yaml.safe_load((PROJECT_ROOT / "configs" / "accelerate" / "zero3.yaml").read_text())
    accelerate["deepspeed_config"]["deepspeed_config_file"] = str(tmp_path / "zero3.json")
    (tmp_path / "accelerate_zero3.yaml").write_text(yaml.safe_dump(accelerate))
    return tmp_path / "accelerate_zero3.yaml"


def launch(env: dict[str, str], zero: str | Path, target: list[str], overrides: list[str], timeout: int = 300) -> None:
    """`accelerate launch --num_processes 2` with configs/accelerate/<zero>.yaml (or the config file ``zero``);
    fails with the output's tail."""
    config = zero if isinstance(zero, Path) else PROJECT_ROOT / "configs" / "accelerate" / f"{zero}.yaml"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
               "--main_process_port", str(free_port()), *target, *overrides]
    try:
        done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as stuck:
        output = (stuck.stdout or b"").decode() + (stuck.stderr or b"").decode()
        pytest.fail(f"accelerate launch ran over {timeout} s; its output's tail:\n{output[-4000:]}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def train_overrides(model_dir: Path, root: Path, run: str, section: str = "dpo") -> list[str]:
    return [*tiny_overrides(model_dir, root, run), f"{section}.max_steps=2", f"{section}.save_steps=1",
            f"{section}.max_length=64", f"{section}.per_device_train_batch_size=2", f"{section}.learning_rate=1e-3"]


def finished(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "manifest.json").read_text())


def assert_deepspeed_checkpoint(stage_dir: Path) -> None:
    checkpoint = stage_dir / "checkpoints" / "checkpoint-2"
    shards = sorted(p.name for p in (checkpoint / "global_step2").glob("*optim_states.pt"))
    assert len(shards) == 2, shards  # one ZeRO optimizer partition per rank
    assert (checkpoint / "scheduler.pt").exists() and (checkpoint / "trainer_state.json").exists()


def test_zero2_dpo_lora(deepspeed_env, tiny_model_dir, tmp_path):
    overrides = [*train_overrides(tiny_model_dir, tmp_path, "z2"), "dpo=lora"]
    write_pairs(overrides)
    launch(deepspeed_env, "zero2", ["-m", "recipes.dpo"], overrides)
    stage = tmp_path / "z2" / "dpo"
    metrics = finished(stage)["metrics"]
    assert metrics["steps"] == 2 and math.isfinite(metrics["last_loss"])
    state = json.loads((stage / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["log_history"][0]["epoch"] == pytest.approx(0.5)  # 2 ranks x 2 pairs of 8: data is sharded
    assert_deepspeed_checkpoint(stage)
    assert (stage / "model" / "adapter_model.safetensors").exists()


def test_zero3_dpo_full_consolidated_export(deepspeed_env, partitioned_zero3, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    overrides = [*train_overrides(tiny_model_dir, tmp_path, "z3"), "dpo=full"]
    write_pairs(overrides)
    gathered_file = tmp_path / "gathered.pt"
    gathering_script = str(PROJECT_ROOT / "tests" / "ds_launch_dpo_gathered.py")
    launch(deepspeed_env, partitioned_zero3, [gathering_script, str(gathered_file)], overrides)
    stage = tmp_path / "z3" / "dpo"
    metrics = finished(stage)["metrics"]
    assert metrics["steps"] == 2 and math.isfinite(metrics["last_loss"])
    assert_deepspeed_checkpoint(stage)
    assert (stage / "model" / "model.safetensors").exists()

    exported = AutoModelForCausalLM.from_pretrained(stage / "model").state_dict()
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    gathered = torch.load(gathered_file)
    assert gathered and all(t.numel() > 0 for t in gathered.values())  # full tensors, not empty ZeRO-3 stubs
    for name, tensor in gathered.items():
        assert torch.equal(exported[name], tensor), name
    assert any(not torch.equal(exported[n], initial[n]) for n in gathered)  # the export holds trained weights


def train_reward(env, accelerate_config: str | Path, model_dir: Path, root: Path, *train_config: str) -> Path:
    """Launch the reward stage with 2 processes; check what every launch must leave; return the stage folder."""
    overrides = [*train_overrides(model_dir, root, "rm", section="reward"), *train_config]
    write_pairs(overrides)
    launch(env, accelerate_config, ["-m", "recipes.reward"], overrides)
    stage = root / "rm" / "reward"
    manifest = finished(stage)
    assert math.isfinite(manifest["metrics"]["train_loss"])
    assert manifest["outputs_sha256"] == sha256_tree(stage)  # hashed after both ranks stopped writing
    return stage


def test_zero2_reward_model(deepspeed_env, tiny_model_dir, tmp_path):
    stage = train_reward(deepspeed_env, "zero2", tiny_model_dir, tmp_path)
    assert_deepspeed_checkpoint(stage)
    assert (stage / "model" / "adapter_model.safetensors").exists()
    assert not [p.name for p in stage.iterdir() if p.name.startswith(".model.tmp")]  # one export, no leftovers


def test_zero3_full_reward_model_exports_gathered_weights(deepspeed_env, partitioned_zero3, tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model_dir = train_reward(deepspeed_env, partitioned_zero3, tiny_model_dir, tmp_path,
                             "reward=full") / "model"
    exported = AutoModelForSequenceClassification.from_pretrained(model_dir).state_dict()  # shapes are checked
    initial = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).state_dict()
    assert exported.keys() == initial.keys()
    backbone = [n for n in exported if not n.startswith("score.")]
    assert any(not torch.equal(exported[n], initial[n]) for n in backbone)  # trained weights, not the initial ones


def test_zero3_lora_reward_model_exports_a_whole_adapter(deepspeed_env, partitioned_zero3, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from rewards.reward_models.io import load_reward

    model_dir = train_reward(deepspeed_env, partitioned_zero3, tiny_model_dir, tmp_path,
                             "reward=lora") / "model"
    adapter = load_file(model_dir / "adapter_model.safetensors")
    assert adapter and all(t.numel() > 0 for t in adapter.values())  # no empty ZeRO-3 stubs
    assert any("lora_B" in n and t.abs().sum() > 0 for n, t in adapter.items())  # B starts at zero: it was trained
    scores = load_reward(model_dir, device="cpu")(prompts=["I feel stuck."], completions=["Tell me more."])
    assert len(scores) == 1 and math.isfinite(scores[0])


def test_zero2_grpo_two_steps_with_a_reward_model(deepspeed_env, tiny_model_dir, tiny_tokenizer, tmp_path):
    from rewards.reward_models.io import export_reward_model
    from tests.test_reward_io import fake_finished_run, lora_reward_model

    kwargs = {"base_model": str(tiny_model_dir), "weights": {}, "max_length": 256,
              "provenance": {"rubric_sha256": "a" * 64, "pairs_sha256": "b" * 64}, "metrics": {}}
    export_reward_model(lora_reward_model(tiny_model_dir, tiny_tokenizer), tiny_tokenizer,
                        tmp_path / "rl" / "reward" / "model", **kwargs)
    fake_finished_run(tmp_path, "rl")
    overrides = [f"model.name_or_path={tiny_model_dir}", f"output_root={tmp_path}", "run=rl", "device=cpu",
                 "wandb.mode=disabled", "grpo.max_steps=2", "grpo.num_generations=2",
                 "grpo.per_device_train_batch_size=2", "grpo.max_completion_length=8", "grpo.save_steps=1"]
    launch(deepspeed_env, "zero2", ["-m", "recipes.grpo"], overrides)
    stage = tmp_path / "rl" / "grpo"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["n_logged_steps"] == 2
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("reward_") and isinstance(v, float))
    assert_deepspeed_checkpoint(stage)
    assert (stage / "model" / "adapter_model.safetensors").exists()
