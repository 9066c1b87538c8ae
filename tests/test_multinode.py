"""Multi-node launches without a cluster: SLURM's environment and tools are faked, `accelerate launch` is real or a
stand-in that records its arguments.

What is checked here: the node rank, number of machines and processes, rendezvous host and port and config file that
`configs/accelerate/slurm_launch.sh` and the `launch.accelerate=true` job path (the one `hydra/launcher=
submitit_slurm_accelerate` runs on every node) hand to `accelerate launch`; and one real training job whose two
"machines" (two `accelerate launch` processes on this host, machine ranks 0 and 1, gloo) meet at a rendezvous. Not
checked: real nodes, GPUs/NCCL, SLURM itself, submitit's SLURM executor, Ray (docs/distributed.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.test_distributed import (
    assert_deepspeed_checkpoint,
    deepspeed_env,  # noqa: F401  (the fixture: DeepSpeed's CPU op built once)
    free_port,
    train_overrides,
)
from tests.test_resume_guard import write_pairs

SCRIPT = PROJECT_ROOT / "configs" / "accelerate" / "slurm_launch.sh"
NODELIST = "node[01-02]"


def stub(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
    (bin_dir / name).chmod(0o755)


def recorded(path: Path) -> list[list[str]]:
    """The calls a stub recorded: one line per call, its arguments separated by tabs."""
    return [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []


def record_calls(tool: str, log: Path) -> str:
    """A stub body that appends its arguments (and the node id it ran as) to ``log`` as one tab-separated line."""
    return f'(printf "%s\\t" "SLURM_NODEID=${{SLURM_NODEID:-}}" "{tool}" "$@"; echo) >> {log}\n'


def fake_scontrol(bin_dir: Path, log: Path, hosts: list[str]) -> None:
    """`scontrol show hostnames <list>` prints one host per line, as SLURM's does for ``node[01-02]``."""
    printed = "\\n".join(hosts)
    stub(bin_dir, "scontrol", record_calls("scontrol", log) + f"printf '{printed}\\n'\n")


def slurm_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": NODELIST,
            "SLURM_NNODES": "2", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "PYTHONPATH": str(PROJECT_ROOT),
            "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_the_launch_accelerate_job_path_gives_each_node_its_rank_and_the_first_host_as_rendezvous(tmp_path):
    """What a `submitit_slurm_accelerate` job runs on each node (one task per node, SLURM_NODEID set by SLURM)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.tsv"
    fake_scontrol(bin_dir, log, ["node01", "node02"])
    stub(bin_dir, "accelerate", record_calls("accelerate", log))
    command = [sys.executable, "-m", "recipes.cli", "dpo", f"output_root={tmp_path / 'out'}", "run=big",
               "launch.accelerate=true", "launch.main_process_port=29555", "distributed.num_machines=2",
               "distributed.num_processes=16", "distributed.accelerate_config=configs/accelerate/zero3.yaml",
               "dpo.beta=0.2"]
    for node in ("0", "1"):
        done = subprocess.run(command, cwd=PROJECT_ROOT, env=slurm_env(bin_dir, SLURM_NODEID=node),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    calls = recorded(log)
    assert [c[1] for c in calls] == ["scontrol", "accelerate"] * 2
    assert all(c[2:5] == ["show", "hostnames", NODELIST] for c in calls[0::2])
    for node, call in enumerate(calls[1::2]):
        assert call[0] == f"SLURM_NODEID={node}" and call[2] == "launch"
        assert option(call, "--machine_rank") == str(node)
        assert option(call, "--num_machines") == "2" and option(call, "--num_processes") == "16"
        assert option(call, "--main_process_ip") == "node01" and option(call, "--main_process_port") == "29555"
        config = Path(option(call, "--config_file"))  # as configured: relative to the working directory
        assert (PROJECT_ROOT / config).resolve() == PROJECT_ROOT / "configs" / "accelerate" / "zero3.yaml"
        assert option(call, "--deepspeed_multinode_launcher") == "standard"
        assert option(call, "-m") == "recipes.dpo"
        # the workers run the stage itself, in the same run folder, with the job's own overrides
        assert {"launch.accelerate=false", "run='big'", "dpo.beta=0.2"} <= set(call)


def test_the_launch_accelerate_path_over_two_machines_outside_slurm_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in slurm_env(tmp_path).items() if not k.startswith("SLURM_")}
    done = subprocess.run([sys.executable, "-m", "recipes.cli", "dpo", f"output_root={tmp_path}",
                           "launch.accelerate=true", "distributed.num_machines=2", "distributed.num_processes=2"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "needs a SLURM job" in lines[-1]


def test_the_slurm_script_hands_accelerate_the_node_rank_rendezvous_and_config(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.tsv"
    fake_scontrol(bin_dir, log, ["node01", "node02"])
    # srun starts its command once per node, each with that node's SLURM_NODEID.
    stub(bin_dir, "srun", record_calls("srun", log) + 'for id in 0 1; do SLURM_NODEID=$id "${@: -3}"; done\n')
    stub(bin_dir, "accelerate", record_calls("accelerate", log))
    done = subprocess.run(["bash", str(SCRIPT), "configs/accelerate/zero2.yaml", "recipes.reward", "run=mn"],
                          env=slurm_env(bin_dir, GPUS_PER_NODE="4", MASTER_PORT="29600"), cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = recorded(log)
    assert [c[1] for c in calls] == ["scontrol", "srun", "accelerate", "accelerate"]
    assert calls[0][2:5] == ["show", "hostnames", NODELIST]
    assert "--ntasks-per-node=1" in calls[1]
    for node, call in enumerate(calls[2:]):
        assert call[0] == f"SLURM_NODEID={node}" and option(call, "--machine_rank") == str(node)
        assert option(call, "--num_machines") == "2" and option(call, "--num_processes") == "8"
        assert option(call, "--main_process_ip") == "node01" and option(call, "--main_process_port") == "29600"
        assert option(call, "--config_file") == "configs/accelerate/zero2.yaml"
        assert call[-3:-1] == ["recipes.reward", "run=mn"]


def test_several_processes_without_cuda_ask_for_gloo_so_the_trainer_sees_one_job(monkeypatch):
    """Without it, plain DDP on CPU trained one copy per process (world size 1 each), all into the same folder."""
    import torch

    from rewards.distributed import default_ddp_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert default_ddp_backend() == "gloo"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert default_ddp_backend() is None  # one process: accelerate chooses, as before
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert default_ddp_backend() is None  # GPUs: accelerate chooses (NCCL)


def train_on_two_machines(accelerate_config: str, model_dir: Path, tmp_path: Path, **env: str) -> Path:
    """slurm_launch.sh with a stand-in srun that starts both "nodes" at once on this host and real `accelerate
    launch`: machine ranks 0 and 1, one process each, rendezvous on 127.0.0.1; the reward stage on 8 tiny pairs.
    Returns the stage folder."""
    overrides = train_overrides(model_dir, tmp_path, "mn", "reward")
    write_pairs(overrides)
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.tsv"
    fake_scontrol(bin_dir, log, ["127.0.0.1", "127.0.0.1"])
    # Both nodes at once (a rendezvous waits for every machine), each with its own output; srun fails if one does.
    stub(bin_dir, "srun", record_calls("srun", log)
         + f'for id in 0 1; do SLURM_NODEID=$id "${{@: -3}}" > {tmp_path}/node$id.log 2>&1 & pids+=($!); done\n'
         + 'for pid in "${pids[@]}"; do wait "$pid" || exit 1; done\n')
    launch_env = slurm_env(bin_dir, GPUS_PER_NODE="1", MASTER_PORT=str(free_port()), **env)
    try:
        done = subprocess.run(["bash", str(SCRIPT), accelerate_config, "recipes.reward", *overrides],
                              env=launch_env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("two-machine launch ran over 600 s: " + "\n".join(
            (tmp_path / f"node{n}.log").read_text()[-2000:] for n in (0, 1) if (tmp_path / f"node{n}.log").exists()))
    nodes = [(tmp_path / f"node{n}.log").read_text() for n in (0, 1)]
    assert done.returncode == 0, done.stderr + "\n".join(node[-3000:] for node in nodes)
    return tmp_path / "mn" / "reward"


def assert_one_job_of_two_processes(stage: Path) -> None:
    assert (stage / "manifest.json").is_file() and (stage / "model").is_dir()  # rank 0 wrote the manifest last
    # The Trainer saves one RNG state per process of the job: both machines' processes trained in one world of 2.
    checkpoints = sorted((stage / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and {p.name for p in checkpoints[-1].glob("rng_state*.pth")} == {"rng_state_0.pth",
                                                                                           "rng_state_1.pth"}


@pytest.mark.multiprocess
def test_one_ddp_reward_job_over_two_machines_meets_at_the_rendezvous(tiny_model_dir, tmp_path):
    """Plain DDP on CPU (gloo)."""
    assert_one_job_of_two_processes(train_on_two_machines("configs/accelerate/ddp.yaml", tiny_model_dir, tmp_path))


@pytest.mark.multiprocess
def test_one_deepspeed_zero2_reward_job_over_two_machines_meets_at_the_rendezvous(deepspeed_env,  # noqa: F811
                                                                                 tiny_model_dir, tmp_path):
    """DeepSpeed ZeRO-2 on CPU, each node starting its own process (`--deepspeed_multinode_launcher standard`)."""
    extra = {key: deepspeed_env[key] for key in ("DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR")}
    stage = train_on_two_machines("configs/accelerate/zero2.yaml", tiny_model_dir, tmp_path, **extra)
    assert_one_job_of_two_processes(stage)
    assert_deepspeed_checkpoint(stage)
