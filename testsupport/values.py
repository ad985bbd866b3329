"""Values that try to break the YAML the writers produce, and the two writers' common ground.

HOSTILE and SCALARS are fixed cases; `text` and `values` are hypothesis strategies for what Vault
could hold. `merged_text` is the second writer (ruamel's round-trip merge into a base file) as the
tests call it; the first is the jinja2 template, `rendered`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from bruin_materialize import merge
from bruin_materialize.render import expected_documents, header, render_environments
from bruin_materialize.validate import INT64, Connection

HOSTILE = [
    'quo"te', "it's", "a: b", "a:b", "- item", "# not a comment", "x #y", "line\nbreak", "crlf\r\n", "\ttab",
    "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n", "unicodé ☃ 𝄞 中文", "{{ jinja }}",
    "{% raw %}", "{# c #}", "0123", "0x1F", "0o17", "yes", "no", "on", "off", "y", "n", "true", "False", "null",
    "Null", "~", "1e3", "1_000", ".inf", "-.inf", ".nan", "", " ", "  leading and trailing  ", "x" * 100_000,
    "&anchor", "*alias", "!!binary", "!tag", "%YAML 1.2", "---", "...", "|", ">", "@", "`", "[a, b]", "{a: b}",
    "\\", "\\n", "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff",
    "\x9f", "\u00a0", "2001-12-14", "12:30:45", "=", "<<", "? key",
]
SCALARS: list[Any] = [None, True, False, 0, -1, 5432, INT64[0], INT64[1], 0.0, -0.0, 1.5, 1e300, 5e-324, 1e16,
                      123456789.123]

# Text as Vault could hold it: any code point but lone surrogates (JSON cannot carry them to UTF-8).
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
scalars = st.none() | st.booleans() | st.integers(*INT64) | st.floats(allow_nan=False, allow_infinity=False) | text
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                      max_leaves=12)

# The project's own file the merge writer adds to: environment "dev" with one connection and comments.
BASE_TEXT = ("# the team's file\ndefault_environment: dev\nenvironments:\n  dev:\n    connections:\n"
             "      duckdb:\n        - name: local  # a file\n          path: /tmp/x.db\n")


def examples(fraction: float, at_least: int) -> int:
    """A slow property's share of the loaded hypothesis profile's max_examples (tests/conftest.py)."""
    return max(at_least, int(settings().max_examples * fraction))  # settings(): the profile's


def merged_text(connections: list[Connection], base_text: str, tmp_path: Path) -> str:
    """`connections` merged into `base_text` as environment "prod"; the file `render` would write."""
    base_file = tmp_path / "base.yml"
    base_file.write_text(base_text, encoding="utf-8")
    base = merge.load_base(base_file)
    merged = merge.merge(base, [("prod", connections)], "dev", None)
    assert merged.collisions == []
    return merge.dump(merged.doc, header("kv/p (KV v2)"))


def sample_value(schema: Any, spec: dict[str, Any], field: str) -> Any:
    """A valid value for `field` of JSON Schema `spec` (within bruin's connection `schema`)."""
    spec = dict(schema.resolve(spec))
    kind = spec.get("type")
    if kind == "integer":
        return 7
    if kind == "number":
        return 2.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [sample_value(schema, spec.get("items", {}), field)]
    if kind == "object" or "properties" in spec:
        props = spec.get("properties") or {}
        if props:
            return {k: sample_value(schema, v, k) for k, v in props.items()}
        extra = spec.get("additionalProperties")
        return {"k": sample_value(schema, extra, field)} if isinstance(extra, dict) else {}
    if field.endswith(("path", "_file")):
        return f"/srv/{field}"  # bruin makes relative paths absolute against the file's directory
    return f"{field}-value: # '\"\n"


def rendered(connections: list[Connection], environment: str, source: str, schema: str = "") -> str:
    """The template's file with one environment, as the tool renders it."""
    return render_environments([(environment, connections)], environment, source, schema)


def expected(connections: list[Connection], environment: str) -> dict[str, Any]:
    """What that file must parse back to."""
    return expected_documents([(environment, connections)], environment)
