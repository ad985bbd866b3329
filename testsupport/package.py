"""The package's sources, copied for a build: pip builds in the source tree (build/, *.egg-info), so
two test workers building the checkout itself would write the same files at once."""

from __future__ import annotations

import shutil
from pathlib import Path

from testsupport.paths import REPO_DIR

# What the image copies (.dockerignore): all a build needs.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "bruin_materialize", "templates")


def source_copy(into: Path) -> Path:
    """A copy of the sources under `into` (the package's templates link kept a link)."""
    root = into / "source"
    root.mkdir()
    for name in SOURCES:
        source = REPO_DIR / name
        if source.is_dir():
            shutil.copytree(source, root / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    return root
