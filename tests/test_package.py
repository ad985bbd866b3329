"""`pip install .` gives a `bruin-materialize` command running the same code, template, schema snapshot
and license included, with complete metadata."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bruin_materialize import __version__
from bruin_materialize.cli import main
from testsupport.package import source_copy

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out), str(source_copy(out))], check=True, capture_output=True, cwd=out)
    [built] = out.glob("bruin_materialize-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_ships_the_template_and_the_command(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    template = wheel.read("bruin_materialize/templates/bruin.yml.j2").decode()
    [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
    scripts = wheel.read(entry_points).decode()
    assert template == (REPO / "templates" / "bruin.yml.j2").read_text()
    assert "bruin-materialize = bruin_materialize.cli:entrypoint" in scripts
    assert not [n for n in names if n.startswith("tests/")]


def test_wheel_ships_the_schema_snapshot_and_its_provenance(wheel: zipfile.ZipFile) -> None:
    data = REPO / "bruin_materialize" / "data"
    for name in ("connections-schema.json", "connections-schema.md"):
        assert wheel.read(f"bruin_materialize/data/{name}") == (data / name).read_bytes()


def test_metadata_is_complete_and_the_version_is_the_packages(wheel: zipfile.ZipFile) -> None:
    [metadata_name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = email.message_from_bytes(wheel.read(metadata_name))
    assert metadata["Name"] == "bruin-materialize" and metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "Project-URL" in metadata and metadata.get_all("Classifier")
    assert set(metadata.get_all("Requires-Dist") or []) >= {"jinja2<4,>=3.1", "ruamel.yaml<0.20,>=0.19",
                                                             "pycurl<8,>=7.49"}
    [license_file] = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_file) == (REPO / "LICENSE").read_bytes()
    assert b"Apache License\n                           Version 2.0, January 2004" in wheel.read(license_file)


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"bruin-materialize {__version__}\n"
