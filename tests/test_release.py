"""scripts/release: the wheel and the CycloneDX SBOM of the locked requirements, in a directory of
our choosing, published nowhere; and pyproject's ranges, which the lock must satisfy."""

from __future__ import annotations

import email
import hashlib
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bruin_materialize import __version__
from testsupport.paths import REPO_DIR

WHEEL = f"bruin_materialize-{__version__}-py3-none-any.whl"
SBOM = f"bruin_materialize-{__version__}.cdx.json"


def locked() -> dict[str, str]:
    """requirements.txt: name (normalized) → the pinned version."""
    pins: dict[str, str] = {}
    for line in (REPO_DIR / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalize(name)] = version
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(["bash", str(REPO_DIR / "scripts" / "release"), str(out)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"release: {out / WHEEL}", f"release: {out / SBOM}"]
    return out


def metadata(dist: Path) -> email.message.Message:
    with zipfile.ZipFile(dist / WHEEL) as wheel:
        [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(wheel.read(name))


def test_release_builds_the_wheel_with_ranges_not_pins(dist: Path) -> None:
    requires = [Requirement(r) for r in metadata(dist).get_all("Requires-Dist") or []]
    assert {normalize(r.name) for r in requires} >= {"hvac", "jinja2", "ruamel-yaml", "shtab"}
    for requirement in requires:
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">=", "<"}, requirement  # a compatible range, never a pin
    assert "hvac<3,>=2.3" in {str(r) for r in requires}
    urls = metadata(dist).get_all("Project-URL") or []
    assert "bruin, https://github.com/bruin-data/bruin" in urls


def test_the_lock_satisfies_the_ranges(dist: Path) -> None:
    pins = locked()
    for text in metadata(dist).get_all("Requires-Dist") or []:
        requirement = Requirement(text)
        assert requirement.specifier.contains(pins[normalize(requirement.name)]), text


def test_release_writes_a_valid_cyclonedx_sbom_of_the_lock(dist: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = (dist / SBOM).read_text(encoding="utf-8")
    bom = json.loads(text)
    assert JsonStrictValidator(SchemaVersion.from_version(bom["specVersion"])).validate_str(text) is None
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"], root["type"]) == ("bruin-materialize", __version__, "application")
    assert root["licenses"] == [{"license": {"acknowledgement": "declared", "id": "Apache-2.0"}}]
    components = {normalize(c["name"]): c for c in bom["components"]}
    assert {name: c["version"] for name, c in components.items()} == locked()
    for name, component in components.items():
        assert normalize(component["purl"]) == normalize(f"pkg:pypi/{name}@{component['version']}")


def test_release_records_the_checksums(dist: Path) -> None:
    lines = (dist / f"bruin_materialize-{__version__}.sha256").read_text(encoding="utf-8").splitlines()
    assert lines == [f"{hashlib.sha256((dist / name).read_bytes()).hexdigest()}  {name}" for name in (WHEEL, SBOM)]
