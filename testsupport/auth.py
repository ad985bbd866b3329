"""Fixtures for the authentication and TLS tests (tests/test_auth.py, tests/test_transport.py).

One OpenBao dev server of their own, so that the auth methods can sit at their default mounts
(`kubernetes`, `approle`, `jwt`) without touching the shared server's: plain HTTP on the dev
listener, HTTPS with a CA made here, HTTPS that requires a client certificate, and a unix socket.
Beside it, a stand-in for the Kubernetes TokenReview API (OpenBao's kubernetes auth asks it whether
a service-account JWT is valid), and an RSA key pair that signs JWTs for the jwt auth method.

Every role's policy grants only what the program needs: `list` on secret/metadata/bruin and `read`
on secret/data/bruin/*. Everything listens on 127.0.0.1 or on a socket in a temporary directory.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import http.server
import ipaddress
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testsupport import bao
from testsupport.harness import start_bao, wait_until_kv2_writable
from testsupport.leak import LEAK_GUARD
from testsupport.wait import wait_until

MOUNT = "secret"  # the dev server's own KV v2 mount
PATH = "bruin"
NAMESPACE = "team"  # an OpenBao namespace holding the same mount, data and an AppRole of its own
K8S_ROLE = "bruin-runner"
K8S_ALT_MOUNT = "k8s-alt"  # a second kubernetes auth mount, for --k8s-auth-mount
K8S_NO_POLICY_ROLE = "no-kv-policy"  # logs in, but its token may not read the secrets
SERVICE_ACCOUNT = ("pipelines", "bruin")  # (namespace, name)
SERVICE_ACCOUNT_UID = "0f6b1c52-3d7e-4c55-9a57-0e3c5b1d2a10"
APPROLE_ROLE = "bruin"
APPROLE_NO_REVOKE_ROLE = "no-default-policy"  # tokens without `default`: revoke-self is refused
JWT_ROLE = "ci"
JWT_AUDIENCE = "bruin-materialize"
JWT_SUBJECT = "repo:data/pipelines:ref:refs/heads/main"
JWT_ISSUER = "https://ci.example.test"
PROXIED_NAME = "vault.invalid"  # a name no resolver knows; the test proxy maps it to 127.0.0.1

# The connection secrets every test renders: what matters is that each way in reads the same.
SECRETS: dict[str, dict[str, Any]] = {
    "warehouse": {
        "type": "postgres",
        "details": {"host": "db.internal", "port": 5432, "username": "app",
                    "password": "pg-auth-Pa55-" + secrets.token_hex(6), "database": "analytics"},
    },
    "lake": {"type": "duckdb", "details": {"path": "/data/lake.db"}},
}

KV_POLICY = f"""
path "{MOUNT}/metadata/{PATH}" {{ capabilities = ["list"] }}
path "{MOUNT}/data/{PATH}/*" {{ capabilities = ["read"] }}
"""


# --- PKI -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1 and a client certificate it signed."""

    ca_cert: Path
    ca_dir: Path  # for VAULT_CAPATH: the CA and an unrelated one, plain PEM files (not hashed names)
    other_ca_cert: Path  # a CA that signed nothing here: trusting only it must fail
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # far faster to make than RSA


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bruin-materialize tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any, issuer_key: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (
        _builder(_name(common_name), _name(common_name), key.public_key(), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(common_name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
          server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    builder = (
        _builder(_name(common_name), ca.subject, key.public_key(), ca_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        # Go checks the extended key usage of client certificates; Python that of servers.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName("localhost"),
                                         # reached through a proxy only (tests/test_transport.py)
                                         x509.DNSName(PROXIED_NAME)]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def make_pki(directory: Path) -> Pki:
    ca, ca_key = _ca("test CA")
    other_ca, _ = _ca("unrelated CA")
    server, server_key = _leaf("127.0.0.1", ca, ca_key, server=True)
    client, client_key = _leaf("bruin-materialize client", ca, ca_key, server=False)
    ca_dir = directory / "ca.d"
    ca_dir.mkdir()
    _write_cert(ca_dir / "unrelated.pem", other_ca)
    _write_cert(ca_dir / "test-ca.pem", ca)
    return Pki(
        ca_cert=_write_cert(directory / "ca.pem", ca),
        ca_dir=ca_dir,
        other_ca_cert=_write_cert(directory / "other-ca.pem", other_ca),
        server_cert=_write_cert(directory / "server.pem", server),
        server_key=_write_key(directory / "server-key.pem", server_key),
        client_cert=_write_cert(directory / "client.pem", client),
        client_key=_write_key(directory / "client-key.pem", client_key),
    )


# --- JWTs ----------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(claims: Mapping[str, Any], key: rsa.RSAPrivateKey, kid: str = "test") -> str:
    """An RS256 JWT (RFC 7515 compact form), signed by hand: no JWT library needed."""
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64url(json.dumps(dict(claims)).encode())
    signature = key.sign(f"{header}.{payload}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64url(signature)}"


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def service_account_claims(namespace: str, name: str, uid: str) -> dict[str, Any]:
    """The claims of a legacy (secret-based) service-account token, as kubernetes auth reads them."""
    now = int(time.time())
    return {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "iat": now,
        "exp": now + 3600,
        "jti": secrets.token_hex(8),  # two tokens for the same account differ
    }


def ci_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": JWT_ISSUER, "sub": JWT_SUBJECT, "aud": [JWT_AUDIENCE], "iat": now, "nbf": now - 5,
              "exp": now + 600, "jti": secrets.token_hex(8)}
    claims.update(overrides)
    return claims


# --- the Kubernetes TokenReview stand-in ---------------------------------------------------------


class TokenReviewStub:
    """Answers POST /apis/authentication.k8s.io/v1/tokenreviews like an API server would.

    A JWT in `accepted` is authenticated as its service account; any other is not. Nothing is
    logged: the requests carry JWTs.
    """

    PATH = "/apis/authentication.k8s.io/v1/tokenreviews"

    def __init__(self) -> None:
        self.accepted: dict[str, tuple[str, str, str]] = {}  # jwt -> (namespace, name, uid)
        self.reviews = 0
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    token = json.loads(self.rfile.read(length))["spec"]["token"]
                except (ValueError, KeyError, TypeError):
                    token = None
                stub.reviews += 1
                status, body = stub._answer(self.path, token)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="tokenreview", daemon=True)
        self._thread.start()

    def _answer(self, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
        if path != self.PATH:
            return 404, {"kind": "Status", "status": "Failure", "code": 404}
        account = self.accepted.get(token or "")
        if account is None:
            status: dict[str, Any] = {"authenticated": False, "error": "invalid bearer token"}
        else:
            namespace, name, uid = account
            status = {"authenticated": True,
                      "user": {"username": f"system:serviceaccount:{namespace}:{name}", "uid": uid,
                               "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]}}
        return 201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- the OpenBao server --------------------------------------------------------------------------


@dataclasses.dataclass
class AuthBao:
    """The server: one address per listener, and a root client on the plain one."""

    http_addr: str
    https_addr: str  # server certificate from pki.ca_cert
    mtls_addr: str  # the same, and a client certificate signed by pki.ca_cert is required
    unix_addr: str  # unix:///.../bao.sock
    root_token: str
    client: hvac.Client
    pki: Pki

    def namespace_client(self, namespace: str) -> hvac.Client:
        return hvac.Client(url=self.http_addr, token=self.root_token, namespace=namespace)


def _listener_config(pki: Pki, https_port: int, mtls_port: int, socket_path: Path) -> str:
    tls = f'tls_cert_file = "{pki.server_cert}"\n  tls_key_file = "{pki.server_key}"'
    return f"""
listener "tcp" {{
  address = "127.0.0.1:{https_port}"
  cluster_address = "127.0.0.1:{bao.free_port()}"
  {tls}
}}
listener "tcp" {{
  address = "127.0.0.1:{mtls_port}"
  cluster_address = "127.0.0.1:{bao.free_port()}"
  {tls}
  tls_client_ca_file = "{pki.ca_cert}"
  tls_require_and_verify_client_cert = true
}}
listener "unix" {{
  address = "{socket_path}"
}}
"""


@pytest.fixture(scope="session")
def auth_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthBao]:
    workdir = tmp_path_factory.mktemp("auth-bao")
    pki = make_pki(workdir)
    https_port, mtls_port = bao.free_port(), bao.free_port()
    socket_path = workdir / "bao.sock"
    config = workdir / "listeners.hcl"
    config.write_text(_listener_config(pki, https_port, mtls_port, socket_path), encoding="utf-8")
    server = start_bao(workdir, f"-config={config}")
    try:
        try:
            wait_until(socket_path.exists, 10, 0.02, what=f"bao server's unix socket {socket_path}")
        except TimeoutError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield AuthBao(
            http_addr=server.addr,
            https_addr=f"https://127.0.0.1:{https_port}",
            mtls_addr=f"https://127.0.0.1:{mtls_port}",
            unix_addr=f"unix://{socket_path}",
            root_token=server.token,
            client=hvac.Client(url=server.addr, token=server.token),
            pki=pki,
        )
    finally:
        bao.stop(server)


# --- the auth methods ----------------------------------------------------------------------------


@dataclasses.dataclass
class AuthWorld:
    """The server with its data, policies, auth methods and credentials, ready for logins."""

    bao: AuthBao
    policy: str
    tokenreview: TokenReviewStub
    k8s_jwt: str  # the service account's JWT, which the TokenReview stand-in accepts
    jwt_key: rsa.RSAPrivateKey  # its public key is the jwt auth method's validation key
    other_key: rsa.RSAPrivateKey  # trusted by nobody
    role_id: str  # of APPROLE_ROLE
    no_revoke_role_id: str  # of APPROLE_NO_REVOKE_ROLE
    namespace_role_id: str  # of APPROLE_ROLE inside NAMESPACE
    own_accessors: set[str] = dataclasses.field(default_factory=set)  # tokens made here, not by logins

    def policy_token(self, *, ttl: str = "1h", namespace: str | None = None) -> str:
        """A plain token holding only the KV policy; registered with the leak guard."""
        client = self.bao.namespace_client(namespace) if namespace else self.bao.client
        response = client.auth.token.create(policies=[self.policy], no_default_policy=True, ttl=ttl)
        token: str = response["auth"]["client_token"]
        self.own_accessors.add(response["auth"]["accessor"])
        LEAK_GUARD.add(token)
        return token

    def secret_id(self, role: str = APPROLE_ROLE, *, namespace: str | None = None) -> str:
        client = self.bao.namespace_client(namespace) if namespace else self.bao.client
        response = client.auth.approle.generate_secret_id(role_name=role)
        secret_id: str = response["data"]["secret_id"]
        LEAK_GUARD.add(secret_id)
        return secret_id

    def new_k8s_jwt(self, *, accepted: bool) -> str:
        """Another JWT of the same service account; the TokenReview stand-in accepts it or not.

        Kubernetes auth checks no signature here (no `pem_keys`): the TokenReview answer decides.
        """
        namespace, name = SERVICE_ACCOUNT
        token = sign_jwt(service_account_claims(namespace, name, SERVICE_ACCOUNT_UID), self.other_key)
        if accepted:
            self.tokenreview.accepted[token] = (namespace, name, SERVICE_ACCOUNT_UID)
        LEAK_GUARD.add(token)
        return token

    def ci_jwt(self, *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        token = sign_jwt(ci_claims(**claims), key or self.jwt_key)
        LEAK_GUARD.add(token)
        return token

    def accessors(self, namespace: str | None = None) -> set[str]:
        """The accessors of every live token (LIST auth/token/accessors, as root)."""
        client = self.bao.namespace_client(namespace) if namespace else self.bao.client
        listed: Any = client.list("auth/token/accessors")  # None (a 404) where no token is live
        keys: list[str] = listed["data"]["keys"] if listed else []
        return set(keys)

    def login_tokens_since(self, before: set[str], namespace: str | None = None) -> set[str]:
        """Accessors of live tokens made since `before` other than by this class: logins' tokens."""
        return self.accessors(namespace) - before - self.own_accessors

    def revoke_accessors(self, accessors: set[str], namespace: str | None = None) -> None:
        client = self.bao.namespace_client(namespace) if namespace else self.bao.client
        for accessor in accessors:
            client.auth.token.revoke_accessor(accessor)

    def token_is_live(self, token: str) -> bool:
        try:
            self.bao.client.auth.token.lookup(token)
        except hvac.exceptions.VaultError:
            return False
        return True


def _seed_kv(client: hvac.Client) -> None:
    for name, secret in SECRETS.items():
        wait_until_kv2_writable(client, MOUNT, f"{PATH}/{name}", secret)


def _setup_kubernetes(client: hvac.Client, tokenreview: TokenReviewStub, ca_pem: str, policy: str) -> None:
    namespace, name = SERVICE_ACCOUNT
    for mount in ("kubernetes", K8S_ALT_MOUNT):
        client.sys.enable_auth_method("kubernetes", path=mount)
        # No local service-account files here: OpenBao then wants a CA, used only for https hosts.
        client.write_data(f"auth/{mount}/config", data={
            "kubernetes_host": tokenreview.url, "kubernetes_ca_cert": ca_pem, "disable_local_ca_jwt": True,
        })
        client.write_data(f"auth/{mount}/role/{K8S_ROLE}", data={
            "bound_service_account_names": [name], "bound_service_account_namespaces": [namespace],
            "token_policies": [policy], "token_ttl": "10m",
        })
    client.write_data(f"auth/kubernetes/role/{K8S_NO_POLICY_ROLE}", data={
        "bound_service_account_names": [name], "bound_service_account_namespaces": [namespace],
        "token_ttl": "10m",  # `default` only: it may not list or read the secrets
    })


def _setup_approle(client: hvac.Client, policy: str, *, no_revoke: bool) -> tuple[str, str | None]:
    client.sys.enable_auth_method("approle", path="approle")
    client.auth.approle.create_or_update_approle(APPROLE_ROLE, token_policies=[policy], token_ttl="10m")
    role_id: str = client.auth.approle.read_role_id(APPROLE_ROLE)["data"]["role_id"]
    if not no_revoke:
        return role_id, None
    client.auth.approle.create_or_update_approle(APPROLE_NO_REVOKE_ROLE, token_policies=[policy],
                                                 token_no_default_policy=True, token_ttl="10m")
    return role_id, client.auth.approle.read_role_id(APPROLE_NO_REVOKE_ROLE)["data"]["role_id"]


def _setup_jwt(client: hvac.Client, key: rsa.RSAPrivateKey, policy: str) -> None:
    client.sys.enable_auth_method("jwt", path="jwt")
    client.write_data("auth/jwt/config", data={"jwt_validation_pubkeys": [public_pem(key)],
                                               "bound_issuer": JWT_ISSUER})
    client.write_data(f"auth/jwt/role/{JWT_ROLE}", data={
        "role_type": "jwt", "bound_audiences": [JWT_AUDIENCE], "user_claim": "sub",
        "bound_subject": JWT_SUBJECT, "token_policies": [policy], "token_ttl": "10m",
    })


def _setup_namespace(bao: AuthBao, policy: str) -> str:
    """NAMESPACE: the same KV mount, data and policy, and an AppRole; returns its role id."""
    bao.client.sys.create_namespace(NAMESPACE)  # type: ignore[no-untyped-call]  # untyped in types-hvac
    client = bao.namespace_client(NAMESPACE)
    client.sys.enable_secrets_engine("kv", path=MOUNT, options={"version": "2"})
    client.sys.create_or_update_policy(name=policy, policy=KV_POLICY)
    _seed_kv(client)
    role_id, _ = _setup_approle(client, policy, no_revoke=False)
    return role_id


@pytest.fixture(scope="session")
def auth_world(auth_bao: AuthBao) -> Iterator[AuthWorld]:
    client = auth_bao.client
    policy = "bruin-read"
    # Session-wide values stay registered for every test (the guard forgets the others per test).
    LEAK_GUARD.add(SECRETS["warehouse"]["details"]["password"], persistent=True)
    client.sys.create_or_update_policy(name=policy, policy=KV_POLICY)
    _seed_kv(client)
    tokenreview = TokenReviewStub()
    try:
        _setup_kubernetes(client, tokenreview, auth_bao.pki.ca_cert.read_text(encoding="ascii"), policy)
        role_id, no_revoke_role_id = _setup_approle(client, policy, no_revoke=True)
        assert no_revoke_role_id is not None
        jwt_key, other_key = new_rsa_key(), new_rsa_key()
        _setup_jwt(client, jwt_key, policy)
        world = AuthWorld(
            bao=auth_bao, policy=policy, tokenreview=tokenreview, k8s_jwt="", jwt_key=jwt_key,
            other_key=other_key, role_id=role_id, no_revoke_role_id=no_revoke_role_id,
            namespace_role_id=_setup_namespace(auth_bao, policy),
        )
        world.k8s_jwt = world.new_k8s_jwt(accepted=True)
        LEAK_GUARD.add(world.k8s_jwt, persistent=True)
        yield world
    finally:
        tokenreview.close()
