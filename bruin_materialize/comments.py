"""Comments stay with what they describe when merge.py removes or appends an entry.

ruamel.yaml keeps a comment line on the node *before* it: the comment above list entry 2 lives on
entry 1's last scalar (after that scalar's own end-of-line comment), the comments at the end of a
list on its last entry. Removing entry 1 would take entry 2's comment with it; appending after the
last entry would put the list's closing comments above the new one. So:

- removing an item: its own comments (the ones above it and on its lines) go with it; the lines
  that followed it (the next item's, or the list's end) move to the item before it, or become the
  lines above the first item;
- appending an item: the lines after the last item move past the new one.

Which item a comment line closes is told by its indentation: lines indented deeper than an item's
column close the item above them ("# end of list" under its last entry); the others precede
whatever comes next.

A trailing comment token's text is "EOL\\nFOLLOWING": EOL is the comment on the item's last line
(or nothing), FOLLOWING the whole comment lines after it, indentation included.
"""

from __future__ import annotations

from typing import Any

_SEQ_SLOT, _MAP_SLOT = 0, 2  # where ruamel keeps the comment after a value: ca.items[key][slot]


def remove(parent: Any, key: Any, within: tuple[Any, Any]) -> None:
    """del parent[key] (a key of a mapping, an index of a sequence), keeping the neighbours' comments.
    `within`: the mapping and key holding `parent`, which share the comment lines above its first item."""
    keys = _own_keys(parent)
    position = keys.index(key)
    column = _column(parent, key)
    following = _deeper(_split(_trailing_text(parent, key))[1], column, keep_deeper=False)
    if position > 0:
        previous = keys[position - 1]
        eol, before = _split(_trailing_text(parent, previous))
        # The previous item's own closing lines (indented deeper than the removed one) stay with it.
        _set_trailing(parent, previous, eol, _deeper(before, column, keep_deeper=True) + following)
    else:
        _set_leading(parent, following, within)  # the lines above the first item were the removed one's
    del parent[key]


def append(parent: Any, key: Any, value: Any) -> None:
    """parent[key] = value for a new key (a mapping), or parent.append(value) (key None: a sequence),
    after the last item's comment lines' owner: those lines stay after the last item."""
    keys = _own_keys(parent)
    following = ""
    if keys:
        eol, lines = _split(_trailing_text(parent, keys[-1]))
        column = _column(parent, keys[-1])  # the new item's too: they are siblings
        following = _deeper(lines, column, keep_deeper=False)
        _set_trailing(parent, keys[-1], eol, _deeper(lines, column, keep_deeper=True))
    if key is None:
        parent.append(value)
        key = len(parent) - 1
    else:
        parent[key] = value
    if following:
        _set_trailing(parent, key, "", following)


def _column(parent: Any, key: Any) -> int | None:
    """The column an item of the base starts at; None for one made here, which has no place in the text."""
    lc: Any = getattr(parent, "lc", None)  # ruamel's line and column record, of what it read
    try:
        column = lc.item(key)[1] if isinstance(parent, list) else lc.key(key)[1]
    except (AttributeError, KeyError, TypeError):
        return None
    return int(column)


def _deeper(lines: str, column: int | None, *, keep_deeper: bool) -> str:
    """The comment lines indented deeper than `column` (they close the item above them, as "# end of
    list" does), or the others (they precede what comes next); blank lines go with the comments."""
    if column is None:
        return "" if keep_deeper else lines
    kept = [line for line in lines.splitlines(keepends=True)
            if not line.strip() or (len(line) - len(line.lstrip(" ")) > column) == keep_deeper]
    return "".join(kept) if any(line.strip() for line in kept) else ""


def _own_keys(parent: Any) -> list[Any]:
    if isinstance(parent, list):
        return list(range(len(parent)))
    return [k for k, _ in parent.non_merged_items()]  # a `<<` merge's keys are written where they come from


def _split(text: str) -> tuple[str, str]:
    eol, _, following = text.partition("\n")
    return eol, following


def _slot(parent: Any, key: Any, *, create: bool) -> tuple[list[Any], int] | None:
    """The list and index holding the comment after parent[key], descending into a block collection,
    whose last scalar carries it; created when asked."""
    index = _SEQ_SLOT if isinstance(parent, list) else _MAP_SLOT
    entry = parent.ca.items.get(key)
    if entry is not None and entry[index] is not None:
        return entry, index
    value = parent[key]
    if isinstance(value, (dict, list)) and _own_keys(value) and not _is_flow(value):
        return _slot(value, _own_keys(value)[-1], create=create)
    if not create:
        return None
    if entry is None:
        entry = parent.ca.items[key] = [None, None, None, None]
    return entry, index


def _is_flow(node: Any) -> bool:
    fa = getattr(node, "fa", None)
    return bool(fa is not None and fa.flow_style())


def _trailing_text(parent: Any, key: Any) -> str:
    found = _slot(parent, key, create=False)
    if found is None:
        return ""
    token = found[0][found[1]]
    return str(token.value) if token is not None else ""


def _set_trailing(parent: Any, key: Any, eol: str, following: str) -> None:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    if not eol and not following:
        found = _slot(parent, key, create=False)
        if found is not None:
            found[0][found[1]] = None
        return
    holder, index = _slot(parent, key, create=True)  # type: ignore[misc]  # create=True always finds one
    text = f"{eol}\n{following}"
    if holder[index] is None:
        holder[index] = CommentToken(text, CommentMark(0))
    else:
        holder[index].value = text


def _set_leading(parent: Any, following: str, within: tuple[Any, Any]) -> None:
    """The comment lines above a collection's first item, now the given lines. ruamel keeps them twice,
    as one list: the collection's ca.comment[1] and its holding key's ca.items[key][3]; an empty list
    there breaks its emitter (`key:   - item`), so no lines is None in both."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    tokens = [CommentToken(line.lstrip(" ") + "\n", CommentMark(len(line) - len(line.lstrip(" "))))
              for line in following.splitlines()]
    holder, key = within
    slots = holder.ca.items.get(key)
    if not tokens:
        parent.ca.comment = None
        if slots is not None:
            slots[3] = None
        return
    parent.ca.comment = [None, tokens]
    if slots is None:
        slots = holder.ca.items[key] = [None, None, None, None]
    slots[3] = tokens
