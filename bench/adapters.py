"""hvac over four HTTP stacks, in-process: what the adapter's transport costs, apart from the tool.

Each contestant is an hvac client whose adapter sends through one stack; the same hvac calls
(`kv.v2.list_secrets`, then `kv.v2.read_secret_version` for every secret on THREADS threads) read
every secret. The adapters here are the least each stack needs (keep-alive, the token header, JSON
decoding), none of the tool's retries or checks, so the differences are the stacks':

  pycurl       one reused libcurl Easy handle per thread
  http.client  one keep-alive HTTPConnection per thread
  urllib3      one HTTPConnectionPool shared by the threads (the tool's adapter before libcurl)
  requests     stock hvac: its JSONAdapter over a requests session

Timed like the floor (bench/measure.py), in the benchmark's own process; CPU is the process's
(every thread) per request sent.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

import hvac
import hvac.adapters
import hvac.exceptions
import pycurl
import urllib3

from testsupport.bao import DevServer

THREADS = 8  # the tool's default BRUIN_MATERIALIZE_CONCURRENCY


class Timing(NamedTuple):
    wall: float  # seconds
    cpu_per_request: float  # seconds of the process's CPU per request


class _Minimal(hvac.adapters.JSONAdapter):
    """hvac's adapter interface, answered by `_send`; LIST as GET ?list=true, as the tool sends it."""

    def request(self, method: str, url: str, headers: Any = None, raise_exception: bool = True,
                **kwargs: Any) -> Any:
        method, params = method.upper(), kwargs.get("params") or {}
        if method == "LIST":
            method, params = "GET", {**params, "list": "true"}
        target = "/" + url.lstrip("/") + ("?" + urllib.parse.urlencode(params) if params else "")
        status, body = self._send(method, target, {"X-Vault-Token": self.token or "", "X-Vault-Request": "true"})
        if status != 200:
            raise hvac.exceptions.VaultError(f"HTTP {status}")
        return json.loads(body)

    def _send(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        raise NotImplementedError


class PycurlAdapter(_Minimal):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._local = threading.local()

    def _send(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = pycurl.Curl()
            handle.setopt(pycurl.NOSIGNAL, 1)
            handle.setopt(pycurl.PROXY, "")
        chunks: list[bytes] = []
        handle.setopt(pycurl.URL, self.base_uri + target)
        handle.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()])
        handle.setopt(pycurl.WRITEFUNCTION, chunks.append)
        handle.perform()
        return int(handle.getinfo(pycurl.RESPONSE_CODE)), b"".join(chunks)


class HTTPClientAdapter(_Minimal):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._local = threading.local()
        parts = urllib.parse.urlsplit(self.base_uri)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port

    def _send(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
        conn.request(method, target, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()


class Urllib3Adapter(_Minimal):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool = urllib3.connection_from_url(self.base_uri, maxsize=THREADS)

    def _send(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        resp = self._pool.urlopen(method, target, headers=headers, retries=False, redirect=False)
        return resp.status, resp.data


ADAPTERS: dict[str, type[hvac.adapters.Adapter[Any]]] = {
    "hvac over pycurl": PycurlAdapter, "hvac over http.client": HTTPClientAdapter,
    "hvac over urllib3": Urllib3Adapter, "hvac over requests": hvac.adapters.JSONAdapter,
}


def read_all(server: DevServer, mount: str, path: str, adapter: str, expected: int) -> Timing:
    """LIST and read every secret through hvac with `adapter`, on THREADS threads."""
    started, cpu = time.perf_counter(), time.process_time()
    client = hvac.Client(url=server.addr, token=server.token, verify=False, timeout=30, adapter=ADAPTERS[adapter])
    kv = client.secrets.kv.v2
    keys = kv.list_secrets(path=path, mount_point=mount)["data"]["keys"]
    counts = _parallel(lambda key: bool(kv.read_secret_version(path=f"{path}/{key}", mount_point=mount,
                                                               raise_on_deleted_version=True)["data"]["data"]), keys)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    client.adapter.close()
    if counts != expected:
        raise SystemExit(f"bench: {adapter} read {counts} of {expected} secrets")
    return Timing(wall, cpu / (len(keys) + 1))


def _parallel(read: Callable[[str], bool], keys: list[str]) -> int:
    counts = [0] * THREADS
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            counts[slot] = sum(read(key) for key in keys[slot::THREADS])
        except BaseException as exc:  # reported by the caller, in the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise SystemExit(f"bench: a read failed ({type(errors[0]).__name__})")
    return sum(counts)
