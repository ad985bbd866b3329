"""A connection's values as bruin's yaml.v3 decodes them into its structs: what `import` stores.

yaml.v3 decodes a scalar by the Go type of the field it lands in (decode.go, `scalar`):
- a string field gets the scalar's text exactly as written (`password: 0012345` is "0012345");
- an int field takes yaml.v3's own resolution, not YAML 1.2's: `_` dropped, `0x`/`0o`/`0b`, and a
  leading zero is octal (`0100` is 64); a float that is a whole number fits too (`1e3` is 1000);
- a float field takes any number; a bool field true/false, and also yes/no/on/off/y/n;
- an untyped field (`any`, a map of any) gets the resolved value: int, float, bool, string, null;
- null (`~`, `null`, nothing) leaves the field at its zero value.
Anything bruin would read otherwise, or that the tool cannot be sure it reads alike (a tag, a
timestamp, a merge key `<<`, a fractional number in an int field, a key that is not text in an
untyped map), is refused with the way out: quote it. Nothing is converted on its way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from bruin_materialize.schema import Schema
from bruin_materialize.yamlnodes import Node

_STR = "tag:yaml.org,2002:str"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_OTHER_FLOATS = frozenset({".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
                           "-.Inf", "-.INF"})
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")  # yaml.v3's yamlStyleFloat
_DATE_START = re.compile(r"[0-9]{4}-")  # every timestamp yaml.v3 parses starts so (parseTimestamp)
_YES = frozenset({"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"})
_NO = frozenset({"n", "N", "no", "No", "NO", "off", "Off", "OFF"})
_DIGITS = {16: "0123456789abcdefABCDEF", 10: "0123456789", 8: "01234567", 2: "01"}
INT64 = (-(2**63), 2**63 - 1)
_QUOTE = "; quote it to keep it as text"


class Unreadable(Exception):
    """A value that bruin would read otherwise than `import` could store, or not at all: args[0] says
    why, in words that never quote it."""


class _Resolved(NamedTuple):
    kind: str  # null, bool, int, float, str, special (a timestamp, a merge key, NaN or an infinity)
    value: Any


def decode(node: Node | None, spec: Mapping[str, Any] | None, schema: Schema | None) -> Any:
    """The value bruin's struct field of JSON Schema `spec` gets from `node` (None: an untyped field).
    A collection where the field wants a scalar (or the other way) is decoded untyped: validate()
    reports the mismatch, as for a secret from Vault."""
    if node is None:
        return None
    spec = dict(schema.resolve(spec)) if spec is not None and schema is not None else dict(spec or {})
    expected = spec.get("type")
    if node.tag is not None and node.tag != _STR:
        raise Unreadable("has a YAML tag (!!...), which bruin's parser reads its own way; remove it" + _QUOTE)
    if node.kind == "mapping":
        return _mapping(node, spec, schema)
    if node.kind == "sequence":
        items = spec.get("items") if expected == "array" else None
        return [decode(item, items if isinstance(items, dict) else None, schema) for item in node.value]
    return _scalar(node, expected if isinstance(expected, str) else None)


def key_text(node: Node) -> str:
    """A key of a struct or of a map of string keys: Go decodes it into a string, so its text as written."""
    if node.kind != "scalar" or (node.tag is not None and node.tag != _STR):
        raise Unreadable("has a key that is not plain text" + _QUOTE)
    if node.plain and node.value == "<<":
        raise Unreadable("has a merge key (<<), which bruin's parser expands its own way; write the fields out")
    if node.plain and node.value in _NULLS:
        raise Unreadable("has an empty or null key" + _QUOTE)
    return str(node.value)


def _mapping(node: Node, spec: Mapping[str, Any], schema: Schema | None) -> dict[str, Any]:
    props = spec.get("properties")
    extra = spec.get("additionalProperties")
    typed = isinstance(props, dict) or isinstance(extra, dict)
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_text(key_node) if typed else _untyped_key(key_node)
        if key in result:
            raise Unreadable("has a key twice, which bruin's parser refuses")
        field = props.get(key) if isinstance(props, dict) else None
        if field is None and isinstance(extra, dict):
            field = extra
        result[key] = decode(value_node, field if isinstance(field, dict) else None, schema)
    return result


def _untyped_key(node: Node) -> str:
    """A key of an untyped map (`any`): yaml.v3 resolves it, and only a string key stays a JSON key."""
    key = key_text(node)
    if not node.indicated_string and resolve(key).kind != "str":
        raise Unreadable("has a key that is a number, a boolean or a date to bruin's parser, not text" + _QUOTE)
    return key


def _scalar(node: Node, expected: str | None) -> Any:
    text = str(node.value)
    resolved = _Resolved("str", text) if node.indicated_string else resolve(text)
    if resolved.kind == "null":
        return None  # the field keeps its zero value, as bruin's would
    if expected == "string":
        return text  # out.SetString(n.Value): the text as written, whatever it resolves to
    if resolved.kind == "special":
        raise Unreadable("is a date, a merge key, NaN or an infinity to bruin's parser, which a Vault secret "
                         "(JSON) cannot hold" + _QUOTE)
    if expected == "integer":
        return _as_int(resolved)
    if expected == "number":
        if resolved.kind not in ("int", "float"):
            raise Unreadable("is not a number, which bruin's number field needs; bruin would fail to load the file")
        return float(resolved.value) if resolved.kind == "float" else resolved.value
    if expected == "boolean":
        return _as_bool(resolved)
    return resolved.value  # untyped, or a type bruin's schema does not give: validate() judges it


def _as_int(resolved: _Resolved) -> int:
    if resolved.kind == "int" and INT64[0] <= resolved.value <= INT64[1]:
        return int(resolved.value)
    if resolved.kind == "float" and resolved.value.is_integer() and -(2.0**63) <= resolved.value < 2.0**63:
        return int(resolved.value)  # yaml.v3 sets a whole float into an int field: `1e3` is 1000
    if resolved.kind in ("int", "float"):
        raise Unreadable("is not a whole number within 64 bits, which bruin's integer field would cut or refuse; "
                         "write the integer bruin should get")
    raise Unreadable("is not an integer to bruin's parser; bruin would fail to load the file")


def _as_bool(resolved: _Resolved) -> bool:
    if resolved.kind == "bool":
        return bool(resolved.value)
    if resolved.kind == "str" and resolved.value in _YES | _NO:
        return resolved.value in _YES  # yaml.v3 reads YAML 1.1's words into a bool field only
    raise Unreadable("is not a boolean to bruin's parser; bruin would fail to load the file")


def resolve(text: str) -> _Resolved:
    """A plain scalar as yaml.v3's `resolve` reads it without a tag (resolve.go)."""
    if text in _NULLS:
        return _Resolved("null", None)
    if text in _BOOLS:
        return _Resolved("bool", _BOOLS[text])
    if text in _OTHER_FLOATS or text == "<<":
        return _Resolved("special", text)
    first = text[0]
    if first == ".":  # Go's ParseFloat as it is: no `_` between digits, unlike Python's float()
        number = _go_float(text) if "_" not in text else None
        return _Resolved("float", number) if number is not None else _Resolved("str", text)
    if first not in "+-0123456789":
        return _Resolved("str", text)
    if _DATE_START.match(text):
        # yaml.v3 tries Go's time formats first; none of these is a number, so such a text is a date
        # or a string, and in an untyped field the tool cannot be sure which: refused there.
        return _Resolved("special", text)
    plain = text.replace("_", "")
    integer = _go_int(plain)
    if integer is not None:
        return _Resolved("int", integer)
    if _YAML_FLOAT.fullmatch(plain):
        number = _go_float(plain)
        if number is not None:
            return _Resolved("float", number)
        if not _overflows(plain):
            return _Resolved("special", text)  # an underflow: Go and Python may disagree
    return _Resolved("str", text)  # including a float past float64, which Go's ParseFloat refuses


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), else strconv.ParseUint(text, 0, 64): a sign, then 0x, 0o, 0b or a
    leading 0 (octal) choose the base."""
    sign, body = (-1 if text[:1] == "-" else 1), text.lstrip("+-") if text[:1] in "+-" else text
    if len(text) - len(body) > 1:
        return None  # one sign at most
    prefix = body[:2].lower()
    base, digits = {"0x": (16, body[2:]), "0o": (8, body[2:]), "0b": (2, body[2:])}.get(prefix, (10, body))
    if base == 10 and len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    if not digits or any(c not in _DIGITS[base] for c in digits):
        return None
    value = sign * int(digits, base)
    if INT64[0] <= value <= INT64[1]:
        return value
    unsigned = text[:1] not in "+-" and value < 2**64  # ParseUint takes no sign
    return value if unsigned else None


def _go_float(text: str) -> float | None:
    """strconv.ParseFloat for the decimal forms yaml.v3 lets through; None where Go reports a range error
    (past float64) or the two might disagree (an underflow to zero)."""
    try:
        number = float(text)
    except ValueError:
        return None
    mantissa = re.split("[eE]", text)[0]
    if math.isinf(number) or (number == 0 and any(c in "123456789" for c in mantissa)):
        return None
    return number


def _overflows(text: str) -> bool:
    try:
        return math.isinf(float(text))
    except ValueError:
        return False
