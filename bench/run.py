#!/usr/bin/env python3
"""The benchmark: this tool against the wire, on an OpenBao dev server of its own.

    python bench/run.py [--sizes 20,1000,5000] [--repeat 5] [--json out.json] [--profile] [--plot] [--rev HEAD]
    python bench/run.py --rev HEAD --against d372955 --sizes 20,1000,5000 --repeat 3 --fleet \
        --python RUNTIME_VENV/bin/python   # the documented run (bench/README.md)

For each size N it seeds N connection secrets (KV v2, bench/shapes.py) and measures, round-robin
so that a noisy neighbour hits every contestant alike:
  floor        bare keep-alive http.client: LIST + GET every secret, in-process, best of 1-8 threads
  hvac loop    hvac reading them one after another, as a process (its imports count)
  render cold  `python materialize.py render`, its own bytecode not compiled (see `cold` below)
  render warm  the same, once its bytecode exists
  check cold / check warm   `python materialize.py check` likewise
  stack floor  the runtime stack's imports, then every secret over one connection, as a process
  stack imports   a process that imports hvac, pycurl and jinja2 and ends: what every run pays before
               its first request; `requests imports`, the part hvac imports for its default adapter
  read phase   the tool's own reading (session, listing, parallel reads), from a warm render's -v line
  hvac over pycurl / http.client / urllib3 / requests   hvac's API over each HTTP stack, in-process
               (bench/adapters.py): the transport's cost apart from the tool
Medians of --repeat runs; peak memory is each process's own ru_maxrss (bench/launch.py says why a
launcher). --profile adds one warm render under cProfile and one under -X importtime, as processes.
docs/performance.md has the method and the results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # testsupport/, shared with the tests

import adapters  # noqa: E402
import measure  # noqa: E402
import profiling  # noqa: E402
import seed  # noqa: E402
import tool  # noqa: E402

from testsupport import bao  # noqa: E402
from testsupport.paths import REPO_DIR  # noqa: E402

MOUNT = "bench"
TOOL_VARIANTS = ("render cold", "render warm", "check cold", "check warm")
COLD = ("a fresh copy of materialize.py, bruin_materialize/ and templates/ with no __pycache__, run with "
        "PYTHONDONTWRITEBYTECODE=1 so every run compiles the tool's modules from source (as the first run "
        "after a clone or in an image built without them); a fresh empty XDG_CACHE_HOME and HOME; the "
        "installed libraries' bytecode (jinja2, ruamel.yaml, stdlib) present as pip leaves it; the OS file "
        "cache not dropped (that needs root and disturbs a shared machine)")
WARM = "a second copy whose bytecode an untimed first run wrote; every timed run after that"


class Context(NamedTuple):
    server: bao.DevServer
    work: Path  # temp dir: logs, tool copies, homes
    out_dir: Path  # where render writes (tmpfs when there is one)
    schema: Path
    tool_env: dict[str, str]  # extra environment for the tool (--tool-env)
    against: str | None  # --against REV: a warm render of that version in every round
    python: str  # --python: the interpreter of every process measured


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20,1000,5000", help="numbers of secrets (default 20,1000,5000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each contestant per size (default 5)")
    parser.add_argument("--json", metavar="FILE", help="write every sample and the summary as JSON")
    parser.add_argument("--threads", default="1,2,3,4,6,8", help="thread counts tried for the floor")
    parser.add_argument("--no-hvac", action="store_true", help="skip the (slow) hvac loop")
    parser.add_argument("--profile", action="store_true",
                        help="also run one warm render under cProfile and one under -X importtime")
    parser.add_argument("--profile-sizes", default="20,1000", help="sizes --profile looks at (default 20,1000)")
    parser.add_argument("--plot", metavar="PNG", nargs="?", const=str(REPO_DIR / "docs" / "performance.png"),
                        help="draw time against N (default docs/performance.png; needs matplotlib)")
    parser.add_argument("--tool-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the tool, e.g. BRUIN_MATERIALIZE_CONCURRENCY=4")
    parser.add_argument("--rev", help="benchmark the tool as committed at this git revision (default: the work "
                        "tree as it is, edits included)")
    parser.add_argument("--against", metavar="REV", help="also run a warm render of the tool as committed at REV "
                        "in every round (`render warm@REV`), e.g. the commit before a change")
    parser.add_argument("--bao", help="the bao binary (default: next to this Python, else on PATH)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter of every process measured (the tool, the stack floor, the hvac loop); "
                        "default this one. The documented run gives a venv of requirements.txt alone, as the image "
                        "has: a dev venv holds more (chardet, which requests then imports too)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, profiles)")
    parser.add_argument("--fleet", action="store_true", help="then run bench/fleet.py once (20 pods x 100 secrets, "
                        "a 200 req/s quota) and print its verdict")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    threads = [int(t) for t in args.threads.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="bruin-materialize-bench-"))
    out_dir = Path(tempfile.mkdtemp(prefix="bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    report: dict[str, Any] = {"meta": _meta(args), "sizes": {}}
    server = tool.start_server(work, args.bao)
    try:
        ctx = Context(server, work, out_dir, tool.schema_file(), dict(e.split("=", 1) for e in args.tool_env),
                      args.against, args.python)
        report["meta"].update(schema=str(ctx.schema), tool_env=ctx.tool_env, bao=tool.bao_version(args.bao),
                              python_measured=args.python)
        profile_sizes = [int(s) for s in args.profile_sizes.split(",") if s] if args.profile else []
        _prepare(ctx, sorted(set(sizes + profile_sizes)), args.rev, args.against)
        report["python_startup"] = _python_startup(ctx, args.repeat)
        for n in sizes:
            report["sizes"][str(n)] = _measure_size(ctx, n, args.repeat, threads, not args.no_hvac)
        report["profile"] = {str(n): _profile(ctx, n) for n in profile_sizes}
    finally:
        bao.stop(server)
        shutil.rmtree(out_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["meta"]["load_after"] = os.getloadavg()
    print_table(report)
    print_table(report, "min")
    print_adapters(report)
    print_against(report)
    report["bounds"] = bounds(report)
    print_goals(report)
    print_bounds(report)
    for profile in report["profile"].values():
        print_profile(profile, report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        tool.say(f"wrote {args.json}")
    if args.plot:
        import plot

        plot.draw(report, Path(args.plot))
        tool.say(f"wrote {args.plot}")
    if args.fleet:
        tool.say("the fleet scenario (bench/fleet.py --repeat 1)")
        fleet = [sys.executable, str(tool.BENCH / "fleet.py"), "--repeat", "1", "--python", args.python]
        if args.json:
            fleet += ["--json", str(Path(args.json).with_suffix("")) + "-fleet.json"]
        subprocess.run(fleet, check=True)
    return 0


# --- set-up --------------------------------------------------------------------------------------


def _prepare(ctx: Context, sizes: list[int], rev: str | None, against: str | None) -> None:
    seed.enable_kv2(ctx.server, MOUNT)
    for n in sizes:
        started = time.perf_counter()
        written = seed.seed(ctx.server, MOUNT, f"n{n}", n)
        tool.say(f"seeded {n} secrets ({written / 1e6:.1f} MB of JSON) in {time.perf_counter() - started:.1f}s")
    for variant in ("cold", "warm"):
        tool.copy_tool(ctx.work / f"tool-{variant}", rev)
    if against:
        tool.copy_tool(ctx.work / "tool-against", against)


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    return {**tool.machine(), "repeat": args.repeat, "git": tool.git(args.rev), "cold": COLD, "warm": WARM}


# --- contestants ---------------------------------------------------------------------------------


def _tool(ctx: Context, n: int, variant: str) -> tuple[measure.Sample, float | None]:
    """The run, and for render the read phase it reported (-v: `read N secrets from ... in S s`)."""
    command, temperature = variant.split()
    temperature, _, against = temperature.partition("@")
    copy = ctx.work / ("tool-against" if against else f"tool-{temperature}")
    run_dir = Path(tempfile.mkdtemp(prefix=f"{command}-{temperature}-", dir=ctx.work))
    env = tool.tool_env(ctx.server, MOUNT, f"n{n}", run_dir, ctx.tool_env)
    if temperature == "cold":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    args = [ctx.python, str(copy / "materialize.py"), command, "--schema", str(ctx.schema)]
    if command == "render":
        args += ["-v", "--output", str(ctx.out_dir / f"n{n}" / "bruin.yml")]
    sample = measure.run_process(args, env, copy, run_dir)
    found = _READ_LINE.search((run_dir / "last.stderr").read_text(errors="replace"))
    shutil.rmtree(run_dir)
    return sample, float(found.group(1)) if found else None


# -v lines start with their time when stderr is not a terminal (`2026-12-03T18:10:00.123Z materialize: ...`).
_READ_LINE = re.compile(r"^(?:\S+Z )?materialize: read \d+ secrets from .* in ([0-9.]+)s$", re.MULTILINE)


def _script(ctx: Context, n: int, script: list[str]) -> measure.Sample:
    """A bench script (or `-c` code) as a process: the hvac loop, the stack floor, the imports alone."""
    run_dir = Path(tempfile.mkdtemp(prefix="script-", dir=ctx.work))
    env = tool.base_env(run_dir / "home")
    env.update({"BENCH_ADDR": ctx.server.addr, "BENCH_TOKEN": ctx.server.token, "BENCH_MOUNT": MOUNT,
                "BENCH_PATH": f"n{n}"})
    sample = measure.run_process([ctx.python, *script], env, run_dir, run_dir)
    shutil.rmtree(run_dir)
    return sample


SCRIPTS = {"hvac loop": [str(tool.BENCH / "hvac_loop.py")], "stack floor": [str(tool.BENCH / "stack_floor.py")],
           "stack imports": ["-c", "import hvac, pycurl, jinja2"], "requests imports": ["-c", "import requests"]}


def _python_startup(ctx: Context, repeat: int) -> dict[str, Any]:
    """`python -c pass`: the part of every process time that no code of ours can remove."""
    env = tool.base_env(ctx.work / "startup-home")
    walls = [measure.run_process([ctx.python, "-c", "pass"], env, ctx.work, ctx.work).wall
             for _ in range(max(repeat, 5))]
    return measure.summary(walls)


def _measure_size(ctx: Context, n: int, repeat: int, threads: list[int], with_hvac: bool) -> dict[str, Any]:
    tool.say(f"N={n}: warming up")
    _warm_up(ctx, n, threads, with_hvac)
    floors: dict[int, list[float]] = {t: [] for t in threads}
    floor_cpu: dict[int, list[float]] = {t: [] for t in threads}
    variants = ["stack floor", "stack imports", "requests imports", *(["hvac loop"] if with_hvac else []),
                *TOOL_VARIANTS,
                *([f"render warm@{ctx.against}"] if ctx.against else [])]
    processes: dict[str, list[measure.Sample]] = {v: [] for v in variants}
    stacks: dict[str, list[adapters.Timing]] = {name: [] for name in adapters.ADAPTERS}
    reads: list[float] = []
    for round_ in range(repeat):
        tool.say(f"N={n}: round {round_ + 1}/{repeat}")
        for t in threads:
            cpu = time.process_time()
            floors[t].append(measure.floor(ctx.server, MOUNT, f"n{n}", t, n))
            floor_cpu[t].append(time.process_time() - cpu)
        for name, timings in stacks.items():
            timings.append(adapters.read_all(ctx.server, MOUNT, f"n{n}", name, n))
        for variant in processes:
            if variant in SCRIPTS:
                processes[variant].append(_script(ctx, n, SCRIPTS[variant]))
                continue
            sample, read = _tool(ctx, n, variant)
            processes[variant].append(sample)
            if variant == "render warm" and read is not None:
                reads.append(read)
    _check_cold_copy(ctx)
    result = _summarise_size(floors, floor_cpu, processes)
    for name, timings in stacks.items():
        result[name] = {**measure.summary([t.wall for t in timings]),
                        "cpu_per_request": measure.summary([t.cpu_per_request for t in timings])}
    if reads:
        result["read phase"] = measure.summary(reads)
    return result


def _warm_up(ctx: Context, n: int, threads: list[int], with_hvac: bool) -> None:
    """One untimed run of each: the server's caches, the OS file cache, the warm copy's bytecode."""
    measure.floor(ctx.server, MOUNT, f"n{n}", max(threads), n)
    _script(ctx, n, SCRIPTS["stack floor"])
    if with_hvac:
        _script(ctx, n, SCRIPTS["hvac loop"])
    _tool(ctx, n, "render warm")
    if ctx.against:
        _tool(ctx, n, f"render warm@{ctx.against}")
    for name in adapters.ADAPTERS:
        adapters.read_all(ctx.server, MOUNT, f"n{n}", name, n)
    _verify_output(ctx, n)


def _verify_output(ctx: Context, n: int) -> None:
    """The rendered file holds all N connections (counted, never shown)."""
    found = tool.connections_in(ctx.out_dir / f"n{n}" / "bruin.yml")
    if found != n:
        raise SystemExit(f"bench: the rendered file has {found} connections, not {n}")


def _check_cold_copy(ctx: Context) -> None:
    if any((ctx.work / "tool-cold").rglob("__pycache__")):
        raise SystemExit("bench: the cold copy got bytecode; cold runs would not be cold")


def _summarise_size(floors: dict[int, list[float]], floor_cpu: dict[int, list[float]],
                    processes: dict[str, list[measure.Sample]]) -> dict[str, Any]:
    by_threads = {str(t): {**measure.summary(walls), "cpu": measure.summary(floor_cpu[t])}
                  for t, walls in floors.items()}
    best = min(by_threads, key=lambda t: by_threads[t]["median"])
    result: dict[str, Any] = {"floor": {**by_threads[best], "threads": int(best), "by_threads": by_threads}}
    for variant, samples in processes.items():
        result[variant] = {**measure.summary([s.wall for s in samples]),
                           "peak_mb": measure.summary([s.peak_mb for s in samples]),
                           "cpu": measure.summary([s.cpu for s in samples])}
    return result


# --- profile -------------------------------------------------------------------------------------


def _profile(ctx: Context, n: int) -> dict[str, Any]:
    """One warm render of N secrets under cProfile and one under -X importtime, each as a process."""
    tool.say(f"N={n}: profiling")
    _tool(ctx, n, "render warm")  # the warm copy's bytecode, if --sizes did not include n
    copy = ctx.work / "tool-warm"
    render = [str(copy / "materialize.py"), "render", "--schema", str(ctx.schema),
              "--output", str(ctx.out_dir / f"n{n}" / "bruin.yml")]
    env = tool.tool_env(ctx.server, MOUNT, f"n{n}", ctx.work / "profile", ctx.tool_env)
    prof = ctx.work / f"render-{n}.prof"
    _run_checked([ctx.python, str(tool.BENCH / "profiling.py"), str(prof), *render], env, copy)
    imports = _run_checked([ctx.python, "-X", "importtime", *render], env, copy)
    return {"n": n, "cprofile": profiling.summary(str(prof)), "imports": profiling.import_times(imports.splitlines())}


def _run_checked(command: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or "materialize: error" in proc.stderr:
        raise SystemExit(f"bench: a profiled run failed ({proc.returncode}): {tool.own_lines(proc.stderr)[-1:]}")
    return proc.stderr


# --- output --------------------------------------------------------------------------------------


def table_rows(report: dict[str, Any], statistic: str = "median") -> tuple[list[str], list[list[str]]]:
    head = ["N", "floor s (thr)", "stack floor s", "hvac loop s", "render cold s", "render warm s", "check cold s",
            "check warm s", "warm/floor", "cold/floor", "warm/stack", "hvac/warm", "peak MB render", "peak MB check"]
    rows = []
    for n, size in report["sizes"].items():
        floor = size["floor"][statistic]

        def med(variant: str, size: dict[str, Any] = size) -> str:
            return f"{size[variant][statistic]:.3f}" if variant in size else "-"

        def ratio(variant: str, size: dict[str, Any] = size, floor: float = floor) -> str:
            return f"{size[variant][statistic] / floor:.2f}x" if variant in size else "-"

        def over(numerator: str, denominator: str, size: dict[str, Any] = size) -> str:
            if numerator not in size or denominator not in size:
                return "-"
            return f"{size[numerator][statistic] / size[denominator][statistic]:.2f}x"

        rows.append([n, f"{floor:.3f} ({size['floor']['threads']})", med("stack floor"), med("hvac loop"),
                     med("render cold"), med("render warm"), med("check cold"), med("check warm"),
                     ratio("render warm"), ratio("render cold"), over("render warm", "stack floor"),
                     over("hvac loop", "render warm"), f"{size['render warm']['peak_mb']['max']:.0f}",
                     f"{size['check warm']['peak_mb']['max']:.0f}"])
    return head, rows


def print_table(report: dict[str, Any], statistic: str = "median") -> None:
    head, rows = table_rows(report, statistic)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    startup = report["python_startup"]["median"]
    what = "medians" if statistic == "median" else "best (minimum)"
    print(f"\n{what} of {report['meta']['repeat']} runs; `python -c pass` takes {startup:.3f}s; "
          f"peak = the largest of the runs' own ru_maxrss\n")


# The goals: (size, what, limit, unit). "x": against the wire floor; "x stack": against the stack
# floor; "x faster": how many times the hvac loop's time the tool's is.
GOALS = (("20", "render warm", 1.3, "x stack"), ("20", "check warm", 1.3, "x stack"),
         ("20", "render cold", 1.3, "x stack"), ("1000", "render warm", 1.6, "x"), ("1000", "render cold", 1.6, "x"),
         ("5000", "render warm", 1.3, "x"), ("5000", "render cold", 1.3, "x"), ("1000", "read phase", 1.0, "x"),
         ("5000", "read phase", 1.0, "x"), ("5000", "render warm", 150, "MB"), ("1000", "render warm", 4.0, "x faster"))


def goal_rows(report: dict[str, Any]) -> list[list[str]]:
    """[goal, median value, best-run value, verdict on the median]."""
    rows = []
    for n, variant, limit, unit in GOALS:
        size = report["sizes"].get(n)
        if size is None or variant not in size:
            continue
        if unit == "x faster" and "hvac loop" not in size:
            continue
        if unit == "MB":
            value, best = size[variant]["peak_mb"]["max"], size[variant]["peak_mb"]["min"]
        elif unit == "x faster":
            value = size["hvac loop"]["median"] / size[variant]["median"]
            best = size["hvac loop"]["min"] / size[variant]["min"]
        else:
            base = {"x": "floor", "x stack": "stack floor"}.get(unit)
            value = size[variant]["median"] / (size[base]["median"] if base else 1)
            best = size[variant]["min"] / (size[base]["min"] if base else 1)
        shown = {"s": "{:.3f} s", "x": "{:.2f}x floor", "x stack": "{:.2f}x stack floor",
                 "x faster": "{:.2f}x faster than the hvac loop", "MB": "{:.0f} MB"}[unit]
        at_least = unit == "x faster"
        goal = f"N={n} {variant}: {'>=' if at_least else '<='} {shown.format(limit)}"
        met = value >= limit if at_least else value <= limit
        rows.append([goal, shown.format(value), shown.format(best), "met" if met else "NOT met"])
    return rows


def print_adapters(report: dict[str, Any]) -> None:
    """The transports side by side: time against the floor of the same run, CPU per request."""
    names = list(adapters.ADAPTERS)
    print("| N | " + " | ".join(f"{name}: x floor (min-max), CPU/request" for name in names) + " |")
    print("|---|" + "---|" * len(names))
    for n, size in report["sizes"].items():
        floor = size["floor"]["median"]
        cells = []
        for name in names:
            walls = size[name]["samples"]
            cpu = size[name]["cpu_per_request"]["median"] * 1e6
            cells.append(f"{size[name]['median'] / floor:.2f}x ({min(walls) / floor:.2f}-{max(walls) / floor:.2f}) "
                         f"{cpu:.0f} us")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(f"\nin-process, {adapters.THREADS} threads, interleaved with the floor in every round; ratios to the "
          "median floor of the run; CPU: the whole process's, per request\n")


def print_against(report: dict[str, Any]) -> None:
    """--against REV: this version's warm render against that one's, round by round."""
    for n, size in report["sizes"].items():
        other = next((k for k in size if k.startswith("render warm@")), None)
        if other is None:
            continue
        pairs = zip(size["render warm"]["samples"], size[other]["samples"], strict=True)
        ratios = ", ".join(f"{ours / theirs:.2f}" for ours, theirs in pairs)
        ours, theirs, floor = (size[k]["median"] for k in ("render warm", other, "floor"))
        print(f"N={n}: render warm / {other}: {ours / theirs:.2f} (medians; per round {ratios}); "
              f"{other} against the floor: {theirs / floor:.2f}x")


def print_goals(report: dict[str, Any]) -> None:
    print("goals (median; peak memory: the largest run)     median        best run      verdict")
    for goal, value, best, verdict in goal_rows(report):
        print(f"  {goal:60} {value:>36} {best:>36}   {verdict}")


def bounds(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per size, what the stack alone allows: no run can take less than importing it (as a process, so
    Python's start included) and then reading at the floor; `requests` is imported by hvac, whatever
    adapter it is given."""
    found = {}
    startup = report["python_startup"]["median"]
    against_floor = {n for n, _, _, unit in GOALS if unit in ("x", "x faster")}
    for n, size in report["sizes"].items():
        if n not in against_floor or "stack imports" not in size:
            continue
        imports, floor = size["stack imports"]["median"], size["floor"]["median"]
        row = {"imports_x_floor": imports / floor, "requests_x_floor": (size["requests imports"]["median"] - startup)
               / floor, "least_x_floor": (imports + floor) / floor}
        if "hvac loop" in size:
            row["most_x_faster"] = size["hvac loop"]["median"] / (imports + floor)
        found[n] = row
    return found


def print_bounds(report: dict[str, Any]) -> None:
    print("\nwhat the stack leaves (medians): no run takes less than importing hvac, pycurl and jinja2 (as a "
          "process)\nand then reading at the floor")
    for n, row in bounds(report).items():
        faster = f"; at most {row['most_x_faster']:.2f}x faster than the hvac loop" if "most_x_faster" in row else ""
        print(f"  N={n}: the imports {row['imports_x_floor']:.2f}x floor (requests and urllib3, which hvac imports: "
              f"{row['requests_x_floor']:.2f}x), so at least {row['least_x_floor']:.2f}x floor{faster}")


def print_profile(profile: dict[str, Any], report: dict[str, Any]) -> None:
    cprof, imports = profile["cprofile"], profile["imports"]
    print(f"\nwhere the time goes, N={profile['n']}, one warm render as a process "
          f"(`python -c pass`: {report['python_startup']['median']:.3f}s)")
    print(f"  imports (-X importtime): {imports['total']:.3f}s; the largest: " +
          ", ".join(f"{i['module']} {i['seconds']:.3f}" for i in imports["top"][:6]))
    print(f"\n  cProfile: {cprof['total']:.3f}s in all (it slows pure Python several times); "
          "bruin_materialize's functions, most time including their callees:")
    for row in cprof["package"]:
        print(f"  {row['cumulative']:7.3f}s cum {row['own']:7.3f}s own {row['calls']:>8} calls  {row['function']}")
    print("\n  most time of their own:")
    for row in cprof["top"]:
        print(f"  {row['own']:7.3f}s own {row['cumulative']:7.3f}s cum {row['calls']:>8} calls  {row['function']}")


if __name__ == "__main__":
    raise SystemExit(main())
