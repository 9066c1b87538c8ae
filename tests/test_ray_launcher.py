"""Hydra's Ray launcher (the [ray] extra): a 2-point reward sweep as Ray tasks on a local Ray instance, and its rerun.

Skipped where `hydra_plugins.hydra_ray_launcher` is not importable (`pip install -e ".[ray]"`; docs/distributed.md).
"""

import json
import os

import pytest
import yaml

from recipes.commands.runs import collect_runs
from recipes.reward import main as reward_main
from tests.conftest import PROJECT_ROOT, tiny_overrides
from tests.test_resume_guard import write_pairs

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="needs the [ray] extra: pip install -e '.[ray]'")

pytestmark = pytest.mark.ray


def reward_run(model_dir, root, run: str) -> list[str]:
    """Overrides of a reward run whose pairs stage has finished (8 pairs): each point trains one step."""
    overrides = [*tiny_overrides(model_dir, root, run), "reward.max_steps=1", "reward.max_length=64",
                 "reward.save_steps=1000"]
    write_pairs(overrides)
    return overrides


def manifests(run_dir) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.glob("*/reward/manifest.json")}


@pytest.fixture
def ray_stopped_after():
    """Stops the Ray instance the sweep started, so that no Ray process outlives the test."""
    import ray

    yield
    ray.shutdown()


def test_a_2_point_sweep_on_a_local_ray_instance_finishes_both_points_and_a_rerun_skips_them(
        tiny_model_dir, tmp_path, monkeypatch, ray_stopped_after):
    # Ray's worker processes import this checkout's `recipes`, whatever the folder the sweep is started from.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
                                                      if p))
    monkeypatch.chdir(tmp_path)
    base = reward_run(tiny_model_dir, tmp_path, "ray")
    command = [*base, "-m", "hydra/launcher=ray_local", "reward.learning_rate=1e-4,1e-3"]
    assert reward_main(command) == 0
    run_dir = tmp_path / "ray"
    points = sorted(p.parent.parent for p in run_dir.glob("*/reward/manifest.json"))
    assert [p.name for p in points] == ["reward.learning_rate=0.0001", "reward.learning_rate=0.001"]
    for point in points:
        assert {"config.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in (point / ".hydra").iterdir()}
        hydra_record = yaml.safe_load((point / ".hydra" / "hydra.yaml").read_text())
        assert hydra_record["hydra"]["launcher"]["_target_"].endswith("RayLauncher")
        manifest = json.loads((point / "reward" / "manifest.json").read_text())
        config = yaml.safe_load((point / ".hydra" / "config.yaml").read_text())
        assert manifest["config"]["reward"]["learning_rate"] == config["reward"]["learning_rate"]
    sweep = {s["run"]: s for s in collect_runs(tmp_path)}["ray"]["sweep"]
    assert [p["status"] for p in sweep] == ["finished"] * 2
    assert all(p["objective"] == "rm_accuracy" and isinstance(p["value"], float) for p in sweep)

    before = manifests(run_dir)
    assert reward_main(command) == 0  # the same sweep again, on the same Ray instance: both points are up to date
    assert manifests(run_dir) == before
