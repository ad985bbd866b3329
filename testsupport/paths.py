"""Where things are in the repository."""

from __future__ import annotations

from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
TESTS_DIR = REPO_DIR / "tests"
MATERIALIZE = REPO_DIR / "materialize.py"
FAKE_BRUIN_DIR = TESTS_DIR / "fake_bruin"
DATA_DIR = TESTS_DIR / "data"
# bruin's connections JSON Schema: the full shared copy (beside the repository), the package's
# snapshot (a full copy too) and the subset the tests keep.
SHARED_SCHEMA = REPO_DIR.parent / "shared" / "bruin" / "connections-schema.json"
PACKAGED_SCHEMA = REPO_DIR / "bruin_materialize" / "data" / "connections-schema.json"
SUBSET_SCHEMA = DATA_DIR / "connections-schema-subset.json"
