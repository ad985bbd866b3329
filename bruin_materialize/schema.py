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
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from bruin_materialize.errors import usage_error


class Schema(NamedTuple):
    types: dict[str, dict[str, Any]]  # connection type -> its object schema
    defs: dict[str, dict[str, Any]]  # "$defs", to resolve "$ref"
    source: str

    def resolve(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = spec.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return self.defs.get(ref[len("#/$defs/"):], {})
        return spec


def parse_schema(doc: Any, source: str) -> Schema:
    """Check the document is the schema we expect; a malformed one is a usage error, not a crash."""
    defs = doc.get("$defs") if isinstance(doc, dict) else None
    root = defs.get("Connections") if isinstance(defs, dict) else None
    props = root.get("properties") if isinstance(root, dict) else None
    if not isinstance(props, dict) or not props:
        raise usage_error(f"{source} is not bruin's connections schema (no $defs.Connections.properties)")
    assert isinstance(defs, dict)  # checked above, through root
    schema = Schema({}, defs, source)
    for type_name, prop in props.items():
        items = prop.get("items") if isinstance(prop, dict) else None
        if isinstance(items, dict):
            schema.types[type_name] = dict(schema.resolve(items))
    return schema


def load_schema_file(path: Path) -> Schema:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise usage_error(f"cannot read the schema file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise usage_error(f"the schema file {path} is not valid JSON") from None
    return parse_schema(doc, str(path))


def schema_from_bruin(bruin: str, cache_dir: Path | None, env: Mapping[str, str]) -> Schema:
    """Ask the bruin that will run; cache the answer per binary (path, size, mtime)."""
    cache = _cache_file(bruin, cache_dir)
    if cache is not None:
        try:
            return parse_schema(json.loads(cache.read_text(encoding="utf-8")), f"{bruin} (cached)")
        except (OSError, ValueError):
            pass
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
    except ValueError:
        raise usage_error(f"`{bruin} internal connections` did not print JSON; is this bruin too old?") from None
    schema = parse_schema(doc, f"`{bruin} internal connections`")
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
