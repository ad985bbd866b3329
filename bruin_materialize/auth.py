"""Getting a Vault token: given (directly or in a file), or by logging in (Kubernetes, AppRole, JWT).

Credentials are read from their files before any network call, so a missing file is a setting
error (exit 2), not a Vault error. A token obtained by logging in is ours to revoke once the
secrets are read; a token we were given belongs to someone else and is never revoked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

import hvac
import hvac.exceptions

from bruin_materialize import files, settings
from bruin_materialize.errors import MaterializeError, usage_error, vault_error
from bruin_materialize.settings import Auth, check_credential
from bruin_materialize.vault import call, dig, status, unexpected

_LABELS = {"kubernetes": "kubernetes", "approle": "AppRole", "jwt": "JWT"}
_CHECK = {
    "kubernetes": "check the role exists and is bound to this pod's service account and namespace",
    "approle": "check the role_id and that the secret_id is valid and not expired or used up",
    "jwt": "check the role, and that the JWT is unexpired, signed by a trusted key and matches the role's "
           "bound claims",
}


class Credentials(NamedTuple):
    auth: Auth
    secret: str  # the token, or the JWT / secret_id to log in with


def read_credentials(auth: Auth) -> Credentials:
    if auth.method == "token":
        token = auth.token if auth.token is not None else _read_secret_file(auth.token_file, auth.source)
        return Credentials(auth, token)
    if auth.method == "approle":
        secret_id = auth.secret_id
        if secret_id is None:
            secret_id = _read_secret_file(auth.secret_id_file, _variable(settings.SECRET_ID_FILE))
        return Credentials(auth, secret_id)
    source = _variable(settings.K8S_TOKEN_PATH_OPTION if auth.method == "kubernetes" else settings.JWT_FILE)
    return Credentials(auth, _read_secret_file(auth.token_file, source))


class Login(NamedTuple):
    token: str
    ttl: float  # seconds Vault granted it (lease_duration); 0: it does not expire
    renewable: bool
    batch: bool = False  # a batch token, which Vault cannot revoke: it ends with its TTL


def log_in(client: hvac.Client, creds: Credentials) -> Login:
    """A login with the credentials (the client's own token is left as it is)."""
    auth = creds.auth
    what = describe(auth)
    try:
        answer = call(what, lambda: _login(client, auth, creds.secret))
    except hvac.exceptions.VaultError as exc:
        code = status(exc)
        if code in (400, 401):
            raise vault_error(f"{what} was refused (HTTP {code}); {_CHECK[auth.method]}") from None
        if code == 403:  # also what OpenBao answers when nothing is mounted at auth/<mount>
            raise vault_error(f"{what} was refused (HTTP 403); {_CHECK[auth.method]}; or {_mount_setting(auth)} "
                              f"names no {_LABELS[auth.method]} auth method (is it mounted at auth/{auth.mount}?)"
                              ) from None
        if code in (404, 405):
            raise vault_error(f"{what}: no such auth method (HTTP {code}); check the mount setting "
                              f"{_mount_setting(auth)} (auth/{auth.mount})") from None
        raise unexpected(what, exc) from None
    token = dig(answer, "auth", "client_token")
    if not isinstance(token, str) or not token:
        raise vault_error(f"{what}: the answer holds no token")
    ttl = dig(answer, "auth", "lease_duration")
    if isinstance(ttl, int) and ttl > settings.MAX_DURATION:
        raise vault_error(f"{what}: the answer's lease_duration is longer than any duration Vault gives (Go's "
                          "limit, about 292 years); is BRUIN_VAULT_HOST Vault itself?")
    return Login(token, float(ttl) if is_duration(ttl) and ttl > 0 else 0.0,
                 dig(answer, "auth", "renewable") is True, dig(answer, "auth", "token_type") == "batch")


def is_duration(value: object) -> TypeGuard[int]:
    """Whether `value` is a number of seconds Vault could give: its durations are Go's, at most 2^63 - 1 ns."""
    return isinstance(value, int) and not isinstance(value, bool) and value <= settings.MAX_DURATION


def _login(client: hvac.Client, auth: Auth, secret: str) -> Any:
    if auth.method == "kubernetes":
        return client.auth.kubernetes.login(auth.role, secret, use_token=False, mount_point=auth.mount)
    if auth.method == "approle":
        return client.auth.approle.login(auth.role, secret, use_token=False, mount_point=auth.mount)
    return client.auth.jwt.jwt_login(auth.role, secret, use_token=False, path=auth.mount)


def revoke(client: hvac.Client) -> bool:
    """Revoke the token we logged in for; False when Vault did not confirm it."""
    try:
        call("revoking the login token", client.auth.token.revoke_self)
    except (MaterializeError, hvac.exceptions.VaultError):  # a warning for the caller: it expires at its TTL
        return False
    return True


def describe(auth: Auth) -> str:
    role = "role_id from " + auth.source if auth.method == "approle" else f"role {auth.role}"
    return f"{_LABELS[auth.method]} login (auth/{auth.mount}, {role})"


def used(auth: Auth) -> str:
    """For -v: which credential the run uses, by the setting it came from; never its value."""
    if auth.method == "token":
        where = f" in {auth.token_file}" if auth.token_file is not None else ""
        return f"using the Vault token from {auth.source}{where}"
    if auth.method == "approle":
        secret_id = (f"the secret_id file {auth.secret_id_file}" if auth.secret_id_file
                     else _variable(settings.SECRET_ID))
        return f"logged in with {describe(auth)} and {secret_id}"
    return f"logged in with {describe(auth)} and the token file {auth.token_file}"


def _mount_setting(auth: Auth) -> str:
    option = {"kubernetes": settings.K8S_AUTH_MOUNT, "approle": settings.APPROLE_MOUNT,
              "jwt": settings.JWT_MOUNT}[auth.method]
    return _variable(option)


def _variable(option: settings.Option[Any]) -> str:
    """The setting's variable, as messages name it (each of these has one)."""
    assert option.variable is not None
    return option.variable


MAX_CREDENTIAL_FILE = 64 * 1024  # a token or a JWT is a few KiB; anything bigger is the wrong file


def _read_secret_file(path: Path | None, source: str) -> str:
    """A credential file: a regular file (a FIFO or a device would block the read or never end),
    at most 64 KiB, holding one printable token."""
    if path is None:
        raise usage_error(f"{source} names no file")
    data = files.read_bytes(path, f"{path} ({source})", MAX_CREDENTIAL_FILE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise usage_error(f"{path} ({source}) is not text") from None
    if not text.strip():
        raise usage_error(f"{path} ({source}) is empty")
    return check_credential(text, f"{path} ({source})")
