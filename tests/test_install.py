"""A non-editable install carries configs, rubric and data, and writes outputs under the working directory."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.install

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "rewards", "recipes", "configs", "principles",
           "data")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package installed (not editable, no dependencies) into a temp folder, built from a copy of the source."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = PROJECT_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile",
                    "--quiet", "--target", str(target), str(source)], check=True, capture_output=True, text=True)
    return target


def _cli(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-m", "recipes.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_installed_package_finds_its_configs_and_rubric(installed, tmp_path):
    shipped = installed / "recipes" / "shipped"
    assert (shipped / "configs" / "config.yaml").is_file() and (shipped / "data" / "redflags").is_dir()
    result = _cli(installed, tmp_path, "principles", "validate")
    assert result.returncode == 0, result.stderr
    assert str(shipped / "principles" / "psychocounsel.yaml") in result.stdout
    result = _cli(installed, tmp_path, "generate", "--cfg")
    assert result.returncode == 0, result.stderr
    assert "output_root: outputs" in result.stdout


def test_outputs_land_under_the_working_directory(installed, tmp_path):
    probe = ("import recipes, recipes._entry as e; cfg = e.compose_config([]); "
             "print(e.run_dir_of(cfg).resolve()); print(e.project_path(cfg.data.prompts)); print(recipes.__file__)")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    run_dir, prompts, package = (Path(line) for line in out)
    assert package.is_relative_to(installed), "the installed copy is imported, not the checkout"
    assert run_dir.is_relative_to(tmp_path.resolve()), "outputs go under the working directory"
    assert prompts.is_relative_to(installed) and prompts.is_dir(), "project data come from the shipped copy"
