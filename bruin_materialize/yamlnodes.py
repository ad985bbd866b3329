"""A YAML document as nodes (text, style, tag), built from the parser's events, and the bounds every
YAML the tool reads must keep.

bruin reads its config with Go's yaml.v3, which decodes a scalar by the field it lands in: a string
field gets the scalar's text as written. So the importer needs the text and style of each scalar,
not a value a YAML 1.2 loader already resolved; ruamel's C parser gives them as events, and nodes
are built here without recursion (a document nested 10,000 deep would overflow Python's stack in
ruamel's own composer).

The bounds: nesting at most MAX_DEPTH levels, and alias expansion held to yaml.v3's own rule
(`allowedAliasRatio` in its decode.go): a document that yaml.v3 refuses for "excessive aliasing"
(an alias bomb: a few lines that expand to billions of nodes) is refused here before anything
walks it. The expanded size is counted, never built, so checking a bomb takes as long as reading
its text.
"""

from __future__ import annotations

from typing import Any, NamedTuple

MAX_DEPTH = 64  # a .bruin.yml is 6 levels deep; a connection's own values are checked at 32 (validate.py)
_STR = "tag:yaml.org,2002:str"


class Node:
    """A scalar (value: its text), a sequence (value: nodes) or a mapping (value: (key, value) pairs).

    `tag` is the tag written in the document, None when there is none (or `!`); `style` is a scalar's
    ("" plain, `'` `"` `|` `>`); `size` counts the nodes it stands for with every alias expanded.
    """

    __slots__ = ("kind", "value", "tag", "style", "line", "size")

    def __init__(self, kind: str, value: Any, tag: str | None, style: str, line: int) -> None:
        self.kind, self.value, self.tag, self.style, self.line = kind, value, tag, style, line
        self.size = 1

    @property
    def plain(self) -> bool:
        return self.kind == "scalar" and not self.style

    @property
    def indicated_string(self) -> bool:
        """yaml.v3's `indicatedString`: quoted or block text without a tag, or tagged !!str."""
        return self.kind == "scalar" and (self.tag == _STR or (self.tag is None and bool(self.style)))


class Refused(NamedTuple):
    line: int  # 1-based; 0 when it is the document as a whole
    message: str


class TooComplex(Exception):
    """The document breaks a bound: args[0] is a Refused."""


def compose(text: str) -> Node | None:
    """The single document in `text` as nodes (None when empty). ruamel's YAMLError for bad YAML;
    TooComplex for a document nested too deep or aliased beyond yaml.v3's limit."""
    from ruamel.yaml import YAML
    from ruamel.yaml.events import AliasEvent, CollectionStartEvent, DocumentStartEvent, ScalarEvent

    anchors: dict[str, Node] = {}
    stack: list[Node] = []
    root: list[Node] = []
    documents = aliased = 0
    for event in YAML(typ="safe").parse(text):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise TooComplex(Refused(line, "holds more than one YAML document"))
        elif isinstance(event, (ScalarEvent, CollectionStartEvent)):
            tag = event.tag if event.tag not in (None, "!") else None
            if isinstance(event, ScalarEvent):
                _add(stack, root, _anchored(anchors, event.anchor, Node("scalar", event.value, tag, event.style or "",
                                                                        line)))
                continue
            kind = "mapping" if type(event).__name__ == "MappingStartEvent" else "sequence"
            stack.append(_anchored(anchors, event.anchor, Node(kind, [], tag, "", line)))
            if len(stack) > MAX_DEPTH:
                raise TooComplex(Refused(line, f"is nested more than {MAX_DEPTH} levels deep"))
        elif isinstance(event, AliasEvent):
            target = anchors.get(event.anchor)
            if target is None or any(target is open_ for open_ in stack):
                raise TooComplex(Refused(line, "uses an alias (*NAME) whose anchor (&NAME) is not complete before it"))
            aliased += target.size
            _add(stack, root, target)
        elif type(event).__name__ in ("MappingEndEvent", "SequenceEndEvent"):
            node = stack.pop()
            if node.kind == "mapping":
                node.value = list(zip(node.value[::2], node.value[1::2], strict=True))
            _add(stack, root, node)
    document = root[0] if root else None
    _check_aliasing(document.size if document is not None else 0, aliased)
    return document


def _anchored(anchors: dict[str, Node], anchor: str | None, node: Node) -> Node:
    if anchor is not None:
        anchors[anchor] = node  # a later anchor of the same name replaces it, as in every YAML reader
    return node


def _add(stack: list[Node], root: list[Node], node: Node) -> None:
    if stack:
        parent = stack[-1]
        parent.value.append(node)
        parent.size += node.size
    else:
        root.append(node)


def _check_aliasing(decoded: int, aliased: int) -> None:
    """yaml.v3's rule (decode.go): past 100 aliased nodes and 1,000 in all, aliases may make up 99% of
    the nodes up to 400,000 nodes, falling to 10% at 4,000,000."""
    if aliased > 100 and decoded > 1000 and aliased / decoded > _allowed_alias_ratio(decoded):
        raise TooComplex(Refused(0, "expands its aliases (*NAME) beyond what bruin's YAML parser accepts "
                                    "(\"excessive aliasing\"); write the values out"))


def _allowed_alias_ratio(decoded: int) -> float:
    low, high = 400_000, 4_000_000
    if decoded <= low:
        return 0.99
    if decoded >= high:
        return 0.10
    return 0.99 - 0.89 * (decoded - low) / (high - low)
