"""Versions of the packages that shape results, recorded in every manifest."""

from __future__ import annotations

import platform
from importlib import metadata

TRACKED = (
    "counsel-align", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
    "deepspeed", "bitsandbytes", "hydra-core",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
