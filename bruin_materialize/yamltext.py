"""One value as YAML 1.2 text: JSON, with what YAML will not take raw escaped.

JSON is YAML 1.2, so the parser reads back the same data with the same types. Escaped on top of
JSON: C1 controls, DEL, line and paragraph separators (YAML 1.1 parsers break lines there), BOM
and non-characters. Non-ASCII text stays UTF-8, never \\u escapes: bruin's yaml.v3 refuses the
surrogate pairs that astral characters would need.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")

# YAML limits an implicit key to 1024 characters; past that a parser stops reading it as a key.
MAX_KEY = 1024


def to_yaml(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    if text.isascii() and "\x7f" not in text:  # the usual case, no regex scan (DEL: the one ASCII in _UNSAFE)
        return text
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# Characters that would change what a terminal shows: C0/C1 controls (ESC starts an escape
# sequence, a newline forges a second message), DEL, line separators, and the invisible and
# bidirectional formatting marks that reorder or hide text.
_INVISIBLE = "\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_SHOWN_RAW = re.compile(f"[^\\s\"',(){_INVISIBLE}]+")
_INVISIBLE_CHAR = re.compile(f"[{_INVISIBLE}]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def show(name: str) -> str:
    """A name from Vault or a file (environment, connection, type, field) as it can stand in a
    one-line message: as is when plain, else quoted with every control or invisible character escaped."""
    if _SHOWN_RAW.fullmatch(name):
        return name
    return _INVISIBLE_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", to_yaml(name))


def visible(message: str) -> str:
    """A message as one line that cannot drive the terminal: whatever reached it unquoted from
    Vault, every control or invisible character shows as its escape (\\x1b, \\n)."""
    return _INVISIBLE_CHAR.sub(_escape, message)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def parse(text: str) -> Any:
    """Read YAML 1.2 back (check, plan): ruamel's C loader when ruamel.yaml.clib is installed, ten
    times faster than its pure-Python one; both resolve scalars by YAML 1.2 (`yes` stays a string)."""
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)


def load_file(path: Path, what: str = "", load: Callable[[str], Any] = parse) -> Any:
    """A YAML file the user named, read with `load`; errors are exit 2 and name the line, never
    quote it: the file may hold credentials, and YAML errors quote the document. `what` names the
    file's role in messages ("the base file"). The file is read as every local file is (files.py:
    a regular file, bounded), and held to the bounds of yamlnodes before `load` walks it."""
    text, _ = read_yaml(path, what)
    with _yaml_errors(_shown(path, what), text), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ruamel warns of a reused anchor by printing the lines around it
        return load(text)


def read_yaml(path: Path, what: str = "") -> tuple[str, Any]:
    """The file's text and its document as a yamlnodes.Node (None when empty), bounds checked."""
    from bruin_materialize.errors import usage_error
    from bruin_materialize.files import read_text
    from bruin_materialize.yamlnodes import TooComplex, compose

    shown = _shown(path, what)
    text = read_text(path, shown)
    with _yaml_errors(shown, text):
        try:
            return text, compose(text)
        except TooComplex as exc:
            line, message = exc.args[0]
            raise usage_error(f"{shown}{f' at line {line}' if line else ''} {message}") from None


def _shown(path: Path, what: str) -> str:
    return f"{what} {path}" if what else str(path)


@contextlib.contextmanager
def _yaml_errors(shown: str, text: str) -> Iterator[None]:
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    from bruin_materialize.errors import usage_error

    try:
        yield
    except YAMLError as exc:
        mark = exc.problem_mark if isinstance(exc, MarkedYAMLError) else None
        where = f" at line {mark.line + 1}" if mark is not None else ""
        index = getattr(mark, "index", None)
        at_tab = isinstance(index, int) and text[index:index + 1] == "\t"  # the C loader does not name it
        raise usage_error(f"{shown} is not valid YAML{where}: {yaml_problem(exc, at_tab)}") from None


# Quoted in ruamel's problems: the grammar's own tokens, kept; anything else is the document's text.
_GRAMMAR_TOKEN = re.compile(r"'(?:[,\[\]{}?:-]|<[a-z ]+>)'")
_QUOTED = re.compile(r"""\s*(?:'[^']*'|"[^"]*")""")


def yaml_problem(exc: Exception, at_tab: bool = False) -> str:
    """What is wrong, as ruamel says it, without a word of the document (a key, a value, an alias)."""
    from ruamel.yaml.constructor import DuplicateKeyError

    if isinstance(exc, DuplicateKeyError):
        return "a mapping has the same key twice (a duplicate key)"
    problem = str(getattr(exc, "problem", None) or "")
    if at_tab or "'\\t'" in problem:
        return "a tab where YAML allows only spaces (indentation is spaces only)"
    if "duplicate anchor" in str(getattr(exc, "context", None) or ""):
        return "an anchor is defined twice (a duplicate anchor)"
    parts = _GRAMMAR_TOKEN.split(problem)  # the tokens between the parts stay, quoted text in the parts goes
    problem = "".join(_QUOTED.sub("", part) + token for part, token in
                      zip(parts, [*_GRAMMAR_TOKEN.findall(problem), ""], strict=True))
    context = str(getattr(exc, "context", None) or "")
    if context.startswith("while ") and not _QUOTED.search(context):
        problem = f"{problem} {context}"
    return problem or "unreadable"
