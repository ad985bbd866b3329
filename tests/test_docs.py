"""The documentation agrees with the code where it can drift: every exit code the docs mention is
errors.ExitCode's, the README stays short and its links resolve, and nothing says the entrypoint
becomes bruin, which it does only in replace mode."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bruin_materialize.errors import ExitCode
from testsupport.paths import REPO_DIR

README = REPO_DIR / "README.md"
DOCS = sorted((REPO_DIR / "docs").glob("*.md"))
PAGES = [README, *DOCS]
# A signal's code (128+N) is the shell's, not ours: HUP, INT, QUIT, KILL, TERM.
SIGNAL_CODES = {129, 130, 131, 137, 141, 143}
# What each code means, in the words the docs use for it: a sentence giving a code for one of these
# meanings must give that code.
MEANINGS = {
    ExitCode.CHANGES: re.compile(r"\b(drift|would change|changes?\b(?! nothing)|differs?|differences?)", re.I),
    ExitCode.INVALID: re.compile(r"\binvalid (secrets?|connections?)\b", re.I),
    ExitCode.INTERNAL: re.compile(r"\binternal error\b", re.I),
}
_FOR = re.compile(r"\b(\d+) (?:for|when|if) ([^,;)]+)")  # "exit 0, 5 for plan changes"
# Case-blind: a sentence may start with "Exit 0 when ...".
_CODE = re.compile(r"\bexit(?:s| code| codes| with)?:? ((?:\d+(?![+\d])(?:, | or | and |/)?)+)", re.I)  # not 128+N
_NEGATED = re.compile(r"(?:nothing|no)\b")  # "0 when nothing would change": the opposite, 0
_TABLE_ROW = re.compile(r"^\| (\d+)(?: \([^|]*\))? \| (.*) \|$")


def sentences(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # commands, not prose
    return [" ".join(s.split()) for s in re.split(r"(?<=[.;])\s+|\n\s*\n|\n(?=[|-] )", text)]


def codes_in(sentence: str) -> list[int]:
    if re.search(r"\bbruin(?:'s own| exits)\b", sentence):  # bruin's own exit code, passed on
        return []
    return [int(n) for match in _CODE.finditer(sentence) for n in re.findall(r"\d+", match.group(1))]


def exit_code_table(page: Path) -> dict[int, str]:
    """code → its rows' meanings, joined"""
    text = page.read_text(encoding="utf-8")
    section = text[text.index("## Exit codes"):]
    table: dict[int, str] = {}
    for m in filter(None, map(_TABLE_ROW.match, section.splitlines())):
        table[int(m.group(1))] = table.get(int(m.group(1)), "") + " " + m.group(2)
    return table


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_exit_code_mentioned_is_one_of_ours(page: Path) -> None:
    known = {int(code) for code in ExitCode} | SIGNAL_CODES
    for sentence in sentences(page):
        for code in codes_in(sentence):
            assert code in known, (page.name, code, sentence)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_a_code_given_for_a_meaning_is_that_meanings_code(page: Path) -> None:
    for sentence in sentences(page):
        if codes_in(sentence):  # "exit 0, 1 for plan changes, 2, ...": each code beside its meaning
            for number, meaning_text in _FOR.findall(sentence):
                for code, meaning in MEANINGS.items():
                    if meaning.search(meaning_text):
                        expected = ExitCode.OK if _NEGATED.match(meaning_text) else code
                        assert int(number) == expected, (page.name, f"{number} for {meaning_text}", sentence)
        codes = set(codes_in(sentence)) - {0} - SIGNAL_CODES
        for code, meaning in MEANINGS.items():
            if codes and meaning.search(sentence) and len(codes) == 1:
                [given] = codes
                others = [c for c, m in MEANINGS.items() if c != code and m.search(sentence)]
                assert given == code or given in others, (page.name, sentence)


def test_the_exit_code_table_is_errors_exit_code() -> None:
    table = exit_code_table(REPO_DIR / "docs" / "usage.md")
    assert {code for code in table if code < 128} == {int(code) for code in ExitCode}
    words = {ExitCode.OK: "ok", ExitCode.INTERNAL: "internal error", ExitCode.USAGE: "usage",
             ExitCode.VAULT: "Vault", ExitCode.INVALID: "invalid secrets", ExitCode.CHANGES: "would change"}
    for code, word in words.items():
        assert word in table[int(code)], (code, table[int(code)])


def test_the_help_lists_the_same_exit_codes() -> None:
    from bruin_materialize.options import EXIT_CODES

    listed = [line.split()[0] for line in EXIT_CODES.splitlines()[1:]]
    assert listed == [str(int(code)) for code in ExitCode] + ["128+N"]


def test_nothing_says_the_entrypoint_becomes_bruin_but_for_replace_mode() -> None:
    for page in [*PAGES, REPO_DIR / "Dockerfile", *sorted((REPO_DIR / "deploy").rglob("*.yaml"))]:
        text = " ".join(page.read_text(encoding="utf-8").split())
        for match in re.finditer(r"[^.]*\*?becom(?:e|es|ing)\*? (?:`?bruin|it\b)[^.]*", text):
            assert re.search(r"replace|execve", match.group(0)), (page.name, match.group(0))


def test_the_readme_is_short_and_its_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for section in ("## Two commands", "## Usage", "## Three ways to run it", "## Documentation"):
        assert section in text
    usage = text[text.index("## Usage"):]
    block = usage[usage.index("```sh\n") + 6:usage.index("```", usage.index("```sh\n") + 6)]
    assert len(block.splitlines()) <= 10


# Every Markdown page of the project: the README, docs/, and those beside them.
LINKED = sorted({*PAGES, *REPO_DIR.glob("*.md"), *(REPO_DIR / "bench").glob("*.md"),
                 *(REPO_DIR / "bruin_materialize").rglob("*.md")})
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)  # a link in a code block is not one


def anchors(page: Path) -> set[str]:
    """The fragments GitHub gives the page's headings: lower case, only letters, digits, `-` and `_`,
    spaces as `-`, a repeated heading's with -1, -2, ..."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+?)#*$", _prose(page.read_text(encoding="utf-8")), re.M):
        shown = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link's text, not its target
        slug = re.sub(r"[^\w\- ]", "", shown.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


@pytest.mark.parametrize("page", LINKED, ids=[str(p.relative_to(REPO_DIR)) for p in LINKED])
def test_links_resolve_to_a_file_and_its_heading(page: Path) -> None:
    for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path) if path else page
        assert linked.exists(), (page.name, target)
        if fragment and linked.suffix == ".md":
            assert fragment in anchors(linked), (page.name, target)


def test_anchors_are_githubs() -> None:
    page = REPO_DIR / "docs" / "deployment.md"
    assert {"3-kubernetes-init-container--unmodified-bruin", "migrating-from-bruins---secrets-backend-vault",
            "with-a-service-mesh-istio-linkerd"} <= anchors(page)


def unreleased() -> str:
    text = (REPO_DIR / "CHANGELOG.md").read_text(encoding="utf-8")
    start = text.index("## [Unreleased]")
    return text[start:text.index("\n## [", start)]


def test_the_changelog_names_what_the_command_line_gained_since_the_first_release() -> None:
    """The changelog's public interface is the command line, the document and the file: the settings
    and the reference shape added since 0.1.0 are each named where users look for them."""
    from bruin_materialize.settings import EXTRA_PATHS, ON_COLLISION_OPTION

    text = unreleased()
    for option in (EXTRA_PATHS, ON_COLLISION_OPTION):
        for name in (*option.flags, option.variable):
            assert f"`{name}`" in text or f"`{name} " in text, name
    for named in ('{"$vault": PATH, "field": KEY}', "`leases`", "`references`", "`source`", "`source_changed`",
                  "pycurl"):
        assert named in text, named
