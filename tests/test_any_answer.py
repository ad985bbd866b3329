"""No internal error is reachable from input: whatever a server answers, whatever a file to import holds.

The one place a fake Vault is right: a small HTTP server on 127.0.0.1, run by the test, serving
what hypothesis makes up for the mount inspection, the LIST and every read: arbitrary JSON, arbitrary
bytes, any status, Vault's documented shapes among them. The real CLI runs in-process against it.
Every run must end with a documented exit code (0, 2, 3, 4, 5), never 1 and never a traceback; and
an exit 0 means the file holds exactly the listed secrets whose answers are valid connections.
The same holds for arbitrary YAML given to `import`.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from bruin_materialize.cli import main
from testsupport.harness import clear_vault_env
from testsupport.values import examples

MOUNT = "kv"
DOCUMENTED_MOUNT = {"data": {"type": "kv", "options": {"version": "2"}}}
DOCUMENTED_EXIT = {0, 2, 3, 4, 5}
# Any code point, lone surrogates included: JSON carries them escaped (`\udc80`), and Vault's text may.
_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=8)
_plain = st.text(st.sampled_from("abcxyz0129-_."), min_size=1, max_size=6)
_names = st.one_of(st.sampled_from(["pg", "lake", "../x", "a/../../b", "", "/abs", "a//b", ".", "..", "sub/",
                                    "ctl\x1b[2J", "sp ace", "ünï"]), _plain, _plain, _text)


class Answer(NamedTuple):
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _as_answer(value: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(value).encode(), (("Content-Type", "application/json"),))


_statuses = st.sampled_from([200, 200, 200, 200, 204, 301, 307, 400, 403, 404, 405, 407, 412, 429, 500, 501, 503])
_headers = st.sampled_from([(), (("Location", "http://user:pw@standby.invalid:8200/v1/x?token=t#f"),),
                            (("Location", "/relative"),), (("Location", "http://[::1"),), (("Location", ""),),
                            (("Retry-After", "0"),), (("Content-Length", "0"),)])
_odd = st.builds(Answer, _statuses, st.binary(max_size=40), _headers) | st.builds(_as_answer, _json, _statuses)
_fields = st.sampled_from(["value", "host", "port"]) | _plain | _text
_secret = st.fixed_dictionaries({"type": st.sampled_from(["generic", "postgres"]) | _text,
                                 "details": st.dictionaries(_fields, _json, max_size=3)})
_documented_read = st.builds(lambda s: _as_answer({"data": {"data": s, "metadata": {"version": 1}}}), _secret)
_deleted = st.just(_as_answer({"data": {"data": None, "metadata": {"deletion_time": "2026-01-01T00:00:00Z"}}}, 404))
# Vault's documented answers most of the time, so that runs get far enough to write a file.
_read = st.one_of(_documented_read, _documented_read, _deleted,
                  st.builds(lambda s: _as_answer({"data": {"data": s}}), _json), _odd)
_mount = st.one_of(*[st.just(_as_answer(DOCUMENTED_MOUNT))] * 4, _odd)


@st.composite
def vaults(draw: st.DrawFn) -> dict[str, Answer]:
    """path (unquoted, without the query) -> the answer; anything else is a 404."""
    names = draw(st.lists(_names, max_size=4, unique=True))
    listed = st.just(_as_answer({"data": {"keys": names}}))
    listing = draw(st.one_of(listed, listed, listed, listed, _odd))
    answers = {f"/v1/sys/internal/ui/mounts/{MOUNT}": draw(_mount), f"/v1/{MOUNT}/metadata/bruin": listing}
    for name in names:
        answers[f"/v1/{MOUNT}/data/bruin/{name}"] = draw(_read)
    return answers


class FakeVault(http.server.ThreadingHTTPServer):
    daemon_threads = True
    answers: dict[str, Answer] = {}
    otherwise: Answer = _as_answer({"errors": []}, 404)  # for every other path


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeVault

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        answer = self.server.answers.get(path, self.server.otherwise)
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_POST = do_PUT = do_DELETE = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        pass


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    server = FakeVault(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, schema_path: Path, tmp_path: Path, fake_vault: FakeVault) -> None:
    clear_vault_env(monkeypatch)
    for name, value in {"BRUIN_VAULT_HOST": f"http://127.0.0.1:{fake_vault.server_address[1]}",
                        "BRUIN_VAULT_TOKEN": "s.fake-token", "BRUIN_VAULT_MOUNT_PATH": MOUNT,
                        "BRUIN_VAULT_PATH": "bruin", "BRUIN_VAULT_MAX_RETRIES": "0", "BRUIN_VAULT_TIMEOUT": "3s",
                        "BRUIN_MATERIALIZE_SCHEMA": str(schema_path), "HOME": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)


def expected_connections(answers: dict[str, Answer]) -> set[tuple[str, str]]:
    """(type, name) of every listed, valid name whose answer is a documented, current KV v2 secret
    (a name ending in `/` is a folder, not read without --recursive)."""
    listing = json.loads(answers[f"/v1/{MOUNT}/metadata/bruin"].body)
    found = set()
    for name in (n for n in listing["data"]["keys"] if not n.endswith("/")):
        answer = answers[f"/v1/{MOUNT}/data/bruin/{name}"]
        data = json.loads(answer.body)["data"]["data"] if answer.status == 200 else None
        if data is not None:
            found.add((data["type"], name))
    return found


@settings(max_examples=examples(1 / 10, at_least=30),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(answers=vaults())
def test_any_answer_ends_with_a_documented_exit_and_exit_0_holds_exactly_the_listed_secrets(
        fake_vault: FakeVault, settings_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        answers: dict[str, Answer]) -> None:
    fake_vault.answers = answers
    fake_vault.otherwise = _as_answer({"errors": []}, 404)
    out = tmp_path / "out" / "bruin.yml"
    out.unlink(missing_ok=True)
    code = main(["render", "-o", str(out)])
    err = capsys.readouterr().err
    assert code in DOCUMENTED_EXIT, err
    assert "Traceback" not in err and "internal error" not in err
    assert all(line.startswith("materialize: ") for line in err.splitlines()), err
    if code != 0:
        assert not out.exists()
        return
    doc = YAML(typ="safe", pure=True).load(out.read_text(encoding="utf-8"))
    connections = doc["environments"]["default"]["connections"] or {}
    written = {(conn_type, conn["name"]) for conn_type, items in connections.items() for conn in items}
    assert written == expected_connections(answers)


def test_documented_answers_render_exactly_the_listed_secrets(fake_vault: FakeVault, settings_env: None,
                                                             tmp_path: Path) -> None:
    """The harness itself: Vault's documented answers make a file, a deleted secret skipped."""
    fake_vault.answers = {
        f"/v1/sys/internal/ui/mounts/{MOUNT}": _as_answer(DOCUMENTED_MOUNT),
        f"/v1/{MOUNT}/metadata/bruin": _as_answer({"data": {"keys": ["api", "gone"]}}),
        f"/v1/{MOUNT}/data/bruin/api": _as_answer({"data": {"data": {"type": "generic", "details": {"value": "v"}}}}),
        f"/v1/{MOUNT}/data/bruin/gone": _as_answer(
            {"data": {"data": None, "metadata": {"deletion_time": "2026-01-01T00:00:00Z"}}}, 404),
    }
    out = tmp_path / "bruin.yml"
    assert main(["render", "-o", str(out)]) == 0
    doc = YAML(typ="safe", pure=True).load(out.read_text(encoding="utf-8"))
    assert doc["environments"]["default"]["connections"] == {"generic": [{"name": "api", "value": "v"}]}
    assert expected_connections(fake_vault.answers) == {("generic", "api")}


@pytest.mark.parametrize("details", [{"\udc80": "x"}, {"value": "\udc80"}, {"extra": {"\ud800k": 1}}],
                         ids=["field-name", "value", "nested-key"])
def test_a_lone_surrogate_from_vault_is_an_invalid_secret_not_an_internal_error(
        fake_vault: FakeVault, settings_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        details: dict[str, Any]) -> None:
    fake_vault.answers = {
        f"/v1/sys/internal/ui/mounts/{MOUNT}": _as_answer(DOCUMENTED_MOUNT),
        f"/v1/{MOUNT}/metadata/bruin": _as_answer({"data": {"keys": ["api"]}}),
        f"/v1/{MOUNT}/data/bruin/api": _as_answer({"data": {"data": {"type": "generic", "details": details}}}),
    }
    for command in (["render", "-o", str(tmp_path / "bruin.yml")], ["check"], ["check", "--format", "json"]):
        assert main(command) == 4
        err = capsys.readouterr().err.splitlines()
        assert err[-1] == "materialize: error: 1 invalid secret field (listed above); nothing was written"
        assert any("lone UTF-16 surrogate" in line for line in err), err
    assert not (tmp_path / "bruin.yml").exists()


_yaml_bits = st.sampled_from(["0012", "0x1F", "1e3", "~", "yes", "&a x", "*a", "!!binary aGk=", "!!str 1", "<<: *a",
                              "[1, {a: b}]", "{1: 2}", "? [x]\n  : y", "'quoted'", '"\\u00e9"', "|\n  text", ".nan",
                              "2001-12-14", "- item", "", "null", "{", "\t", "%YAML 1.2\n---", "--- a\n--- b"]) | _text


@st.composite
def bruin_files(draw: st.DrawFn) -> str:
    """Something like a .bruin.yml, with arbitrary text or YAML at any place."""
    bit = draw(_yaml_bits)
    env_name = draw(st.sampled_from(["default", "default", bit, "1", "~"]))
    conn_type = draw(st.sampled_from(["generic", "generic", "postgres", bit]))
    name = draw(st.sampled_from(["api", "api", bit, "0012", "../x"]))
    field = draw(st.sampled_from(["value", "value", "port", "password", bit]))
    value = draw(_yaml_bits)
    text = (f"default_environment: {env_name}\nenvironments:\n  {env_name}:\n    connections:\n      {conn_type}:\n"
            f"        - name: {name}\n          {field}: {value}\n")
    return draw(st.sampled_from([text, text, text, bit, text + bit]))


@settings(max_examples=examples(1 / 10, at_least=30),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=bruin_files(), mount=_mount, otherwise=_read)
def test_any_file_to_import_ends_with_a_documented_exit(fake_vault: FakeVault, settings_env: None, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str], text: str, mount: Answer,
                                                        otherwise: Answer) -> None:
    """Any file, and any answer to the import's reads and writes (one answer for all of them)."""
    fake_vault.answers = {f"/v1/sys/internal/ui/mounts/{MOUNT}": mount}
    fake_vault.otherwise = otherwise
    file = tmp_path / "import.bruin.yml"
    file.write_text(text, encoding="utf-8", errors="surrogatepass")
    code = main(["import", str(file), "--relative-paths", "keep"])
    err = capsys.readouterr().err
    assert code in DOCUMENTED_EXIT, err
    assert "Traceback" not in err and "internal error" not in err


# --- references: what a `{"$vault": PATH, "field": KEY}` names is answered by the fake Vault too ---

REFERENCED = "database/creds/ro"
_REFERRING = {"type": "generic", "details": {"value": {"$vault": REFERENCED, "field": "value"}}}
_ENGINE = _as_answer({"data": {"type": "database", "path": "database/", "options": None}})
_lease_seconds = st.one_of(st.integers(min_value=-2, max_value=10**6), st.just(2**63 // 10**9),
                           st.just(2**63 // 10**9 + 1), st.just(10**20), st.just(10**400), st.booleans(), _json)
_documented_lease = st.builds(
    lambda value, ttl, lease_id: _as_answer({"lease_id": lease_id, "lease_duration": ttl, "renewable": True,
                                             "data": {"value": value}}),
    _json, _lease_seconds, st.sampled_from(["database/creds/ro/abc", "", "a\x1b[2J\nmaterialize: error: x"]) | _text)
_capabilities = st.builds(lambda caps: _as_answer({"data": {REFERENCED: caps}}),
                          st.one_of(st.just(["read"]), st.just(["root"]), _json, st.lists(_json, max_size=3)))


def _referencing_vault(engine: Answer, read: Answer, capabilities: Answer) -> dict[str, Answer]:
    return {f"/v1/sys/internal/ui/mounts/{MOUNT}": _as_answer(DOCUMENTED_MOUNT),
            f"/v1/{MOUNT}/metadata/bruin": _as_answer({"data": {"keys": ["api"]}}),
            f"/v1/{MOUNT}/data/bruin/api": _as_answer({"data": {"data": _REFERRING, "metadata": {"version": 1}}}),
            f"/v1/sys/internal/ui/mounts/{REFERENCED}": engine, f"/v1/{REFERENCED}": read,
            "/v1/sys/capabilities-self": capabilities}


@settings(max_examples=examples(1 / 10, at_least=30),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(engine=st.one_of(st.just(_ENGINE), st.just(_ENGINE), _odd), read=st.one_of(_documented_lease, _odd),
       capabilities=st.one_of(_capabilities, _odd), command=st.sampled_from(["render", "check", "check-json"]))
def test_any_answer_to_a_reference_ends_with_a_documented_exit_and_exit_0_writes_its_text_exactly(
        fake_vault: FakeVault, settings_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        engine: Answer, read: Answer, capabilities: Answer, command: str) -> None:
    fake_vault.answers = _referencing_vault(engine, read, capabilities)
    fake_vault.otherwise = _as_answer({"errors": []}, 404)
    out = tmp_path / "out" / "bruin.yml"
    out.unlink(missing_ok=True)
    argv = {"render": ["render", "-o", str(out)], "check": ["check"], "check-json": ["check", "--format", "json"]}
    code = main(argv[command])
    err = capsys.readouterr().err
    assert code in DOCUMENTED_EXIT, err
    assert "Traceback" not in err and "internal error" not in err
    assert all(line.startswith("materialize: ") for line in err.splitlines()), err
    if code != 0 or command != "render":
        assert not out.exists()
        return
    value = json.loads(read.body)["data"]["value"]
    doc = YAML(typ="safe", pure=True).load(out.read_text(encoding="utf-8"))
    written = doc["environments"]["default"]["connections"]["generic"][0]["value"]
    assert written == value if isinstance(value, str) else not isinstance(value, (dict, list, type(None)))


@pytest.mark.parametrize(("command", "read", "capabilities", "message"), [
    ("render", _as_answer({"lease_id": "database/creds/ro/abc", "lease_duration": 10**20, "data": {"value": "v"}}),
     None, f"reading {REFERENCED}: the answer's lease_duration is longer than any duration Vault gives (Go's limit, "
           "about 292 years); is BRUIN_VAULT_HOST Vault itself?"),
    ("check", None, _as_answer({"data": {REFERENCED: [{}, "read"]}}),
     f"asking the token's capabilities (sys/capabilities-self): the answer for {REFERENCED} is not a list of "
     "capability names; is BRUIN_VAULT_HOST Vault itself?"),
], ids=["lease-beyond-go-durations", "capabilities-not-names"])
def test_an_answer_to_a_reference_no_vault_gives_is_exit_3(
        fake_vault: FakeVault, settings_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        command: str, read: Answer | None, capabilities: Answer | None, message: str) -> None:
    granted = _as_answer({"lease_id": "database/creds/ro/abc", "lease_duration": 60, "data": {"value": "v"}})
    fake_vault.answers = _referencing_vault(_ENGINE, read or granted,
                                            capabilities or _as_answer({"data": {REFERENCED: ["read"]}}))
    out = tmp_path / "bruin.yml"
    assert main([command, "-o", str(out)] if command == "render" else [command]) == 3
    assert capsys.readouterr().err.splitlines()[-1] == f"materialize: error: {message}"
    assert not out.exists()


def test_a_renewal_answered_past_go_durations_is_a_warning_while_bruin_runs(
        fake_vault: FakeVault, settings_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """exec renews a lease of 2s after about 1.3s; an answer no Vault gives is a warning on the renewing
    thread, never its traceback, and bruin's exit code stands."""
    bruin = tmp_path / "bruin"
    bruin.write_text("#!/bin/sh\nsleep 2.5\nexit 7\n")
    bruin.chmod(0o755)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    for name, value in {"BRUIN_BIN": str(bruin), "BRUIN_MATERIALIZE_RUNTIME_DIR": str(runtime),
                        "BRUIN_MATERIALIZE_ALLOW_NON_TMPFS": "1"}.items():
        monkeypatch.setenv(name, value)
    granted = _as_answer({"lease_id": "database/creds/ro/abc", "lease_duration": 2, "renewable": True,
                          "data": {"value": "v"}})
    fake_vault.answers = {**_referencing_vault(_ENGINE, granted, _as_answer({})),
                          "/v1/sys/leases/renew": _as_answer({"lease_id": "database/creds/ro/abc",
                                                              "lease_duration": 10**30})}
    assert main(["exec", "--", "run"]) == 7
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    assert ("materialize: warning: could not renew lease database/creds/ro/abc (database/creds/ro): the answer "
            "holds no lease_duration Vault could give") in err


@pytest.mark.parametrize("ttl", [2**63 // 10**9 + 1, 10**30, 10**400], ids=["past-go", "1e30", "1e400"])
def test_a_login_answered_with_a_ttl_no_vault_gives_is_exit_3(
        fake_vault: FakeVault, settings_env: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], ttl: int) -> None:
    monkeypatch.delenv("BRUIN_VAULT_TOKEN")
    monkeypatch.setenv("BRUIN_VAULT_ROLE_ID", "role")
    monkeypatch.setenv("BRUIN_VAULT_SECRET_ID", "secret-id-value")
    fake_vault.answers = {"/v1/auth/approle/login": _as_answer(
        {"auth": {"client_token": "s.login-token", "lease_duration": ttl, "renewable": True}})}
    assert main(["check"]) == 3
    assert capsys.readouterr().err.splitlines() == [
        "materialize: error: AppRole login (auth/approle, role_id from BRUIN_VAULT_ROLE_ID): the answer's "
        "lease_duration is longer than any duration Vault gives (Go's limit, about 292 years); is BRUIN_VAULT_HOST "
        "Vault itself?"]


_DEEP = b"[" * 100_000 + b"]" * 100_000  # past Python's recursion limit, as a hostile answer may be


@pytest.mark.parametrize(("where", "what"), [
    (f"/v1/sys/internal/ui/mounts/{MOUNT}", f"inspecting mount {MOUNT}"),
    (f"/v1/{MOUNT}/metadata/bruin", f"listing {MOUNT}/bruin"),
    (f"/v1/{MOUNT}/data/bruin/api", f"reading {MOUNT}/bruin/api"),
    (f"/v1/{REFERENCED}", f"reading {REFERENCED}"),
], ids=["mount", "list", "read", "reference"])
def test_an_answer_nested_past_pythons_recursion_limit_is_exit_3(
        fake_vault: FakeVault, settings_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        where: str, what: str) -> None:
    """As an answer, exit 3 naming the operation; as the body of a refusal (403), the status speaks."""
    granted = _as_answer({"data": {"value": "v"}})
    out = tmp_path / "bruin.yml"
    for status in (200, 403):
        fake_vault.answers = {**_referencing_vault(_ENGINE, granted, _as_answer({})),
                              where: Answer(status, b'{"data": {"data": ' + _DEEP + b"}}")}
        code = main(["render", "-o", str(out)])
        err = capsys.readouterr().err.splitlines()
        assert code in DOCUMENTED_EXIT and "internal error" not in err[-1], err
        if status == 200:
            assert code == 3 and err[-1] == (f"materialize: error: {what}: the answer (HTTP 200) is JSON nested deeper "
                                             "than any of Vault's; is this a Vault server?"), err
            assert not out.exists()
        out.unlink(missing_ok=True)


def test_a_folder_listing_itself_without_end_stops_at_the_depth_bound(
        fake_vault: FakeVault, settings_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A server whose every folder holds another (`sub/`) would be listed for ever with --recursive."""
    fake_vault.answers = {f"/v1/sys/internal/ui/mounts/{MOUNT}": _as_answer(DOCUMENTED_MOUNT)}
    folder = "bruin"
    for _ in range(70):
        fake_vault.answers[f"/v1/{MOUNT}/metadata/{folder}"] = _as_answer({"data": {"keys": ["sub/"]}})
        folder += "/sub"
    out = tmp_path / "bruin.yml"
    assert main(["render", "--recursive", "-o", str(out)]) == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line == (f"materialize: error: listing {MOUNT}/bruin: folders nest more than 64 levels deep under it "
                    "(sub/sub/sub/...); is BRUIN_VAULT_HOST Vault itself?")
    assert not out.exists()


def test_a_listing_that_names_a_secret_twice_is_exit_3(fake_vault: FakeVault, settings_env: None, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    secret = _as_answer({"data": {"data": {"type": "generic", "details": {"value": "v"}}}})
    fake_vault.answers = {f"/v1/sys/internal/ui/mounts/{MOUNT}": _as_answer(DOCUMENTED_MOUNT),
                          f"/v1/{MOUNT}/metadata/bruin": _as_answer({"data": {"keys": ["pg", "lake", "pg"]}}),
                          f"/v1/{MOUNT}/data/bruin/pg": secret, f"/v1/{MOUNT}/data/bruin/lake": secret}
    for argv in (["render", "-o", str(tmp_path / "bruin.yml")], ["check", "--on-collision", "last"]):
        assert main(argv) == 3
        assert capsys.readouterr().err.splitlines() == [
            f"materialize: error: listing {MOUNT}/bruin: the answer lists pg twice; is BRUIN_VAULT_HOST Vault itself?"]
