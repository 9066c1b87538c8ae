"""Hydra's Ray launcher (the [ray] extra): a 2-point reward sweep as Ray tasks on a local Ray instance
(`hydra/launcher=ray_local`) and its rerun; the same sweep on a running Ray head node (`hydra/launcher=ray_cluster`).

Skipped where `hydra_plugins.hydra_ray_launcher` is not importable (`pip install -e ".[ray]"`; docs/distributed.md).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from recipes.commands.runs import collect_runs
from recipes.reward import main as reward_main
from tests.conftest import PROJECT_ROOT
from tests.sweep_runs import manifests, reward_run

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="needs the [ray] extra: pip install -e '.[ray]'")

pytestmark = pytest.mark.ray

SWEEP = ["reward.learning_rate=1e-4,1e-3"]
POINTS = ["reward.learning_rate=0.0001", "reward.learning_rate=0.001"]


def assert_points_finished(root: Path, run: str) -> None:
    """Both points have their `.hydra/` record (launched by Ray), a manifest, and `runs` lists them as finished."""
    points = sorted(p.parent.parent for p in (root / run).glob("*/reward/manifest.json"))
    assert [p.name for p in points] == POINTS
    for point in points:
        assert {"config.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in (point / ".hydra").iterdir()}
        hydra_record = yaml.safe_load((point / ".hydra" / "hydra.yaml").read_text())
        assert hydra_record["hydra"]["launcher"]["_target_"].endswith("RayLauncher")
        manifest = json.loads((point / "reward" / "manifest.json").read_text())
        config = yaml.safe_load((point / ".hydra" / "config.yaml").read_text())
        assert manifest["config"]["reward"]["learning_rate"] == config["reward"]["learning_rate"]
    sweep = {s["run"]: s for s in collect_runs(root)}[run]["sweep"]
    assert [p["status"] for p in sweep] == ["finished"] * 2
    assert all(p["objective"] == "rm_accuracy" and isinstance(p["value"], float) for p in sweep)


@pytest.fixture
def this_checkout(monkeypatch, tmp_path):
    """Ray's worker processes import this checkout's `recipes`, though the sweep starts from a temp folder."""
    paths = [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def ray_stopped_after():
    """Stops the Ray instance (or the connection) the sweep started, so that the next test starts its own."""
    import ray

    yield
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(this_checkout, monkeypatch, ray_stopped_after):
    """A Ray head node on this machine (`ray start --head --block`) as `RAY_ADDRESS`; stopped with its processes."""
    port = free_port()
    # a temp folder of its own (short: Ray's socket paths must fit in 107 characters), so that the head's session and
    # `ray_current_cluster` file never make a later `ray.init()` on this machine join a head that is gone
    temp_dir = tempfile.mkdtemp(prefix="ray-")
    command = [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--head", "--block",
               f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
               "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    # a process group of its own: the head and every process it starts are stopped together, and nothing else
    head = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        for line in head.stdout:
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail(f"ray start --head exited with {head.wait()}")
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        yield
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=120)  # a graceful stop took 10-40 s here
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_2_point_sweep_on_a_local_ray_instance_finishes_both_points_and_a_rerun_skips_them(
        tiny_model_dir, tmp_path, this_checkout, ray_stopped_after):
    command = [*reward_run(tiny_model_dir, tmp_path, "local"), "-m", "hydra/launcher=ray_local", *SWEEP]
    assert reward_main(command) == 0
    assert_points_finished(tmp_path, "local")
    before = manifests(tmp_path / "local")
    assert reward_main(command) == 0  # the same sweep again, on the same Ray instance: both points are up to date
    assert manifests(tmp_path / "local") == before


def test_a_2_point_sweep_on_a_running_ray_head_node_finishes_both_points(tiny_model_dir, tmp_path, ray_head):
    # the launcher's own default object_store_memory makes ray.init refuse to join a running cluster: the preset
    # clears it (hydra/launcher=ray with ray.init.address=auto failed here with that ValueError)
    command = [*reward_run(tiny_model_dir, tmp_path, "cluster"), "-m", "hydra/launcher=ray_cluster", *SWEEP]
    assert reward_main(command) == 0
    assert_points_finished(tmp_path, "cluster")
