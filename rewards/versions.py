"""Versions of the packages and of the code that shape results, recorded in every manifest and model card."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

TRACKED = (
    "counsel-align", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
    "deepspeed", "bitsandbytes", "hydra-core",
)
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@functools.cache
def code_version() -> dict[str, str | bool | None]:
    """The git commit of the code that runs and whether its tracked files differ from it.

    ``commit`` is None when the code is not a git checkout (an installed wheel); the package version says more then.
    """
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "package": _own_version()}
    return {"commit": commit, "dirty": dirty, "package": _own_version()}


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10,
                          check=True)
    return done.stdout.strip()


def _own_version() -> str:
    try:
        return metadata.version("counsel-align")
    except metadata.PackageNotFoundError:
        return "not installed"
