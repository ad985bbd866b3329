"""The stack floor: the least a process on this tool's stack can take to read the secrets.

It imports the runtime stack (hvac, pycurl, jinja2, ruamel.yaml), then LISTs the path and GETs every secret
one after another over one keep-alive connection: what remains of a run once every line of the
tool's own code is free. Settings from the environment (BENCH_ADDR, BENCH_TOKEN, BENCH_MOUNT,
BENCH_PATH); prints only the count.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse

import hvac  # noqa: F401  (imported for its cost: the stack's imports are part of the floor)
import jinja2  # noqa: F401
import pycurl  # noqa: F401  (the tool's transport, imported by every run)
import ruamel.yaml  # noqa: F401


def main() -> int:
    addr = urllib.parse.urlsplit(os.environ["BENCH_ADDR"])
    mount, path = os.environ["BENCH_MOUNT"], os.environ["BENCH_PATH"]
    headers = {"X-Vault-Token": os.environ["BENCH_TOKEN"]}
    conn = http.client.HTTPConnection(addr.hostname or "127.0.0.1", addr.port, timeout=30)

    def get(target: str) -> dict:  # type: ignore[type-arg]
        conn.request("GET", target, headers=headers)
        return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]

    keys = get(f"/v1/{mount}/metadata/{path}?list=true")["data"]["keys"]
    secrets = [get(f"/v1/{mount}/data/{path}/{key}")["data"]["data"] for key in keys]
    print(f"read {len(secrets)} secrets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
