"""The connection schema bruin publishes (`bruin internal connections`), fetched once per bruin binary.

The schema is a JSON Schema of bruin's `Connections` struct: one array property per connection type,
items referring to an object definition whose properties carry exact JSON types. It is generated
from Go structs and is stricter than bruin's loader about `required` and unknown fields, so those
findings are warnings (see validate.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from bruin_materialize import files
from bruin_materialize.errors import MaterializeError, usage_error
from bruin_materialize.settings import Settings

# The schema shipped with the package, for machines without bruin (a CI job, the init container's
# image when BRUIN_BIN is unset): data/connections-schema.md says where it came from.
SNAPSHOT = Path(__file__).resolve().parent / "data" / "connections-schema.json"
SNAPSHOT_FROM = "bruin v0.11.731, 147 connection types"


class Schema(NamedTuple):
    types: dict[str, dict[str, Any]]  # connection type -> its object schema
    defs: dict[str, dict[str, Any]]  # "$defs", to resolve "$ref"
    source: str
    # sha256 of the schema's bytes, shortened: names exactly which schema a file was checked against,
    # comparable with `bruin internal connections | sha256sum` where bruin runs.
    digest: str = ""

    def describe(self) -> str:
        return f"{self.source}, sha256 {self.digest}" if self.digest else self.source

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = spec.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return self.defs.get(ref[len("#/$defs/"):], {})
        return spec


def parse_schema(doc: Any, source: str, raw: bytes = b"") -> Schema:
    """Check the document is the schema we expect; a malformed one is a usage error, not a crash."""
    defs = doc.get("$defs") if isinstance(doc, dict) else None
    root = defs.get("Connections") if isinstance(defs, dict) else None
    props = root.get("properties") if isinstance(root, dict) else None
    if not isinstance(props, dict) or not props:
        raise usage_error(f"{source} is not bruin's connections schema (no $defs.Connections.properties)")
    assert isinstance(defs, dict)  # checked above, through root
    schema = Schema({}, defs, source, hashlib.sha256(raw).hexdigest()[:12] if raw else "")
    for type_name, prop in props.items():
        items = prop.get("items") if isinstance(prop, dict) else None
        if isinstance(items, dict):
            schema.types[type_name] = dict(schema.resolve(items))
    return schema


def load_schema_file(path: Path, source: str | None = None) -> Schema:
    raw = files.read_bytes(path, f"the schema file {path}")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested about a thousand deep
        raise usage_error(f"the schema file {path} is not valid JSON, or is nested deeper than any schema") from None
    return parse_schema(doc, source or str(path), raw)


def load_snapshot() -> Schema:
    return load_schema_file(SNAPSHOT, f"the schema snapshot shipped with bruin-materialize ({SNAPSHOT_FROM})")


def schema_from_bruin(bruin: str, cache_dir: Path | None, env: Mapping[str, str]) -> Schema:
    """Ask the bruin that will run; cache the answer per binary (path, size, mtime)."""
    cache = _cache_file(bruin, cache_dir)
    if cache is not None:
        try:
            raw = files.read_bytes(cache, "the cached schema")
            return parse_schema(json.loads(raw), f"`{bruin} internal connections` (cached)", raw)
        except (MaterializeError, ValueError, RecursionError):  # missing, unreadable or damaged: ask bruin again
            pass
    import subprocess  # here: a run given --schema, or with the schema cached, starts no process

    try:
        proc = subprocess.run(
            [bruin, "internal", "connections"], capture_output=True, timeout=60, env=dict(env), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise usage_error(f"`{bruin} internal connections` failed ({type(exc).__name__})") from None
    if proc.returncode != 0:
        raise usage_error(f"`{bruin} internal connections` exited with {proc.returncode}")
    try:
        doc = json.loads(proc.stdout)
    except (ValueError, RecursionError):
        raise usage_error(f"`{bruin} internal connections` did not print JSON; is this bruin too old?") from None
    schema = parse_schema(doc, f"`{bruin} internal connections`", proc.stdout)
    if cache is not None:
        _store(cache, proc.stdout)
    return schema


def _cache_file(bruin: str, cache_dir: Path | None) -> Path | None:
    if cache_dir is None:
        return None
    try:
        real = os.path.realpath(bruin)
        st = os.stat(real)
    except OSError:
        return None
    key = hashlib.sha256(f"{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    return cache_dir / f"connections-schema-{key}.json"


def _store(cache: Path, data: bytes) -> None:
    """Best effort: a read-only home (a locked-down pod) only costs the next run a spawn."""
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.write_bytes(data)
        os.replace(tmp, cache)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def choose(settings: Settings, bruin: str | None, env: Mapping[str, str], info: Callable[[str], None],
           warning: Callable[[str], None]) -> Schema:
    """--schema, else the bruin that will run (`bruin`, or the one on PATH), else the snapshot in the
    package, said once: it may be older or newer than the bruin that runs the file."""
    from bruin_materialize.handover import find_bruin

    if settings.schema_file is not None:
        return load_schema_file(settings.schema_file)
    if bruin is None:
        try:
            bruin = find_bruin(settings.bruin_bin, settings.search_path)
        except MaterializeError:
            info(f"bruin not found and no --schema: checking against {SNAPSHOT_FROM} (the schema shipped with "
                 "bruin-materialize); put bruin on PATH or pass --schema to check against the bruin that will run")
            return load_snapshot()
    try:
        return schema_from_bruin(bruin, settings.cache_dir, env)
    except MaterializeError as exc:
        warning(f"{exc.message}; checking against {SNAPSHOT_FROM} (the schema shipped with bruin-materialize) "
                "instead")
        return load_snapshot()
