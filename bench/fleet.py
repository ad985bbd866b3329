#!/usr/bin/env python3
"""The fleet scenario: P pods start `materialize.py render` at the same moment against one Vault
that enforces a rate-limit quota of R requests per second.

    python bench/fleet.py [-P 20] [-N 100] [-R 200] [--rev main] [--repeat 3] [--json FILE] [--plot [PNG]]

One OpenBao dev server (testsupport/bao.py) with a file audit device; N secrets (bench/shapes.py) under
fleet/bruin on a KV v2 mount. Each code version (`--rev REV` as committed, and the work tree) runs
once alone, without a quota, to count from the audit log the requests one process makes (k). Then
a global rate-limit quota of R per 1s interval is set (OpenBao's default exempt paths; it counts
the tool's mount inspection too) and, for each of --repeat rounds, each version in turn runs P
processes released together. A run reports the processes that rendered all N connections, the wall
time from the release to the last exit, the quota's lower bound P*k/R and the ratio of the two,
the exit codes, each failure's first `materialize:` line, and the requests the server admitted and
refused with 429 (from the audit log). Medians over the rounds per version.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # testsupport/, shared with the tests

import seed  # noqa: E402
import tool  # noqa: E402

from testsupport import bao  # noqa: E402
from testsupport.paths import REPO_DIR  # noqa: E402

MOUNT, PATH = "fleet", "bruin"
# Each process waits here (stdin: the gate pipe), says it is ready, then becomes the tool.
GATE = ("import os, sys; os.write(1, b'r'); os.read(0, 1); null = os.open(os.devnull, os.O_RDWR); "
        "os.dup2(null, 0); os.dup2(null, 1); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/fleet.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("-P", "--processes", type=int, default=20, help="processes started together (20)")
    parser.add_argument("-N", "--secrets", type=int, default=100, help="secrets each process reads (100)")
    parser.add_argument("-R", "--rate", type=float, default=200, help="the quota, requests per second (200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each version, alternating (3)")
    parser.add_argument("--rev", help="also run the tool as committed at this revision (git archive)")
    parser.add_argument("--tool-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for every process, e.g. BRUIN_VAULT_MAX_RETRIES=10")
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a process is killed (60)")
    parser.add_argument("--retry-after", action="store_true",
                        help="turn on OpenBao's rate-limit response headers (Retry-After, X-Ratelimit-*)")
    parser.add_argument("--json", metavar="FILE", help="write every run as JSON")
    parser.add_argument("--plot", metavar="PNG", nargs="?", const=str(REPO_DIR / "docs" / "fleet.png"),
                        help="draw the runs (default docs/fleet.png; needs matplotlib)")
    parser.add_argument("--from-json", metavar="FILE", help="no run: print and plot a saved --json FILE")
    parser.add_argument("--bao", help="the bao binary (default: next to this Python, else on PATH)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter the processes run under (default this one; see bench/README.md)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (server and audit logs, stderr)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
    else:
        report = measure_fleet(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        draw(report, Path(args.plot))
        tool.say(f"wrote {args.plot}")
    return 0


def measure_fleet(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bruin-materialize-fleet-"))
    out_dir = Path(tempfile.mkdtemp(prefix="fleet-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    audit = Audit(work / "audit.log")
    config = work / "audit.hcl"
    config.write_text(f'audit "file" "fleet" {{\n  options = {{\n    file_path = "{audit.path}"\n  }}\n}}\n')
    server = tool.start_server(work, args.bao, f"-config={config}")
    meta = {**tool.machine(), "P": args.processes, "N": args.secrets, "R": args.rate, "interval": "1s",
            "bao": tool.bao_version(args.bao), "retry_after": args.retry_after,
            "tool_env": dict(e.split("=", 1) for e in args.tool_env), "versions": {}}
    runs: list[dict[str, Any]] = []
    try:
        seed.enable_kv2(server, MOUNT)
        seed.seed(server, MOUNT, PATH, args.secrets)
        copies: dict[str, Path] = {}
        for rev in ([args.rev] if args.rev else []) + [None]:
            commit = tool.git(rev)["commit"][:7]
            label = "work tree" if rev is None else rev if commit.startswith(rev) else f"{rev} ({commit})"
            copies[label] = work / f"tool-{len(copies)}"
            tool.copy_tool(copies[label], rev)
            meta["versions"][label] = {"git": tool.git(rev), "requests per process": 0}
        for label, copy in copies.items():  # alone, no quota: k, and the bytecode of the copy
            alone = fleet_run(server, copy, 1, args, work, out_dir, audit)
            if alone["successes"] != 1:
                raise SystemExit(f"bench: {label} fails alone: {alone['errors']}")
            meta["versions"][label].update({"requests per process": alone["admitted"], "alone": alone["wall"],
                                            "requests by kind": alone["kinds"]})
            tool.say(f"{label}: one process alone makes {alone['admitted']} requests {alone['kinds']}")
        quota_config = {**seed.request(server, "GET", "sys/quotas/config")[1]["data"],  # keeps the exempt paths
                        "enable_rate_limit_audit_logging": True, "enable_rate_limit_response_headers": args.retry_after}
        for path, payload in (("sys/quotas/config", quota_config),
                              ("sys/quotas/rate-limit/fleet", {"rate": args.rate, "interval": "1s"})):
            if seed.request(server, "POST", path, payload)[0] not in (200, 204):
                raise SystemExit(f"bench: setting {path} failed")
        meta["quota"] = seed.request(server, "GET", "sys/quotas/rate-limit/fleet")[1]["data"]
        meta["quota_config"] = seed.request(server, "GET", "sys/quotas/config")[1]["data"]
        for round_ in range(args.repeat):
            for label in list(copies)[:: 1 if round_ % 2 == 0 else -1]:
                time.sleep(2)  # the quota's window refills between runs
                result = fleet_run(server, copies[label], args.processes, args, work, out_dir, audit)
                k = meta["versions"][label]["requests per process"]
                result.update(version=label, round=round_, minimum=args.processes * k / args.rate)
                result["ratio"] = result["wall"] / result["minimum"]
                runs.append(result)
                tool.say(f"round {round_ + 1}/{args.repeat} {label}: {result['successes']}/{args.processes} "
                         f"succeeded, {result['wall']:.1f}s")
    finally:
        bao.stop(server)
        shutil.rmtree(out_dir, ignore_errors=True)
        if args.keep:
            tool.say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_after"] = os.getloadavg()
    return {"meta": meta, "runs": runs}


def fleet_run(server: bao.DevServer, copy: Path, count: int, args: argparse.Namespace, work: Path, out_dir: Path,
              audit: Audit) -> dict[str, Any]:
    """`count` render processes released at one moment; each is killed after --timeout seconds."""
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    env = tool.tool_env(server, MOUNT, PATH, run_dir, dict(e.split("=", 1) for e in args.tool_env))
    gate_r, gate_w = os.pipe()
    ready_r, ready_w = os.pipe()
    outputs = [out_dir / run_dir.name / f"p{i}" / "bruin.yml" for i in range(count)]
    procs = []
    for i, output in enumerate(outputs):
        with (run_dir / f"p{i}.stderr").open("wb") as err:
            procs.append(subprocess.Popen(
                [args.python, "-I", "-S", "-c", GATE, str(copy / "materialize.py"), "render",
                 "--schema", str(tool.schema_file()), "--output", str(output)],
                env=env, cwd=copy, stdin=gate_r, stdout=ready_w, stderr=err))
    os.close(gate_r)
    os.close(ready_w)
    ready, deadline = 0, time.monotonic() + 30
    while ready < count and time.monotonic() < deadline and select.select([ready_r], [], [], 1)[0]:
        ready += len(os.read(ready_r, count))
    os.close(ready_r)
    audit.skip()
    started, started_epoch = time.perf_counter(), time.time()
    os.write(gate_w, b"x" * count)  # the release
    os.close(gate_w)
    ended = [0.0] * count
    timed_out = [False] * count

    def wait(i: int) -> None:
        try:
            procs[i].wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            timed_out[i] = True
            procs[i].kill()
            procs[i].wait()
        ended[i] = time.perf_counter()

    waiters = [threading.Thread(target=wait, args=(i,)) for i in range(count)]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    admitted, rejected, kinds, firsts = audit.count()
    ok = [p.returncode == 0 and tool.connections_in(out) == args.secrets for p, out in zip(procs, outputs, strict=True)]
    codes = ["timeout" if t else str(p.returncode) for p, t in zip(procs, timed_out, strict=True)]
    errors = collections.Counter(_first_error(run_dir / f"p{i}.stderr") for i in range(count) if not ok[i])
    shutil.rmtree(out_dir / run_dir.name, ignore_errors=True)
    return {"successes": sum(ok), "wall": max(ended) - started, "times": [e - started for e in ended], "ok": ok,
            "exit_codes": dict(collections.Counter(codes)), "errors": dict(errors), "admitted": admitted,
            "rejected": rejected, "kinds": kinds, "ready": ready,
            # when the last process to get going sent its first request (its mount inspection)
            "last_start": max(firsts, default=started_epoch) - started_epoch}


def _first_error(stderr: Path) -> str:
    """The first of the tool's own lines (they hold no value); anything else stays in the log."""
    own = tool.own_lines(stderr.read_text(errors="replace"))
    errors = [line for line in own if line.startswith("materialize: error")]
    first = (errors or own or ["(no materialize: line; rerun with --keep and read the stderr files)"])[0]
    return re.sub(r"(reading [^ :]+/)[^ /:]+:", r"\1NAME:", first)  # one line per kind, not per secret


class Audit:
    """Counts the requests in OpenBao's audit log since the last skip()."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def skip(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def count(self) -> tuple[int, int, dict[str, int], list[float]]:
        """(admitted, refused with 429, admitted by kind, epoch time of each process's first request)."""
        time.sleep(0.2)  # the last entries are written as the answers go out
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        admitted, rejected, kinds, firsts = 0, 0, collections.Counter[str](), dict[int, float]()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            entry = json.loads(line)
            if entry.get("type") == "response":
                admitted += 1
                kinds[_kind(entry["request"])] += 1
            elif "rate limit quota exceeded" in (entry.get("error") or ""):
                rejected += 1
            if entry.get("type") == "request" and _kind(entry["request"]) == "mount":  # retries: same connection
                when = datetime.datetime.fromisoformat(entry["time"]).timestamp()
                firsts.setdefault(entry["request"].get("remote_port", 0), when)
        return admitted, rejected, dict(kinds), list(firsts.values())


def _kind(request: dict[str, Any]) -> str:
    path, operation = request.get("path", ""), request.get("operation", "")
    if path.startswith("sys/internal/ui/mounts/"):
        return "mount"
    if path.startswith(f"{MOUNT}/metadata/") and operation == "list":
        return "list"
    return "read" if path.startswith(f"{MOUNT}/data/") and operation == "read" else f"{operation} {path}"


# --- output --------------------------------------------------------------------------------------


def summary(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per version, medians over its runs."""
    out = {}
    for label in report["meta"]["versions"]:
        mine = [r for r in report["runs"] if r["version"] == label]
        if mine:
            out[label] = {key: statistics.median(r[key] for r in mine)
                          for key in ("successes", "wall", "minimum", "ratio", "admitted", "rejected", "last_start")}
    return out


def print_report(report: dict[str, Any]) -> None:
    meta = report["meta"]
    print(f"P={meta['P']} processes, N={meta['N']} secrets, quota R={meta['R']:g}/s; requests per process k: " +
          ", ".join(f"{label} {v['requests per process']} {v.get('requests by kind', '')}"
                    for label, v in meta["versions"].items()))
    columns = ["round", "succeeded", "wall s", "P*k/R s", "wall/min", "admitted", "429s", "last start s", "exit codes"]
    print(f"\n| {'version':24} | " + " | ".join(columns) + " |")
    print(f"|{'-' * 26}|" + "|".join("-" * (len(c) + 2) for c in columns) + "|")
    for r in report["runs"]:
        codes = " ".join(f"{code}x{n}" for code, n in sorted(r["exit_codes"].items()))
        print(f"| {r['version']:24} | {r['round'] + 1:5} | {r['successes']:>4} of {meta['P']:<2} | {r['wall']:6.1f} "
              f"| {r['minimum']:7.1f} | {r['ratio']:7.2f}x | {r['admitted']:8} | {r['rejected']:4} "
              f"| {r['last_start']:12.2f} | {codes} |")
    print(f"\nmedians of {len(report['runs']) // max(len(meta['versions']), 1)} runs "
          "(wall/min means little where processes failed: they stop early):")
    for label, s in summary(report).items():
        print(f"  {label:24} {s['successes']:4g} of {meta['P']} succeeded; {s['wall']:.1f}s, "
              f"{s['ratio']:.2f}x the quota's minimum of {s['minimum']:.1f}s; {s['rejected']:g} requests refused; "
              f"the last process's first request {s['last_start']:.2f}s after the release")
    errors: collections.Counter[str] = collections.Counter()
    for r in report["runs"]:
        errors.update({f"{r['version']}: {line}": n for line, n in r["errors"].items()})
    if errors:
        print("\nfailures, first error line (all runs):")
        for line, n in errors.most_common():
            print(f"  {n:4}x {line}")


def draw(report: dict[str, Any], out: Path) -> None:
    """Left: processes done successfully over time, each run a line, against the quota's minimum.
    Right: successes (median) per version, with time/minimum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    meta, medians = report["meta"], summary(report)
    colors = dict(zip(meta["versions"], ("tab:red", "tab:blue", "tab:green", "tab:purple"), strict=False))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5), dpi=110, gridspec_kw={"width_ratios": [2, 1]})
    for r in report["runs"]:
        done = sorted(t for t, ok in zip(r["times"], r["ok"], strict=True) if ok)
        left.step([0, *done, r["wall"]], [0, *range(1, len(done) + 1), len(done)], where="post", alpha=0.7,
                  color=colors[r["version"]], label=r["version"] if r["round"] == 0 else None)
        failed = [t for t, ok in zip(r["times"], r["ok"], strict=True) if not ok]
        left.plot(failed, [0] * len(failed), "x", color=colors[r["version"]], alpha=0.7)
    for label, s in medians.items():
        left.axvline(s["minimum"], color=colors[label], linestyle=":", alpha=0.8)
    left.axhline(meta["P"], color="grey", linewidth=0.5)
    left.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    left.set_xlabel("seconds since the release (x: a failed process's exit; dotted: P*k/R)")
    left.set_ylabel("processes rendered successfully")
    left.legend(fontsize=8, loc="upper left")
    labels = list(medians)
    bars = right.bar(range(len(labels)), [medians[v]["successes"] for v in labels],
                     color=[colors[v] for v in labels])
    for bar, label in zip(bars, labels, strict=True):
        right.annotate(f"{medians[label]['wall']:.1f} s, {medians[label]['ratio']:.2f}x min",
                       (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                       ha="center", va="bottom", fontsize=8)
    right.set_xticks(range(len(labels)), labels=labels, fontsize=8)
    right.set_ylim(0, meta["P"] * 1.1)
    right.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    right.set_ylabel(f"succeeded of {meta['P']} (median)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{meta['P']} renders of {meta['N']} secrets at once, quota {meta['R']:g} requests/s "
                 f"({meta['date'][:10]}, {meta['cpus']} cores)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
