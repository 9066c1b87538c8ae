"""Where the project's own files are: configs/, principles/ and data/ of the source checkout, else of the install.

A wheel or ``pip install .`` ships the three folders inside the package as ``recipes/shipped/`` (see setup.py); a
source checkout (editable or not installed at all) reads them where they are. Paths a user gives are read relative
to the working directory first, then here; outputs are always written under the working directory.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

SHIPPED_FOLDERS = ("configs", "principles", "data")
SHIPPED_PACKAGE_DIR = "shipped"  # recipes/shipped/ inside an installed package


def project_root() -> Path:
    """The folder that holds configs/, principles/ and data/: the source checkout, else the installed copy."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "configs" / "config.yaml").is_file():
        return checkout
    return Path(str(files("recipes") / SHIPPED_PACKAGE_DIR))


def project_path(path: str | os.PathLike) -> Path:
    """A file a config names, to read: relative to the working directory when it is there, else the project's copy."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return project_root() / candidate


def output_path(path: str | os.PathLike) -> Path:
    """A place to write (``output_root``, caches): relative to the working directory, never the install."""
    return Path(path).expanduser()
