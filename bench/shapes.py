"""Connection secrets of realistic shapes and sizes, made up (no real credential), reproducibly.

The mix is what a data team's Vault path tends to hold: many small database logins, and a good
share of large ones: Snowflake key-pair logins (a PEM private key, ~1.7 kB) and BigQuery service
accounts (a service-account JSON document as one string, ~2.4 kB). Every secret is valid against
bruin's schema (the full copy and the subset in tests/data), so the run exercises the whole
validation without printing a warning per secret.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

Secret = dict[str, Any]  # {"type": ..., "details": {...}}, as bruin's Vault backend expects

# Out of 20 secrets: the order repeats, so every size has the same mix (20 has exactly this one).
_MIX = ("postgres",) * 7 + ("mysql",) * 2 + ("snowflake",) * 4 + ("google_cloud_platform",) * 4 + ("databricks",) * 3


def secret_for(index: int) -> tuple[str, Secret]:
    """The connection name and the secret of the `index`-th connection (same index, same data)."""
    rng = random.Random(index)
    kind = _MIX[index % len(_MIX)]
    name = f"{_SHORT[kind]}-{index:05d}"
    return name, {"type": kind, "details": _MAKERS[kind](rng, index)}


def _token(rng: random.Random, nbytes: int) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(nbytes)).decode().rstrip("=")


def _pem(rng: random.Random) -> str:
    """A PKCS#8 block the size of an RSA-2048 key (random bytes: it is not a usable key)."""
    body = base64.b64encode(rng.randbytes(1218)).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"


def _postgres(rng: random.Random, i: int) -> dict[str, Any]:
    return {"host": f"pg-{i % 37}.db.internal", "port": 5432, "username": f"svc_etl_{i}",
            "password": _token(rng, 24), "database": f"analytics_{i % 11}", "schema": "public",
            "ssl_mode": "require"}


def _mysql(rng: random.Random, i: int) -> dict[str, Any]:
    return {"host": f"mysql-{i % 13}.db.internal", "port": 3306, "username": f"reader_{i}",
            "password": _token(rng, 18), "database": f"shop_{i % 5}"}


def _snowflake(rng: random.Random, i: int) -> dict[str, Any]:
    return {"account": f"xy{i % 97:05d}.eu-central-1", "username": f"BRUIN_{i}", "role": "TRANSFORMER",
            "warehouse": "COMPUTE_WH", "database": "RAW", "schema": f"SRC_{i % 17}", "private_key": _pem(rng)}


def _service_account(rng: random.Random, i: int) -> str:
    project = f"data-platform-{i % 23}"
    account = f"bruin-{i}@{project}.iam.gserviceaccount.com"
    return json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": rng.randbytes(20).hex(),
        "private_key": _pem(rng), "client_email": account, "client_id": str(rng.randrange(10**20, 10**21)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{account}",
        "universe_domain": "googleapis.com",
    }, indent=2)


def _gcp(rng: random.Random, i: int) -> dict[str, Any]:
    return {"project_id": f"data-platform-{i % 23}", "location": "EU", "service_account_json": _service_account(rng, i)}


def _databricks(rng: random.Random, i: int) -> dict[str, Any]:
    return {"host": f"dbc-{rng.randbytes(4).hex()}.cloud.databricks.com", "port": 443,
            "path": f"/sql/1.0/warehouses/{rng.randbytes(8).hex()}", "token": "dapi" + rng.randbytes(16).hex(),
            "catalog": "main", "schema": f"team_{i % 9}"}


_MAKERS: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
    "postgres": _postgres, "mysql": _mysql, "snowflake": _snowflake,
    "google_cloud_platform": _gcp, "databricks": _databricks,
}
_SHORT = {"postgres": "pg", "mysql": "mysql", "snowflake": "sf", "google_cloud_platform": "bq", "databricks": "dbx"}
