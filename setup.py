"""Build hook: ship configs/, principles/ and data/ inside the package as ``recipes/shipped/``.

The three folders stay at the top of the checkout (that is where users edit them); they are not Python packages, so
setuptools would leave them out of a wheel. ``recipes.project_files`` finds them next to the source or in the copy.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED_FOLDERS = ("configs", "principles", "data")  # keep in step with recipes/project_files.py


class BuildPyWithProjectFiles(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders in place
            return
        target = Path(self.build_lib) / "recipes" / "shipped"
        for name in SHIPPED_FOLDERS:
            shutil.copytree(ROOT / name, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithProjectFiles})
