"""`pip install .` gives a `bruin-materialize` command running the same code, template included."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_template_and_the_command(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    [wheel] = tmp_path.glob("bruin_materialize-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        template = archive.read("bruin_materialize/templates/bruin.yml.j2").decode()
        [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert template == (REPO / "templates" / "bruin.yml.j2").read_text()
    assert "bruin-materialize = bruin_materialize.cli:entrypoint" in scripts
    assert not [n for n in names if n.startswith("tests/")]
