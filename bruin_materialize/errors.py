"""The one user-facing error type, and the exit codes the CLI contract promises."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    INTERNAL = 1  # a bug: nothing the user did; rerun with --traceback
    USAGE = 2  # a flag, a setting or a local file is wrong
    VAULT = 3  # Vault unreachable, sealed, refused login/permission, path empty or missing
    INVALID = 4  # secrets were read but would not make a valid bruin config
    CHANGES = 5  # plan: the file would change (a result, not a failure: as terraform's -detailed-exitcode 2)


class MaterializeError(Exception):
    """An expected failure: one line for the user, and the exit code it maps to.

    The message must never hold a secret value, a token or a response body: it is printed as is.
    """

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def usage_error(message: str) -> MaterializeError:
    return MaterializeError(message, ExitCode.USAGE)


def vault_error(message: str) -> MaterializeError:
    return MaterializeError(message, ExitCode.VAULT)
