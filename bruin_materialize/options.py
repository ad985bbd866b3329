"""How a table of options becomes argparse options, `--help` and docs/settings.md.

The table itself, one entry per setting, is in settings.py; this module knows no setting by name.
`--help` is the short reference, one line per option (each command's fits in 80 lines): the option
grouped, its value's name (`DURATION`, `PATH`), the variables it is read from and its default, then
the exit codes. docs/settings.md, generated from the same table, explains every setting in full.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, NoReturn, TypeVar

from bruin_materialize import __version__
from bruin_materialize.errors import usage_error

Command = Literal["render", "check", "exec", "plan", "import"]
COMMANDS: tuple[Command, ...] = ("render", "check", "exec", "plan", "import")
PROG = "materialize.py"  # the program's name when nobody says how it was invoked
COMMAND_NAME = "bruin-materialize"  # the installed command, which completion scripts complete
SHELLS = ("bash", "zsh", "fish")  # `completion SHELL`: the shells shtab writes scripts for that we test
T = TypeVar("T")


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting. The flag wins, then `variable`, then each of `fallbacks` (the Vault CLI's, then
    OpenBao's), then `default`; an empty variable counts as unset. Whatever is found is given to
    `parse` with where it came from. A command it does not apply to gets `default` unread."""

    key: str  # the argparse destination, and the name _resolve reads it by
    flags: tuple[str, ...]  # empty: set by its variable only
    variable: str | None  # None: a flag only
    group: str  # a key of GROUPS: where --help and docs/settings.md show it
    help: str  # markdown for docs/settings.md; --help shows its first clause for a flag without a variable
    parse: Callable[[str | None, str], T]
    metavar: str | None = None  # the value's name in --help; None: a switch, which takes no value
    default: str | None = None  # text, parsed like a given value
    fallbacks: tuple[str, ...] = ()
    commands: tuple[Command, ...] = COMMANDS
    shown_default: str | None = None  # what docs/settings.md says when it is not `default` itself
    choices: tuple[str, ...] | None = None  # for a flag without a variable: argparse checks them
    repeat: bool = False  # the flag may be given several times (settings.py reads the variable: a list, or one path)
    once_in: tuple[Command, ...] = ()  # commands that read it to refuse more than one value (import: one path)
    summary: str | None = None  # --help's words for an option without a variable; else its help's first clause

    @property
    def switch(self) -> bool:
        return self.metavar is None

    @property
    def variables(self) -> tuple[str, ...]:
        return ((self.variable,) if self.variable else ()) + self.fallbacks

    @property
    def source(self) -> str:
        """The name a message about a value that was not given names."""
        return self.variable or self.flags[0]


# title, description: the option groups of --help and docs/settings.md, in this order.
GROUPS: dict[str, tuple[str, str]] = {
    "vault": ("Vault connection", ""),
    "auth": ("authentication", "The first credential set wins, in this order: a token, a token file, a Kubernetes "
             "role, an AppRole role_id, a JWT role; then VAULT_TOKEN, BAO_TOKEN, ~/.vault-token."),
    "tls": ("TLS", ""),
    "retries": ("timeouts and retries", ""),
    "reading": ("reading and checking", ""),
    "file": ("output file", ""),
    "environments": ("environments and base file", ""),
    "import": ("import", ""),
    "output": ("output and verbosity", ""),
}


SETTINGS_DOC = "docs/settings.md"

EXIT_CODES = """\
exit codes:
  0      ok (exec: bruin's own exit code)
  1      internal error, a bug: rerun with --traceback to see where
  2      usage or configuration: a flag, a setting, a credential, the output
  3      Vault: unreachable, sealed, login or permission refused, path empty
  4      invalid secrets, every problem listed; nothing is written
  5      plan, import: Vault and the file differ (drift)
  128+N  interrupted by signal N (exec: bruin ended by signal N)"""

_LAST_GROUP = list(GROUPS)[-1]
_GROUP_TITLE = re.compile("|".join(re.escape(title) + ":" for title, _ in GROUPS.values()))

# name: (one line for the command list, description, usage); --help lists the options themselves
_COMMAND_HELP: dict[Command, tuple[str, str, str]] = {
    "render": ("write the config file", "Read, check and write the bruin config file (mode 0600). Without "
               "--output: into a fresh private directory on tmpfs, and print the file's path.", "%(prog)s [OPTIONS]"),
    "check": ("read and check, write nothing", "Read and check every secret; exit 0 only if the config would be "
              "valid.", "%(prog)s [OPTIONS]"),
    "exec": ("render onto tmpfs, then run `bruin run` on it", "Render into a fresh private directory on tmpfs, run "
             "`bruin run --config-file FILE BRUIN_RUN_ARGS...`, and remove the directory when bruin exits. Options "
             "of this tool come first: the first argument it does not know, or `--`, starts bruin's arguments, "
             "which are passed on verbatim; bruin's own --environment/-e/--env among them selects the environment "
             "the connections go into.", "%(prog)s [OPTIONS] [--] [BRUIN_RUN_ARGS...]"),
    "plan": ("show what a render would change in a file", "Read and check as `check` does, then compare the file "
             "that would be rendered with FILE: one line per connection added (+), removed (-) or changed (~, "
             "naming the fields), never a value. Exit 0: no change; 5: changes; 1-4: an error, as for the other "
             "commands.", "%(prog)s [OPTIONS]"),
    "import": ("write a .bruin.yml's connections into Vault", "Check every connection of FILE as `check` does, then "
               "write each as one secret {type, details} at MOUNT/PATH/NAME. An existing secret is left alone "
               "unless --overwrite.", "%(prog)s [OPTIONS] FILE"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is our one-line error (exit 2), not a usage block; and no blank
    line among the option groups (their titles and the indentation show them), so that --help stays short."""

    def error(self, message: str) -> NoReturn:
        raise usage_error(f"{self.prog}: {message} (see --help)")

    def format_help(self) -> str:
        lines = super().format_help().split("\n")
        first = next((i for i, line in enumerate(lines) if _GROUP_TITLE.fullmatch(line)), len(lines))
        return "\n".join(line for i, line in enumerate(lines)
                         if line or i < first or i + 1 == len(lines) or lines[i + 1] == "exit codes:")


class _Formatter(argparse.HelpFormatter):
    """argparse's, but one line per option where it can (the help column starts far enough right for
    the longest flag, and lines are up to 100 wide), and lines indented by two spaces (the exit codes)
    kept as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36, width=100)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(line if line.startswith("  ") else super(_Formatter, self)._fill_text(line, width, indent)
                         for line in text.splitlines())


def program_name(argv0: str) -> str:
    """The name the program was invoked by: `bruin-materialize` (the installed command), `materialize.py`,
    or `python -m bruin_materialize` (whose argv[0] is the package's __main__.py)."""
    name = os.path.basename(argv0)
    if name == "__main__.py":
        return "python -m bruin_materialize"
    return name or PROG


def build_parser(options: Sequence[Option[Any]], prog: str = PROG, only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, that command's options alone (the others are listed, empty):
    a run parses one command's, and adding all 225 options of five commands costs a few milliseconds."""
    parser = _Parser(prog=prog, allow_abbrev=False, formatter_class=_Formatter, epilog=EXIT_CODES,
                     description="Read every bruin connection secret from a Vault KV engine, check them, and "
                     "render a bruin config file (or run `bruin run` on it).")
    parser.add_argument("--version", action="version", version=f"bruin-materialize {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join((*COMMANDS, "completion")) + "}")
    for command, (summary, description, usage) in _COMMAND_HELP.items():
        added = sub.add_parser(command, help=summary, description=f"{description} {_HOW_TO_READ}", usage=usage,
                               epilog=EXIT_CODES, allow_abbrev=False, formatter_class=_Formatter, add_help=False)
        if only is None or only == command:
            _add_command(added, command, options)
    completion = sub.add_parser("completion", help="print a shell completion script", allow_abbrev=False,
                                formatter_class=_Formatter, description="Print a completion script for "
                                f"{COMMAND_NAME}, made from the same options as --help. Load it with, for bash: "
                                f"source <({COMMAND_NAME} completion bash); zsh: {COMMAND_NAME} completion zsh > "
                                f"\"${{fpath[1]}}/_{COMMAND_NAME}\"; fish: {COMMAND_NAME} completion fish > "
                                f"~/.config/fish/completions/{COMMAND_NAME}.fish.")
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete for")
    return parser


def _add_command(parser: argparse.ArgumentParser, command: Command, options: Sequence[Option[Any]]) -> None:
    if command == "import":
        parser.add_argument("file", metavar="FILE", help="the bruin config file to import (a .bruin.yml)")
    for group, (title, description) in GROUPS.items():
        shown = [o for o in options if o.group == group and command in o.commands]
        flagless = [f"{o.variable}: {_plain(o.help)} (default: {_plain(_shown_default(o))})."
                    for o in shown if not o.flags and command not in o.once_in]
        if not shown:
            continue
        added = parser.add_argument_group(title, " ".join(filter(None, (description, *flagless))) or None)
        for option in shown:
            if option.flags:
                _add_option(added, option, command)
        if group == _LAST_GROUP:  # -h beside the other output options, not in a group of its own
            added.add_argument("-h", "--help", action="help", help="show this help and exit")


def _add_option(group: argparse._ArgumentGroup, option: Option[Any], command: Command) -> None:
    if option.switch:
        group.add_argument(*option.flags, dest=option.key, action="store_true", default=None,
                           help=_help(option, command))
    else:  # appended also where it is once_in: a second value must reach the check that refuses it
        group.add_argument(*option.flags, dest=option.key, metavar=option.metavar, choices=option.choices,
                           action="append" if option.repeat else "store", help=_help(option, command))


_HOW_TO_READ = f"Beside each option: the variables read when it is not given, its default. In full: {SETTINGS_DOC}."


def _help(option: Option[Any], command: Command) -> str:
    """For --help, one short line: the variables the option is read from (else the first clause of its
    help), its default when that is short, and whether it repeats."""
    parts = [", ".join(option.variables) if option.variables else option.summary or _first_clause(option.help)]
    shown = _plain(_shown_default(option))
    if shown.startswith("required"):
        parts.append("required")
    elif option.default and option.shown_default is None and not option.switch and len(option.default) <= 20:
        parts.append(f"default {option.default}")
    if option.repeat and command not in option.once_in:
        parts.append("repeatable")
    return "; ".join(parts).replace("%", "%%")  # argparse formats help with %


def _first_clause(markdown: str) -> str:
    return re.split(r"; | \(|\. |: ", _plain(markdown))[0]


def _plain(markdown: str) -> str:
    return markdown.replace("`", "")


def _shown_default(option: Option[Any]) -> str:
    if option.shown_default is not None:
        return option.shown_default
    if option.default:
        return f"`{option.default}`"
    return "off" if option.switch else ""


def markdown_tables(options: Sequence[Option[Any]]) -> str:
    """docs/settings.md's settings tables, one per --help group (tests/test_settings.py keeps them in sync)."""
    parts = []
    for group, (title, description) in GROUPS.items():
        rows = [_markdown_row(o) for o in options if o.group == group]
        heading = f"**{title[0].upper()}{title[1:]}**" + (f". {description}" if description else "")
        parts.append("\n".join([heading, "",
                                "| Flag | Variable | Default | Meaning |", "|---|---|---|---|", *rows]))
    return "\n\n".join(parts) + "\n"


def _markdown_row(option: Option[Any]) -> str:
    flags = [f"`{flag}`" for flag in option.flags]
    if flags and not option.switch:
        flags[0] = f"`{option.flags[0]} {option.metavar}`"
    flag = ", ".join(flags)
    if flag and option.commands != COMMANDS:
        flag += f" ({', '.join(option.commands)})"
    if option.repeat:
        flag += " (repeat)"
    variable = ", else ".join(f"`{name}`" for name in option.variables)
    once = f"; {' and '.join(f'`{c}`' for c in option.once_in)} takes one and refuses more" if option.once_in else ""
    cells = (flag, variable, _shown_default(option), option.help + once)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
