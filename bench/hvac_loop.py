"""The naive baseline: hvac, one secret after another, as most scripts would do it.

Run as a process so that importing hvac (and requests) counts. Settings come from the
environment (BENCH_ADDR, BENCH_TOKEN, BENCH_MOUNT, BENCH_PATH); prints only the count.
"""

from __future__ import annotations

import os

import hvac


def main() -> int:
    mount, path = os.environ["BENCH_MOUNT"], os.environ["BENCH_PATH"]
    # Every argument explicit: hvac otherwise falls back to ~/.vault-token and VAULT_ADDR.
    client = hvac.Client(url=os.environ["BENCH_ADDR"], token=os.environ["BENCH_TOKEN"], verify=False, timeout=30)
    kv = client.secrets.kv.v2
    keys = kv.list_secrets(mount_point=mount, path=path)["data"]["keys"]
    secrets = [kv.read_secret_version(mount_point=mount, path=f"{path}/{key}", raise_on_deleted_version=True)
               ["data"]["data"] for key in keys]
    print(f"read {len(secrets)} secrets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
