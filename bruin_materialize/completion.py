"""`completion SHELL`: a shell completion script, made by shtab from the parser the settings table builds.

Every command, option, choice and help line comes from that table (settings.py, options.py), so a
new setting is completed as soon as it is declared. Options taking a PATH or a FILE complete file
names, DIR directory names; except the Vault connection's, whose PATH is a place in Vault.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bruin_materialize.errors import usage_error
from bruin_materialize.options import COMMAND_NAME
from bruin_materialize.settings import OPTIONS, build_parser

_FILE_METAVARS = frozenset({"PATH", "FILE"})
_DIR_METAVARS = frozenset({"DIR"})


def completion_script(shell: str) -> str:
    """The script for `shell` (one of options.SHELLS), completing the installed command."""
    import shtab  # only this command needs it

    parser = build_parser(COMMAND_NAME)
    in_vault = {flag for option in OPTIONS if option.group == "vault" for flag in option.flags}
    for action in _all_actions(parser):
        metavar = action.metavar if isinstance(action.metavar, str) else None
        if metavar and metavar.startswith("{") and metavar.endswith("}") and not action.choices:
            # choices checked by the option's parser, not argparse, since its variable takes them too
            action.choices = metavar[1:-1].split(",")
        if in_vault.intersection(action.option_strings):
            continue
        if metavar in _FILE_METAVARS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]  # shtab reads this attribute
        elif metavar in _DIR_METAVARS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    script: str = shtab.complete(parser, shell=shell)
    return script


def run(args: Sequence[str], prog: str) -> int:
    """`completion SHELL`: checked by the same parser (a wrong shell is exit 2), printed on stdout."""
    shell: str = build_parser(prog).parse_args(list(args)).shell
    script = completion_script(shell)
    try:
        if sys.stdout is None:  # started with stdout closed (`>&-`)
            raise ValueError
        sys.stdout.write(script)
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout closed, or its reader gone
        raise usage_error("could not write the completion script to stdout") from None
    return 0


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_all_actions(sub))
    return found
