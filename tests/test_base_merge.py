"""Merging Vault's connections into a base file (merge.py): anchors, aliases and `<<` merge keys,
comments, and the rule for a name both hold, as a property over generated base files.

A generated base is written in the layout ruamel writes back (mapping indent 2, sequence 4, offset
2), with block and flow entries, entries that merge an anchored mapping, comments above, on and
after entries, at the end of lists and between environments. Each line of it is tagged with what
owns it (an entry, a list, nothing), so the property can say which lines must still be there, in
the same order, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from bruin_materialize import merge
from bruin_materialize.errors import ExitCode, MaterializeError
from bruin_materialize.validate import Connection
from testsupport.values import examples

ENVIRONMENTS = ("dev", "staging", "prod")
TYPES = ("postgres", "duckdb")
NAMES = ("a", "b", "c", "d")
DEFAULT = "dev"

Owner = tuple[str, ...] | None  # ("entry", env, type, index), ("list", env, type) or None: the file's own


@dataclass
class BaseFile:
    lines: list[tuple[str, Owner]] = field(default_factory=list)
    shared: str | None = None  # the alias or merge key that makes two write places one node

    def add(self, text: str, owner: Owner = None) -> None:
        self.lines.append((text, owner))

    @property
    def text(self) -> str:
        return "".join(f"{line}\n" for line, _ in self.lines)


def safe(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


@st.composite
def entries(draw: st.DrawFn, env: str, conn_type: str, base: BaseFile, counter: list[int]) -> None:
    for index, name in enumerate(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))):
        owner = ("entry", env, conn_type, str(index))
        counter[0] += 1
        if draw(st.booleans()):
            base.add(f"        # above {env}/{conn_type}/{index} c{counter[0]}", owner)
        eol = f"  # on {env}/{conn_type}/{index}" if draw(st.booleans()) else ""
        style = draw(st.sampled_from(["block", "flow", "merge"]))
        if style == "flow":
            base.add(f"        - {{name: {name}, host: h{index}}}{eol}", owner)
        elif style == "merge":
            base.add("        - <<: *defaults", owner)
            base.add(f"          name: {name}{eol}", owner)
        else:
            base.add(f"        - name: {name}{eol}", owner)
            base.add(f'          host: "h{index}"', owner)
    if draw(st.booleans()):
        base.add(f"        # end of {env}/{conn_type}", ("list", env, conn_type))


@st.composite
def base_files(draw: st.DrawFn) -> BaseFile:
    base = BaseFile()
    base.add("# the team's file")
    base.add("x-defaults: &defaults {host: shared.internal, port: 5432}")
    base.add(f"default_environment: {DEFAULT}")
    base.add("environments:")
    names = draw(st.lists(st.sampled_from(ENVIRONMENTS), min_size=1, max_size=3, unique=True))
    counter = [0]
    for position, env in enumerate(names):
        if position > 0 and draw(st.integers(0, 9)) == 0:  # sharing with the first environment: refused
            share(base, names[0], env, draw(st.sampled_from(["env", "merge", "connections"])))
            continue
        base.add(f"  {env}:", ("environment", env))
        if draw(st.booleans()):
            base.add(f"    schema_prefix: {env}_")
        if draw(st.booleans()):
            base.add("    config: {full_refresh_restricted: true}")
        base.add("    connections:", ("connections", env))
        for conn_type in draw(st.lists(st.sampled_from(TYPES), max_size=2, unique=True)):
            if draw(st.booleans()):
                base.add(f"      # above {env}/{conn_type}", ("list", env, conn_type))
            base.add(f"      {conn_type}:", ("list", env, conn_type))
            draw(entries(env, conn_type, base, counter))
        if draw(st.booleans()):
            base.add(f"    # after {env}'s connections")
    if draw(st.booleans()):
        base.add("# the end")
    return base


def share(base: BaseFile, first: str, env: str, how: str) -> None:
    """`env` as an alias of the first environment, a `<<` merge of it, or its connections an alias of
    the first's (when those are a mapping: an alias of null shares no place to write)."""
    if how == "connections" and not any(owner and owner[:2] == ("list", first) for _, owner in base.lines):
        how = "env"
    anchor = f"conn_{first}" if how == "connections" else f"env_{first}"
    marked = ("connections", first) if how == "connections" else ("environment", first)
    base.lines = [(f"{line} &{anchor}" if owner == marked and not line.endswith(anchor) else line, owner)
                  for line, owner in base.lines]
    if how == "env":
        base.add(f"  {env}: *{anchor}")
    else:
        base.add(f"  {env}:")
        base.add(f"    <<: *{anchor}" if how == "merge" else f"    connections: *{anchor}")
    base.shared = base.shared or f"*{anchor}"


vault_sets = st.dictionaries(
    st.sampled_from(ENVIRONMENTS),
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(TYPES)), max_size=3, unique_by=lambda c: c[0]),
    max_size=3,
)


def connections(found: list[tuple[str, str]], env: str) -> list[Connection]:
    return [Connection(t, n, {"name": n, "host": f"vault-{env}-{n}"}) for n, t in found]


def expected_environment(base_env: Any, vault: list[Connection], prefer: str | None) -> dict[str, list[Any]]:
    """base ∪ Vault for one environment: a name both hold is the preferred side's; Vault's are appended."""
    result: dict[str, list[Any]] = {t: list(es or []) for t, es in ((base_env or {}).get("connections") or {}).items()}
    base_names = {e["name"] for es in result.values() for e in es}
    for conn in vault:
        if conn.name in base_names:
            if prefer == "base":
                continue
            result = {t: [e for e in es if e["name"] != conn.name] for t, es in result.items()}
            result = {t: es for t, es in result.items() if es}
        result.setdefault(conn.type, []).append(conn.fields)
    return result


def kept_lines(base: BaseFile, removed: set[tuple[str, str]], emptied: set[tuple[str, str]],
               filled: set[str]) -> list[str]:
    """The base's lines that must still be in the file: all but removed entries' and emptied lists'."""
    doc = safe(base.text)
    kept = []
    for line, owner in base.lines:
        if owner is not None and owner[0] == "entry":
            env, conn_type, index = owner[1], owner[2], int(owner[3])
            name = doc["environments"][env]["connections"][conn_type][index]["name"]
            if (env, name) in removed:
                continue
        if owner is not None and owner[0] == "list" and (owner[1], owner[2]) in emptied:
            continue
        if owner is not None and owner[0] == "connections" and owner[1] in filled:
            continue  # `connections:` (null) of an environment Vault writes to becomes a mapping
        kept.append(line)
    return kept


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(line == other for other in it) for line in needle)


@settings(max_examples=examples(0.1, 30))
@given(base=base_files(), vault=vault_sets, prefer=st.sampled_from([None, "vault", "base"]))
def test_any_base_merged_with_any_vault_set_is_base_union_vault(base: BaseFile, vault: dict[str, Any],
                                                                prefer: str | None, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("base") / "base.yml"
    path.write_text(base.text, encoding="utf-8")
    if base.shared is not None:
        with pytest.raises(MaterializeError) as refused:
            merge.load_base(path)
        assert refused.value.exit_code == ExitCode.USAGE and base.shared in refused.value.message
        return
    loaded = merge.load_base(path)
    vault_envs = [(env, connections(found, env)) for env, found in vault.items()]
    merged = merge.merge(loaded, vault_envs, DEFAULT, prefer)
    before = safe(base.text)
    base_envs = before["environments"]
    expected_collisions = sorted((env, c.name) for env, conns in vault_envs for c in conns
                                 if any(e["name"] == c.name for es in ((base_envs.get(env) or {}).get("connections")
                                                                       or {}).values() for e in es or []))
    assert sorted((c.environment, c.name) for c in merged.collisions) == expected_collisions
    if prefer is None and expected_collisions:
        return  # the caller refuses the run (exit 4); nothing is written
    after = safe(text := merge.dump(merged.doc, "# header"))
    assert {k: v for k, v in after.items() if k != "environments"} == {k: v for k, v in before.items()
                                                                        if k != "environments"}
    assert list(after["environments"]) == list(base_envs) + [e for e in vault if e not in base_envs]
    for env, conns in vault_envs:
        settings = {k: v for k, v in (base_envs.get(env) or {}).items() if k != "connections"}
        assert {k: v for k, v in after["environments"][env].items() if k != "connections"} == settings
        assert (after["environments"][env].get("connections") or {}) == expected_environment(
            base_envs.get(env), conns, prefer)
    for env in base_envs:
        if env not in vault:
            assert after["environments"][env] == base_envs[env]  # untouched, aliases and merges resolved alike
    removed = {(env, name) for env, name in expected_collisions} if prefer == "vault" else set()
    emptied = {(env, t) for env in vault if env in base_envs
               for t, es in ((base_envs[env] or {}).get("connections") or {}).items()
               if es and all((env, e["name"]) in removed for e in es)}
    # Every other byte of the base: each line not belonging to a replaced entry is there, in order.
    filled = {env for env in vault if env in base_envs and not (base_envs[env] or {}).get("connections")}
    assert is_subsequence(kept_lines(base, removed, emptied, filled), text.splitlines()[1:])


# --- anchors and aliases: each way two write places become one ----------------------------------


@pytest.mark.parametrize(("text", "alias"), [
    ("environments:\n  default:\n    connections: &c\n      duckdb:\n        - name: x\n          path: /a\n"
     "  staging:\n    connections: *c\n", "environments.staging.connections and environments.default.connections are "
     "one node (the alias *c)"),
    ("environments:\n  default: &d\n    connections: {}\n  staging: *d\n",
     "environments.staging and environments.default are one node (the alias *d)"),
    ("environments:\n  default: &d\n    connections:\n      duckdb: []\n  staging:\n    <<: *d\n",
     "(the alias *d)"),
    ("environments:\n  default:\n    connections:\n      duckdb: &l\n        - name: x\n  staging:\n    connections:\n"
     "      duckdb: *l\n", "environments.staging.connections.duckdb and environments.default.connections.duckdb are "
     "one node (the alias *l)"),
])
def test_a_base_whose_write_places_share_a_node_is_refused(tmp_path: Path, text: str, alias: str) -> None:
    path = tmp_path / "base.yml"
    path.write_text(text)
    with pytest.raises(MaterializeError) as refused:
        merge.load_base(path)
    assert refused.value.exit_code == ExitCode.USAGE
    assert refused.value.message.startswith(f"the base file {path}: ")
    assert alias in refused.value.message
    assert refused.value.message.endswith("so a connection written to one would appear in both; write each out in full")


def test_anchors_inside_entries_are_kept(tmp_path: Path) -> None:
    """An anchored mapping merged into entries is no write place: allowed, and written back as it was."""
    text = ("x-pg: &pg {host: h, port: 5432}\ndefault_environment: dev\nenvironments:\n  dev:\n    connections:\n"
            "      postgres:\n        - <<: *pg\n          name: a\n  prod:\n    connections:\n      postgres:\n"
            "        - <<: *pg\n          name: b\n")
    path = tmp_path / "base.yml"
    path.write_text(text)
    merged = merge.merge(merge.load_base(path), [("dev", connections([("v", "postgres")], "dev"))], "dev", None)
    out = merge.dump(merged.doc, "# h")
    assert out == "# h\n" + text.replace("          name: a\n", '          name: a\n        - name: "v"\n'
                                         '          host: "vault-dev-v"\n')


# --- comments: a removed entry's neighbours keep theirs -------------------------------------------

LIST = """\
default_environment: dev
environments:
  dev:
    connections:
      postgres:
        # above a
        - name: a  # on a
          host: ha
        # above b
        - name: b  # on b
          host: hb
        # above c
        - name: c  # on c
          host: hc
        # end of the list
      duckdb:
        - name: lake
          path: /l
    # after the connections
# end of the file
"""


def replaced(tmp_path: Path, name: str) -> str:
    path = tmp_path / "base.yml"
    path.write_text(LIST)
    vault = [("dev", [Connection("postgres", name, {"name": name, "host": "v"})])]
    return merge.dump(merge.merge(merge.load_base(path), vault, "dev", "vault").doc, "# h")


def without(*entry: str) -> str:
    """LIST without the lines of the entries named, and with Vault's appended at the end of postgres."""
    text = LIST
    for name in entry:
        block = f"        # above {name}\n        - name: {name}  # on {name}\n          host: h{name}\n"
        text = text.replace(block, "")
    return text


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_a_replaced_entry_leaves_its_neighbours_comments_where_they_were(tmp_path: Path, name: str) -> None:
    new = f'        - name: "{name}"\n          host: "v"\n'
    expected = without(name).replace("        # end of the list\n", new + "        # end of the list\n")
    assert replaced(tmp_path, name) == "# h\n" + expected


def test_removing_a_whole_list_keeps_the_comments_around_it(tmp_path: Path) -> None:
    path = tmp_path / "base.yml"
    path.write_text(LIST)
    vault = [("dev", [Connection("duckdb", "lake", {"name": "lake", "path": "/v"})])]
    out = merge.dump(merge.merge(merge.load_base(path), vault, "dev", "vault").doc, "# h")
    assert out == "# h\n" + LIST.replace("        - name: lake\n          path: /l\n",
                                         '        - name: "lake"\n          path: "/v"\n')
    vault = [("dev", [Connection("duckdb", n, {"name": n}) for n in ("a", "b", "c")])]
    out = merge.dump(merge.merge(merge.load_base(path), vault, "dev", "vault").doc, "# h")
    assert out == ("# h\ndefault_environment: dev\nenvironments:\n  dev:\n    connections:\n      duckdb:\n"
                   "        - name: lake\n          path: /l\n"
                   '        - name: "a"\n        - name: "b"\n        - name: "c"\n'
                   "    # after the connections\n# end of the file\n")


def test_appending_keeps_a_lists_closing_comment_at_its_end(tmp_path: Path) -> None:
    path = tmp_path / "base.yml"
    path.write_text(LIST)
    vault = [("dev", [Connection("postgres", "e", {"name": "e"}), Connection("mysql", "m", {"name": "m"})])]
    out = merge.dump(merge.merge(merge.load_base(path), vault, "dev", None).doc, "# h")
    assert out == "# h\n" + LIST.replace(
        "        # end of the list\n", '        - name: "e"\n        # end of the list\n').replace(
        "    # after the connections\n", '      mysql:\n        - name: "m"\n    # after the connections\n')


def test_render_refuses_an_aliased_base_before_any_vault_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from bruin_materialize.cli import main

    base = tmp_path / "base.yml"
    base.write_text("environments:\n  default:\n    connections: &c\n      duckdb:\n        - name: x\n"
                    "  staging:\n    connections: *c\n")
    monkeypatch.setenv("BRUIN_VAULT_HOST", "http://127.0.0.1:9")  # nothing listens: no call may be made
    monkeypatch.setenv("BRUIN_VAULT_TOKEN", "s.not-a-token-at-all")
    out = tmp_path / "out.yml"
    assert main(["render", "-o", str(out), "--base", str(base), "--mount-path", "kv",
                 "--environment-path", "default=a", "--environment-path", "staging=b", "--prefer", "vault"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"materialize: error: the base file {base}: environments.staging.connections and "
        "environments.default.connections are one node (the alias *c), so a connection written to one would appear "
        "in both; write each out in full"]
    assert not out.exists()
