"""The Vault client's transport, seen from outside: proxies, headers, deadlines, oversized answers.

Each test runs `materialize.py` in a child process against the session's OpenBao server, directly,
through a recording forward proxy (testsupport/forward_proxy.py), or through the fault proxy
(testsupport/fault_proxy.py) told to trickle or to answer too much. Proxy tests name Vault by a host that
does not resolve (`vault.invalid`): only a proxy that maps it to the real server can make the run
succeed, so a success proves the proxy was used; the proxy's own record says for which host. HTTPS
goes through a CONNECT tunnel to the TLS listener of the auth tests' server (testsupport/auth.py),
whose certificate names `vault.invalid` too. docs/reliability.md lists these scenarios.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bruin_materialize
from testsupport.auth import MOUNT, PATH, PROXIED_NAME, AuthWorld
from testsupport.bao import free_port
from testsupport.cli import PG, SLACK, OutputDir, Render, reading, seed_mount
from testsupport.fault_proxy import ALWAYS, OVERSIZE, FaultProxy
from testsupport.forward_proxy import UNRESOLVABLE, ForwardProxy
from testsupport.harness import BaoServer
from testsupport.leak import LEAK_GUARD

REQUESTS = 5  # one run: mount inspection, one LIST, three GETs
PROXY_PASSWORD = "pr0xy-Pa55word-n0t-f0r-output"


@pytest.fixture
def no_proxy_env(vault_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """vault_env, and no proxy variable from the machine running the tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return vault_env


@pytest.fixture
def mount(kv2: Any, no_proxy_env: dict[str, str], bao_server: BaoServer, schema_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> str:
    """SECRETS under bruin/ of a KV v2 mount, the CLI pointed at OpenBao directly (tests change the host)."""
    return seed_mount(kv2, monkeypatch, schema_path, bao_server.addr)


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def unresolvable(bao_server: BaoServer) -> str:
    """The OpenBao address under a name only the proxy can resolve."""
    return f"http://{UNRESOLVABLE}:{port_of(bao_server.addr)}"


def dead_proxy() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused


def assert_all_through(proxy: ForwardProxy, host: str, count: int = REQUESTS) -> None:
    """`count` plain (absolute-form) requests reached the proxy, each for `host`."""
    seen = proxy.seen()
    assert [s.host for s in seen] == [host] * count, seen
    assert {s.method for s in seen} == {"GET"}


# --- HTTP_PROXY, NO_PROXY and loopback -------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
@pytest.mark.parametrize("command", ["render", "check"])
def test_http_proxy_carries_every_request(materialize: Render, out: OutputDir, forward_proxy: ForwardProxy,
                                          bao_server: BaoServer, variable: str, command: str) -> None:
    args = ["render", "--output", str(out.file)] if command == "render" else ["check"]
    result = materialize(*args, BRUIN_VAULT_HOST=unresolvable(bao_server), **{variable: forward_proxy.url})
    result.assert_ok()
    if command == "render":
        out.assert_written()
    assert_all_through(forward_proxy, f"{UNRESOLVABLE}:{port_of(bao_server.addr)}")


def test_unresolvable_host_without_proxy_fails(render: Render, out: OutputDir, mount: str,
                                               bao_server: BaoServer) -> None:
    result = render(BRUIN_VAULT_HOST=unresolvable(bao_server), BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_failed(3, f"inspecting mount {mount}: cannot resolve {UNRESOLVABLE}")
    out.assert_untouched()


@pytest.mark.parametrize("no_proxy", [UNRESOLVABLE, ".invalid", "*", f"example.com, {UNRESOLVABLE}",
                                      "{host}:{port}"])
@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_bypasses_the_proxy(render: Render, out: OutputDir, mount: str, forward_proxy: ForwardProxy,
                                     bao_server: BaoServer, no_proxy: str, variable: str) -> None:
    # Bypassing the proxy means resolving the name here, which fails: the proof it was not proxied.
    no_proxy = no_proxy.format(host=UNRESOLVABLE, port=port_of(bao_server.addr))
    result = render(BRUIN_VAULT_HOST=unresolvable(bao_server), HTTP_PROXY=forward_proxy.url,
                    BRUIN_VAULT_MAX_RETRIES="0", **{variable: no_proxy})
    result.assert_failed(3, f"inspecting mount {mount}: cannot resolve {UNRESOLVABLE}")
    assert forward_proxy.seen() == []
    out.assert_untouched()


@pytest.mark.parametrize("no_proxy", ["example.invalid", "ault.invalid", f"{UNRESOLVABLE}:1", "10.0.0.0/8"])
def test_no_proxy_not_matching_keeps_the_proxy(render: Render, out: OutputDir, forward_proxy: ForwardProxy,
                                               bao_server: BaoServer, no_proxy: str) -> None:
    result = render(BRUIN_VAULT_HOST=unresolvable(bao_server), HTTP_PROXY=forward_proxy.url, NO_PROXY=no_proxy)
    result.assert_ok()
    out.assert_written()
    assert_all_through(forward_proxy, f"{UNRESOLVABLE}:{port_of(bao_server.addr)}")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_host_is_never_proxied_by_the_environment(render: Render, out: OutputDir, bao_server: BaoServer,
                                                           host: str) -> None:
    # As Go's ProxyFromEnvironment: HTTP_PROXY does not apply to loopback hosts, so a dead proxy
    # does not matter.
    result = render(BRUIN_VAULT_HOST=f"http://{host}:{port_of(bao_server.addr)}", HTTP_PROXY=dead_proxy(),
                    BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_ok()
    out.assert_written()


def test_http_proxy_is_not_used_for_https(render: Render, out: OutputDir, mount: str, forward_proxy: ForwardProxy,
                                          bao_server: BaoServer) -> None:
    host = f"https://{UNRESOLVABLE}:{port_of(bao_server.addr)}"
    result = render(BRUIN_VAULT_HOST=host, HTTP_PROXY=forward_proxy.url, BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_failed(3, f"inspecting mount {mount}: cannot resolve {UNRESOLVABLE}")
    assert forward_proxy.seen() == []


# --- the proxy is ours to choose: libcurl reads no variable of its own ---------------------------------


def test_uppercase_proxy_variable_wins_over_lowercase(render: Render, out: OutputDir, forward_proxy: ForwardProxy,
                                                     bao_server: BaoServer) -> None:
    # Go reads HTTP_PROXY before http_proxy; libcurl alone would read only http_proxy (the dead one).
    result = render(BRUIN_VAULT_HOST=unresolvable(bao_server), HTTP_PROXY=forward_proxy.url, http_proxy=dead_proxy(),
                    BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_ok()
    out.assert_written()
    assert_all_through(forward_proxy, f"{UNRESOLVABLE}:{port_of(bao_server.addr)}")


@pytest.mark.parametrize("variable", ["ALL_PROXY", "all_proxy"])
def test_all_proxy_is_not_read(render: Render, out: OutputDir, mount: str, bao_server: BaoServer,
                               variable: str) -> None:
    # Go's ProxyFromEnvironment knows no ALL_PROXY; libcurl would send everything to this dead proxy.
    result = render(BRUIN_VAULT_HOST=bao_server.addr, BRUIN_VAULT_MAX_RETRIES="0", **{variable: dead_proxy()})
    result.assert_ok()
    out.assert_written()


TEST_NET = "192.0.2.10"  # RFC 5737: an address no one answers at; only the proxy below maps it to OpenBao


@pytest.mark.parametrize(("no_proxy", "proxied"), [("192.0.2.0/24", False), ("10.0.0.0/8, 192.0.2.11", True),
                                                   ("192.0.2.8/29", False)])
def test_no_proxy_cidr_range_matches_an_ip_host(render: Render, out: OutputDir, mount: str, bao_server: BaoServer,
                                                no_proxy: str, proxied: bool) -> None:
    with ForwardProxy({TEST_NET: "127.0.0.1"}) as proxy:
        host = f"http://{TEST_NET}:{port_of(bao_server.addr)}"
        result = render(BRUIN_VAULT_HOST=host, HTTP_PROXY=proxy.url, NO_PROXY=no_proxy, BRUIN_VAULT_TIMEOUT="1s",
                        BRUIN_VAULT_MAX_RETRIES="0")
        seen = proxy.seen()
    if proxied:
        result.assert_ok()
        assert [s.host for s in seen] == [f"{TEST_NET}:{port_of(bao_server.addr)}"] * REQUESTS
    else:  # straight to an address nobody answers at: no route, or the 1 s deadline
        result.assert_failed(3, f"inspecting mount {mount}: ")
        assert seen == []
        out.assert_untouched()


# --- VAULT_PROXY_ADDR, BAO_PROXY_ADDR, BRUIN_VAULT_PROXY_ADDR, --proxy --------------------------------


@pytest.mark.parametrize("source", ["VAULT_PROXY_ADDR", "BAO_PROXY_ADDR", "BRUIN_VAULT_PROXY_ADDR", "--proxy"])
def test_explicit_proxy_is_used_even_for_loopback_and_no_proxy(render: Render, out: OutputDir,
                                                                forward_proxy: ForwardProxy,
                                                                bao_server: BaoServer, source: str) -> None:
    flags = ["--proxy", forward_proxy.url] if source == "--proxy" else []
    env = {} if source == "--proxy" else {source: forward_proxy.url}
    result = render(*flags, BRUIN_VAULT_HOST=bao_server.addr, NO_PROXY="*", **env)
    result.assert_ok()
    out.assert_written()
    assert_all_through(forward_proxy, bao_server.addr.removeprefix("http://"))


# (winner, loser): the loser names a dead proxy, so the run succeeds only if the winner is used.
_PROXY_PRECEDENCE = [
    ("--proxy", "BRUIN_VAULT_PROXY_ADDR"),
    ("BRUIN_VAULT_PROXY_ADDR", "VAULT_PROXY_ADDR"),
    ("BRUIN_VAULT_PROXY_ADDR", "BAO_PROXY_ADDR"),
    ("VAULT_PROXY_ADDR", "BAO_PROXY_ADDR"),
    ("VAULT_PROXY_ADDR", "HTTP_PROXY"),
]


@pytest.mark.parametrize(("winner", "loser"), _PROXY_PRECEDENCE)
def test_proxy_setting_precedence(render: Render, out: OutputDir, forward_proxy: ForwardProxy,
                                  bao_server: BaoServer, winner: str, loser: str) -> None:
    flags = ["--proxy", forward_proxy.url] if winner == "--proxy" else []
    env = {loser: dead_proxy()}
    if winner != "--proxy":
        env[winner] = forward_proxy.url
    result = render(*flags, BRUIN_VAULT_HOST=unresolvable(bao_server), BRUIN_VAULT_MAX_RETRIES="0", **env)
    result.assert_ok()
    out.assert_written()
    assert_all_through(forward_proxy, f"{UNRESOLVABLE}:{port_of(bao_server.addr)}")


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "VAULT_PROXY_ADDR", "HTTPS_PROXY"])
def test_refusing_proxy_fails_naming_it_without_its_password(render: Render, out: OutputDir, mount: str,
                                                             bao_server: BaoServer, variable: str) -> None:
    LEAK_GUARD.add(PROXY_PASSWORD)
    out.plant_previous()
    proxy = dead_proxy()
    with_password = proxy.replace("http://", f"http://bruin:{PROXY_PASSWORD}@")
    host = unresolvable(bao_server)
    if variable == "HTTPS_PROXY":  # the proxy for https addresses, reached for a CONNECT tunnel
        host = host.replace("http://", "https://")
    result = render(BRUIN_VAULT_HOST=host, BRUIN_VAULT_MAX_RETRIES="0", **{variable: with_password})
    result.assert_failed(3, f"inspecting mount {mount}: cannot reach Vault through the proxy {proxy} ",
                         "connection refused")
    assert "bruin:" not in result.lines[0]
    assert result.elapsed < 2 * SLACK  # refused is not retried for 10 s
    out.assert_untouched()


def test_proxy_without_scheme_is_an_http_proxy(render: Render, out: OutputDir, forward_proxy: ForwardProxy,
                                               bao_server: BaoServer) -> None:
    # HTTP_PROXY=host:port, as curl and Go take it.
    result = render(BRUIN_VAULT_HOST=unresolvable(bao_server), HTTP_PROXY=forward_proxy.url.removeprefix("http://"))
    result.assert_ok()
    out.assert_written()
    assert_all_through(forward_proxy, f"{UNRESOLVABLE}:{port_of(bao_server.addr)}")


@pytest.mark.parametrize(("source", "value"), [
    ("HTTP_PROXY", "socks5://127.0.0.1:1080"),
    ("BRUIN_VAULT_PROXY_ADDR", "http://bruin:{password}@127.0.0.1:no-port"),
    ("--proxy", "ftp://127.0.0.1:21"),
])
def test_malformed_proxy_setting_is_a_usage_error(render: Render, out: OutputDir, bao_server: BaoServer,
                                                  source: str, value: str) -> None:
    LEAK_GUARD.add(PROXY_PASSWORD)
    value = value.format(password=PROXY_PASSWORD)
    flags = ["--proxy", value] if source == "--proxy" else []
    env = {} if source == "--proxy" else {source: value}
    result = render(*flags, BRUIN_VAULT_HOST=unresolvable(bao_server), **env)
    result.assert_failed(2, f"{source} ")  # one line naming the setting, before any network call
    out.assert_untouched()


def test_proxy_refusing_the_tunnel_fails_naming_it(render: Render, out: OutputDir, mount: str,
                                                   forward_proxy: ForwardProxy) -> None:
    # The proxy answers 502 to a CONNECT it cannot make: no tunnel, and no TLS attempted through it.
    result = render(BRUIN_VAULT_HOST="https://elsewhere.invalid:8200", HTTPS_PROXY=forward_proxy.url,
                    BRUIN_VAULT_MAX_RETRIES="0")
    result.assert_failed(3, f"inspecting mount {mount}: cannot reach Vault through the proxy {forward_proxy.url} ",
                         "no connection or tunnel")
    assert [(s.method, s.host) for s in forward_proxy.seen()] == [("CONNECT", "elsewhere.invalid:8200")]
    out.assert_untouched()


def test_proxy_credentials_are_sent_to_the_proxy(render: Render, out: OutputDir, forward_proxy: ForwardProxy,
                                                 bao_server: BaoServer) -> None:
    credentials = base64.b64encode(f"bruin:{PROXY_PASSWORD}".encode()).decode()
    LEAK_GUARD.add(PROXY_PASSWORD)
    LEAK_GUARD.add(credentials)
    url = forward_proxy.url.replace("http://", f"http://bruin:{PROXY_PASSWORD}@")
    result = render(BRUIN_VAULT_HOST=unresolvable(bao_server), HTTP_PROXY=url)
    result.assert_ok()
    assert_all_through(forward_proxy, f"{UNRESOLVABLE}:{port_of(bao_server.addr)}")
    assert {s.headers.get("proxy-authorization") for s in forward_proxy.seen()} == {f"Basic {credentials}"}


# --- HTTPS through a CONNECT tunnel ---------------------------------------------------------------------


@pytest.fixture
def tls_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy({PROXIED_NAME: "127.0.0.1"}) as proxy:
        yield proxy


def _tls_env(world: AuthWorld, schema_path: Path, proxy: ForwardProxy, ca_cert: Path) -> dict[str, str]:
    return {"BRUIN_VAULT_HOST": f"https://{PROXIED_NAME}:{port_of(world.bao.https_addr)}",
            "BRUIN_VAULT_MOUNT_PATH": MOUNT, "BRUIN_VAULT_PATH": PATH, "BRUIN_VAULT_TOKEN": world.policy_token(),
            "VAULT_CACERT": str(ca_cert), "HTTPS_PROXY": proxy.url, "BRUIN_VAULT_MAX_RETRIES": "0",
            "BRUIN_MATERIALIZE_SCHEMA": str(schema_path)}


def test_https_proxy_tunnels_to_tls_vault(run_cli: Any, no_proxy_env: dict[str, str], auth_world: AuthWorld,
                                          tls_proxy: ForwardProxy, schema_path: Path) -> None:
    proc = run_cli("check", env=_tls_env(auth_world, schema_path, tls_proxy, auth_world.bao.pki.ca_cert))
    assert proc.returncode == 0, proc.stderr
    seen = tls_proxy.seen()
    authority = f"{PROXIED_NAME}:{port_of(auth_world.bao.https_addr)}"
    assert seen and all(s.method == "CONNECT" and s.host == authority for s in seen), seen


def test_https_proxy_tunnel_still_verifies_the_certificate(run_cli: Any, no_proxy_env: dict[str, str],
                                                           auth_world: AuthWorld, tls_proxy: ForwardProxy,
                                                           schema_path: Path) -> None:
    env = _tls_env(auth_world, schema_path, tls_proxy, auth_world.bao.pki.other_ca_cert)
    proc = run_cli("check", env=env)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"materialize: error: inspecting mount {MOUNT}: TLS verification of "
                               f"https://{PROXIED_NAME}:"), lines[0]
    assert [s.method for s in tls_proxy.seen()][:1] == ["CONNECT"]  # it did go through the tunnel


@pytest.mark.parametrize("trickled", ["tunnel", "connect"])
def test_trickling_https_proxy_fails_within_timeout(run_cli: Any, no_proxy_env: dict[str, str],
                                                    auth_world: AuthWorld, tls_proxy: ForwardProxy,
                                                    schema_path: Path, trickled: str) -> None:
    # tunnel: what the server sends (its TLS handshake first) reaches us a byte every 0.5 s;
    # connect: the proxy's answer to the CONNECT itself comes a byte every 0.5 s.
    setattr(tls_proxy, f"trickle_{trickled}", 0.5)
    env = {**_tls_env(auth_world, schema_path, tls_proxy, auth_world.bao.pki.ca_cert), "BRUIN_VAULT_TIMEOUT": "3s"}
    started = time.monotonic()
    try:
        proc = run_cli("check", env=env, timeout=15)
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None:
        pytest.fail("still connecting 15 s later: the 3 s deadline did not hold")
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [f"materialize: error: inspecting mount {MOUNT}: timed out talking to "
                                        f"https://{PROXIED_NAME}:{port_of(auth_world.bao.https_addr)} "
                                        "(no answer within 3s)"]
    assert 3.0 <= elapsed < 6.0, f"{elapsed:.1f} s"
    assert [s.method for s in tls_proxy.seen()] == ["CONNECT"]  # the budget is spent: no second attempt


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose connections the kernel accepts and nobody ever reads or answers: a TLS
    handshake with it never ends."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_deadline_holds_during_the_tls_handshake(render: Render, out: OutputDir, mount: str,
                                                 silent_listener: int) -> None:
    out.plant_previous()
    host = f"https://127.0.0.1:{silent_listener}"
    result = render(BRUIN_VAULT_HOST=host, BRUIN_VAULT_TIMEOUT="2s", timeout=15)
    result.assert_failed(3, f"inspecting mount {mount}: timed out talking to {host} (no answer within 2s)")
    assert 2.0 <= result.elapsed < 2.0 + 2 * SLACK
    out.assert_untouched()


def test_tls_to_a_plain_http_port_is_a_handshake_failure(render: Render, out: OutputDir, mount: str,
                                                         bao_server: BaoServer) -> None:
    host = bao_server.addr.replace("http://", "https://")
    result = render(BRUIN_VAULT_HOST=host)
    result.assert_failed(3, f"inspecting mount {mount}: TLS handshake with {host} failed (handshake error); "
                         "check the client certificate")
    assert result.elapsed < 2 * SLACK  # not retried: the next handshake would fail the same way
    out.assert_untouched()


# --- the headers every request carries ------------------------------------------------------------


@pytest.mark.parametrize("route", ["direct", "proxy"])
def test_every_request_carries_user_agent_and_vault_request(render: Render, fault_proxy: FaultProxy,
                                                            forward_proxy: ForwardProxy, bao_server: BaoServer,
                                                            route: str) -> None:
    if route == "direct":  # the fault proxy, answering as the server, records what reached it
        result = render(BRUIN_VAULT_HOST=fault_proxy.addr)
        sent = [{k.lower(): v for k, v in record.headers} for record in fault_proxy.log()]
    else:
        result = render(BRUIN_VAULT_HOST=unresolvable(bao_server), HTTP_PROXY=forward_proxy.url)
        sent = [s.headers for s in forward_proxy.seen()]
    result.assert_ok()
    assert len(sent) == REQUESTS
    expected = f"bruin-materialize/{bruin_materialize.__version__}"
    assert [h.get("user-agent") for h in sent] == [expected] * REQUESTS
    assert [h.get("x-vault-request") for h in sent] == ["true"] * REQUESTS


# --- one deadline per operation, against a server that trickles -------------------------------------


@pytest.mark.parametrize(("action", "seconds"), [("trickle_head", 1.0), ("trickle_body", 0.5),
                                                 ("trickle_body_close", 0.5)])
def test_trickled_answer_fails_within_timeout(render: Render, out: OutputDir, mount: str,
                                              fault_proxy: FaultProxy, action: str, seconds: float) -> None:
    # Each byte comes well within any socket timeout: only a deadline on the whole exchange ends it.
    out.plant_previous()
    fault_proxy.add_rule(action, path=PG, times=ALWAYS, seconds=seconds)
    try:
        result = render(BRUIN_VAULT_HOST=fault_proxy.addr, BRUIN_VAULT_TIMEOUT="3s", timeout=15)
    except subprocess.TimeoutExpired:
        result = None
    if result is None:
        pytest.fail("still reading the trickled answer 15 s later: the 3 s deadline did not hold")
    result.assert_failed(3, reading(mount), "timed out")
    since_read = time.monotonic() - fault_proxy.request_times(PG)[0]
    assert 2.8 <= since_read < 3.0 + SLACK
    assert 3.0 <= result.elapsed < 6.0  # child start-up and the listing included
    assert fault_proxy.requests(PG) == 1  # the budget is spent: no second attempt
    out.assert_untouched()


# --- answers too large for Vault ------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked", "unframed"])
def test_oversized_answer_is_refused_without_reading_it_all(render: Render, out: OutputDir, mount: str,
                                                            fault_proxy: FaultProxy, framing: str) -> None:
    # The answer never ends: a client reading it to the end would hit its 10 s timeout instead.
    out.plant_previous()
    rule = fault_proxy.add_rule(f"oversize_{framing}", path=PG, times=ALWAYS)
    result = render(BRUIN_VAULT_HOST=fault_proxy.addr, BRUIN_VAULT_TIMEOUT="10s")
    result.assert_failed(3, reading(mount), "larger than 32 MiB")
    assert time.monotonic() - fault_proxy.request_times(PG)[0] < 4.0
    assert fault_proxy.requests(PG) == 1  # not retried: the next answer would be as large
    if framing != "length":  # without a Content-Length, reading stops past 32 MiB (and what buffers hold)
        assert rule.sent < OVERSIZE - 8 * 2**20
    out.assert_untouched()


# --- a proxy that wants credentials ------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "VAULT_PROXY_ADDR", "BRUIN_VAULT_PROXY_ADDR"])
def test_a_proxy_asking_for_credentials_names_its_setting_never_its_password(
        render: Render, out: OutputDir, mount: str, fault_proxy: FaultProxy, bao_server: BaoServer,
        variable: str) -> None:
    """HTTP 407 from the proxy is neither an empty mount nor a reason to probe further: one line naming the
    proxy and the setting, and no second request."""
    LEAK_GUARD.add(PROXY_PASSWORD)
    fault_proxy.add_rule("answer", times=ALWAYS, status=407,
                         headers=(("Proxy-Authenticate", 'Basic realm="proxy"'),))
    proxy = f"http://user:{PROXY_PASSWORD}@127.0.0.1:{fault_proxy.port}"
    result = render(BRUIN_VAULT_HOST=unresolvable(bao_server), **{variable: proxy})
    assert result.error(3) == (f"inspecting mount {mount}: the proxy asks for credentials (HTTP 407) from "
                               f"http://127.0.0.1:{fault_proxy.port} ({variable}); put user:password@ in "
                               f"{variable}'s URL, or check the ones there")
    assert fault_proxy.requests() == 1
    out.assert_untouched()


def test_a_proxy_refusing_the_tunnel_for_credentials_names_its_setting(render: Render, out: OutputDir, mount: str,
                                                                       forward_proxy: ForwardProxy) -> None:
    """An https Vault through a proxy that answers the CONNECT with 407: the same line, no retries."""
    LEAK_GUARD.add(PROXY_PASSWORD)
    forward_proxy.refuse_connect = 407
    proxy = forward_proxy.url.replace("http://", f"http://user:{PROXY_PASSWORD}@")
    result = render(BRUIN_VAULT_HOST="https://elsewhere.invalid:8200", HTTPS_PROXY=proxy, BRUIN_VAULT_MAX_RETRIES="3")
    assert result.error(3) == (f"inspecting mount {mount}: the proxy asks for credentials (HTTP 407) from "
                               f"{forward_proxy.url} (HTTPS_PROXY); put user:password@ in HTTPS_PROXY's URL, or check "
                               "the ones there")
    assert [s.method for s in forward_proxy.seen()] == ["CONNECT"]
    out.assert_untouched()
