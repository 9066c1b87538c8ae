"""Dry-run plans (parameter count, per-GPU memory, token budget) and the SLURM launch script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import recipes.commands.plan as plan_recipe
import recipes.dpo as dpo_recipe
from recipes._entry import PROJECT_ROOT, compose_config
from recipes.config_schema import DPOOptions
from rewards.errors import UserError
from rewards.training.plan import Architecture, estimate_memory, load_architecture, zero_settings

LLAMA3_8B = Architecture(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256)


def test_parameter_count_matches_real_models(tiny_model):
    import json

    assert LLAMA3_8B.parameters() == 8_030_261_248  # published size of Meta-Llama-3-8B
    config = json.loads(tiny_model.config.to_json_string())
    arch = Architecture.from_dict(config, "tiny")
    assert arch.parameters() == sum(p.numel() for p in tiny_model.parameters())


def test_zero_stages_shard_memory():
    train = {**OmegaConf.to_container(OmegaConf.structured(DPOOptions)), "bf16": True, "peft": "none",
             "per_device_train_batch_size": 2, "max_length": 1024, "gradient_checkpointing": True}
    by_stage = [estimate_memory(LLAMA3_8B, train, zero_settings(PROJECT_ROOT / path, PROJECT_ROOT), 8, "dpo").total
                for path in ("accelerate_config.yaml", "configs/accelerate/zero2.yaml", "configs/accelerate/zero3.yaml",
                             "configs/accelerate/zero3_offload.yaml")]
    assert by_stage == sorted(by_stage, reverse=True) and len(set(by_stage)) == 4
    lora = estimate_memory(LLAMA3_8B, {**train, "peft": "lora", "lora": {"r": 16}}, {"stage": 0, "offload_optimizer":
                           False, "offload_param": False}, 1, "dpo")
    assert lora.reference == 0 and lora.optimizer < 1e9  # adapter-disabled reference, small optimizer state


def test_preset_dry_run_prints_plan_without_weights(capsys):
    assert plan_recipe.main(["experiment=psychocounsel_llama3_8b"]) == 0
    out = capsys.readouterr().out
    assert "8.03B parameters" in out and "ZeRO-3 over 8 GPU(s)" in out
    assert "--config_file configs/accelerate/zero3.yaml --num_processes 8" in out
    assert out.count("per-GPU memory ~") == 2 and "token budget <=" in out and "DOES NOT FIT" not in out


def test_dpo_dry_run_on_tiny_model_dir(tiny_model_dir, tmp_path, capsys):
    overrides = [f"model.name_or_path={tiny_model_dir}", f"output_root={tmp_path}", "run=dry", "dry_run=true",
                 "distributed.train_pairs=100", "distributed.num_processes=2",
                 "distributed.accelerate_config=configs/accelerate/zero2.yaml", "dpo.max_steps=-1"]
    assert dpo_recipe.main(overrides) == 0
    out = capsys.readouterr().out
    assert "ZeRO-2 over 2 GPU(s)" in out and "100 train pairs" in out
    assert "13 steps x 8 pairs" in out  # dpo_lora: 4 per device x 2 GPUs; 100 pairs -> 13 steps
    assert dpo_recipe.main([*overrides[:-1], "dpo.max_steps=6"]) == 0  # the quickstart's cap is respected
    assert "6 steps x 8 pairs" in capsys.readouterr().out
    assert not (tmp_path / "dry").exists()  # nothing trained or written


def test_hub_model_without_architecture_is_one_line_error(capsys):
    cfg = compose_config(["model=llama3_8b_instruct"])
    with pytest.raises(UserError, match="add model.architecture"):
        load_architecture(dict(cfg.model), lambda name: name)
    assert plan_recipe.main(["model=llama3_8b_instruct"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_slurm_script_sets_rendezvous_from_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\nprintf 'node-a\\nnode-b\\n'\n")
    # srun runs its command once per node here, as SLURM would, with that node's SLURM_NODEID.
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nfor id in 0 1; do SLURM_NODEID=$id "${@: -3}"; done\n')
    (bin_dir / "accelerate").write_text(f'#!/usr/bin/env bash\nprintf "[%s]" "$@" >> {tmp_path}/calls.txt\necho >> '
                                        f'{tmp_path}/calls.txt\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node-[a-b]",
           "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "4", "SLURM_JOB_ID": "1234"}
    script = PROJECT_ROOT / "configs" / "accelerate" / "slurm_launch.sh"
    done = subprocess.run(["bash", str(script), "configs/accelerate/zero3.yaml", "recipes.dpo", "run=big run"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = Path(tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 2
    for rank, call in enumerate(calls):
        assert f"[--machine_rank][{rank}]" in call
        assert "[--num_machines][2][--num_processes][8]" in call and "[--main_process_ip][node-a]" in call
        assert "[--main_process_port][21234]" in call and "[--deepspeed_multinode_launcher][standard]" in call
        assert call.endswith("[-m][recipes.dpo][run=big run]")  # overrides keep their quoting
    missing = subprocess.run(["bash", str(script), "x.yaml", "recipes.dpo"], capture_output=True, text=True,
                             env={k: v for k, v in env.items() if k != "SLURM_JOB_NODELIST"}, timeout=60)
    assert missing.returncode != 0 and "run this under SLURM" in missing.stderr
