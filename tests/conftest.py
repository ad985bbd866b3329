"""The test harness, registered once: the fixtures of testsupport/ and the hypothesis profiles.

No mocks of Vault (STYLE.md, tests): testsupport.harness starts `bao server -dev` once per session
on a free loopback port and gives each test its own KV mount; testsupport.leak fails any test whose
output holds a secret it wrote. Tests import helpers and types from testsupport, never fixtures:
those are found by name.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Before anything imports them: the helpers' asserts judge the tests' runs.
pytest.register_assert_rewrite("testsupport")

pytest_plugins = [
    "pytester",
    "testsupport.leak",  # the leak guard's hooks and the `leak_guard` fixture
    "testsupport.harness",  # bao_server, kv, kv1, kv2, vault_env, run_cli, schema_path, fake_bruin
    "testsupport.auth",  # auth_bao, auth_world: a server with TLS listeners and auth methods
    "testsupport.cli",  # out, materialize, render (a test module provides `mount`)
    "testsupport.fault_proxy",  # fault_proxy
    "testsupport.forward_proxy",  # forward_proxy
    "testsupport.postgres",  # postgres (a real PostgreSQL server), database (OpenBao's database engine on it)
]

def pytest_sessionstart(session: pytest.Session) -> None:
    """Up front, even under -q: which tests this machine cannot run, and why (said once, by the
    process that runs the session, not by each xdist worker)."""
    from testsupport.skips import header

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not hasattr(session.config, "workerinput"):
        for line in header():
            reporter.write_line(line)


# Property tests: "dev" for a quick local run, "ci" where CI is set (.ci/run, GitHub Actions...).
# Slow properties ask for a fraction of the profile's examples (testsupport.values.examples).
# No deadline: on a busy 2-core machine one example's time says nothing.
settings.register_profile("dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", settings.get_profile("dev"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
