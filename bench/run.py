#!/usr/bin/env python3
"""The benchmark: this tool against the wire, on an OpenBao dev server of its own.

    python bench/run.py [--sizes 20,1000,5000] [--repeat 5] [--json out.json] [--profile] [--plot] [--rev HEAD]

For each size N it seeds N connection secrets (KV v2, bench/shapes.py) and measures, round-robin
so that a noisy neighbour hits every contestant alike:
  floor        bare keep-alive http.client: LIST + GET every secret, in-process, best of 1-8 threads
  hvac loop    hvac reading them one after another, as a process (its imports count)
  render cold  `python materialize.py render`, its own bytecode not compiled (see `cold` below)
  render warm  the same, once its bytecode exists
  check cold / check warm   `python materialize.py check` likewise
Medians of --repeat runs; peak memory is each process's own ru_maxrss (bench/launch.py says why a
launcher). docs/performance.md has the method and the results.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import bao
import measure
import stages
import timed as timed_stages

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SHARED_SCHEMA = REPO.parent / "shared" / "bruin" / "connections-schema.json"
SUBSET_SCHEMA = REPO / "tests" / "data" / "connections-schema-subset.json"
MOUNT = "bench"
TOOL_FILES = ("materialize.py", "bruin_materialize", "templates")
TOOL_VARIANTS = ("render cold", "render warm", "check cold", "check warm")
COLD = ("a fresh copy of materialize.py, bruin_materialize/ and templates/ with no __pycache__, run with "
        "PYTHONDONTWRITEBYTECODE=1 so every run compiles the tool's modules from source (as the first run "
        "after a clone or in an image built without them); a fresh empty XDG_CACHE_HOME and HOME; the "
        "installed libraries' bytecode (jinja2, ruamel.yaml, stdlib) present as pip leaves it; the OS file "
        "cache not dropped (that needs root and disturbs a shared machine)")
WARM = "a second copy whose bytecode an untimed first run wrote; every timed run after that"


class Context(NamedTuple):
    server: bao.Server
    work: Path  # temp dir: logs, tool copies, homes
    out_dir: Path  # where render writes (tmpfs when there is one)
    schema: Path
    tool_env: dict[str, str]  # extra environment for the tool (--tool-env)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20,1000,5000", help="numbers of secrets (default 20,1000,5000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each contestant per size (default 5)")
    parser.add_argument("--json", metavar="FILE", help="write every sample and the summary as JSON")
    parser.add_argument("--threads", default="1,2,3,4,6,8", help="thread counts tried for the floor")
    parser.add_argument("--no-hvac", action="store_true", help="skip the (slow) hvac loop")
    parser.add_argument("--profile", action="store_true",
                        help="also time each stage of render and check (no profiler), run render under cProfile "
                        "and -X importtime, and time the reads at each --threads concurrency")
    parser.add_argument("--profile-sizes", default="20,1000", help="sizes --profile looks at (default 20,1000)")
    parser.add_argument("--plot", metavar="PNG", nargs="?", const=str(REPO / "docs" / "performance.png"),
                        help="draw time against N (default docs/performance.png; needs matplotlib)")
    parser.add_argument("--tool-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the tool, e.g. BRUIN_MATERIALIZE_CONCURRENCY=4")
    parser.add_argument("--rev", help="benchmark the tool as committed at this git revision (default: the work "
                        "tree as it is, edits included)")
    parser.add_argument("--bao", help="the bao binary (default: next to this Python, else on PATH)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, profiles)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    threads = [int(t) for t in args.threads.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="bruin-materialize-bench-"))
    out_dir = Path(tempfile.mkdtemp(prefix="bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    report: dict[str, Any] = {"meta": _meta(args), "sizes": {}}
    server = bao.start(work, args.bao)
    try:
        ctx = Context(server, work, out_dir, _schema_file(), dict(e.split("=", 1) for e in args.tool_env))
        report["meta"].update(schema=str(ctx.schema), tool_env=ctx.tool_env, bao=_bao_version(args.bao))
        profile_sizes = [int(s) for s in args.profile_sizes.split(",") if s] if args.profile else []
        _prepare(ctx, sorted(set(sizes + profile_sizes)), args.rev)
        report["python_startup"] = _python_startup(ctx, args.repeat)
        for n in sizes:
            report["sizes"][str(n)] = _measure_size(ctx, n, args.repeat, threads, not args.no_hvac)
        report["profile"] = {str(n): _profile(ctx, n, args.repeat, threads) for n in profile_sizes}
    finally:
        bao.stop(server)
        shutil.rmtree(out_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["meta"]["load_after"] = os.getloadavg()
    print_table(report)
    print_table(report, "min")
    print_goals(report)
    for profile in report["profile"].values():
        print_profile(profile, report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        _say(f"wrote {args.json}")
    if args.plot:
        import plot

        plot.draw(report, Path(args.plot))
        _say(f"wrote {args.plot}")
    return 0


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- set-up --------------------------------------------------------------------------------------


def _schema_file() -> Path:
    """bruin's full schema when the shared copy is there, else the subset the tests keep."""
    return SHARED_SCHEMA if SHARED_SCHEMA.is_file() else SUBSET_SCHEMA


def _prepare(ctx: Context, sizes: list[int], rev: str | None) -> None:
    bao.enable_kv2(ctx.server, MOUNT)
    for n in sizes:
        started = time.perf_counter()
        written = bao.seed(ctx.server, MOUNT, f"n{n}", n)
        _say(f"seeded {n} secrets ({written / 1e6:.1f} MB of JSON) in {time.perf_counter() - started:.1f}s")
    for variant in ("cold", "warm"):
        _copy_tool(ctx.work / f"tool-{variant}", rev)


def _copy_tool(copy: Path, rev: str | None) -> None:
    """The tool's files as committed at `rev`, or as they are in the work tree; no bytecode."""
    copy.mkdir()
    if rev is not None:
        archive = subprocess.run(["git", "archive", "--format=tar", rev, *TOOL_FILES], cwd=REPO,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(copy, filter="data")
        return
    for name in TOOL_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, copy / name)


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "repeat": args.repeat,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_before": os.getloadavg(),
        "git": _git(args.rev),
        "cold": COLD,
        "warm": WARM,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git(rev: str | None) -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    if rev is not None:
        return {"source": f"git archive {rev}", "commit": git("rev-parse", rev)}
    return {"source": "work tree", "commit": git("rev-parse", "HEAD"),
            "uncommitted changes": bool(git("status", "--porcelain", "--", *TOOL_FILES))}


def _bao_version(binary: str | None) -> str:
    proc = subprocess.run([binary or bao.find_bao(), "version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip()


# --- contestants ---------------------------------------------------------------------------------


def _base_env(home: Path) -> dict[str, str]:
    """A small environment built on purpose: nothing of the caller's Vault or Python set-up."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def _tool(ctx: Context, n: int, variant: str) -> measure.Sample:
    command, temperature = variant.split()
    copy = ctx.work / f"tool-{temperature}"
    run_dir = Path(tempfile.mkdtemp(prefix=f"{command}-{temperature}-", dir=ctx.work))
    env = _tool_env(ctx, n, run_dir)
    if temperature == "cold":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    args = [sys.executable, str(copy / "materialize.py"), command, "--schema", str(ctx.schema)]
    if command == "render":
        args += ["--output", str(ctx.out_dir / f"n{n}" / "bruin.yml")]
    sample = measure.run_process(args, env, copy, run_dir)
    shutil.rmtree(run_dir)
    return sample


def _script(ctx: Context, n: int, script: str) -> measure.Sample:
    """A bench script as a process (the hvac loop, the stack floor), its imports included."""
    run_dir = Path(tempfile.mkdtemp(prefix="script-", dir=ctx.work))
    env = _base_env(run_dir / "home")
    env.update({"BENCH_ADDR": ctx.server.addr, "BENCH_TOKEN": ctx.server.token, "BENCH_MOUNT": MOUNT,
                "BENCH_PATH": f"n{n}"})
    sample = measure.run_process([sys.executable, str(BENCH / script)], env, run_dir, run_dir)
    shutil.rmtree(run_dir)
    return sample


SCRIPTS = {"hvac loop": "hvac_loop.py", "stack floor": "stack_floor.py"}


def _python_startup(ctx: Context, repeat: int) -> dict[str, Any]:
    """`python -c pass`: the part of every process time that no code of ours can remove."""
    env = _base_env(ctx.work / "startup-home")
    walls = [measure.run_process([sys.executable, "-c", "pass"], env, ctx.work, ctx.work).wall
             for _ in range(max(repeat, 5))]
    return measure.summary(walls)


def _measure_size(ctx: Context, n: int, repeat: int, threads: list[int], with_hvac: bool) -> dict[str, Any]:
    _say(f"N={n}: warming up")
    _warm_up(ctx, n, threads, with_hvac)
    floors: dict[int, list[float]] = {t: [] for t in threads}
    floor_cpu: dict[int, list[float]] = {t: [] for t in threads}
    variants = ("stack floor", "hvac loop", *TOOL_VARIANTS) if with_hvac else ("stack floor", *TOOL_VARIANTS)
    processes: dict[str, list[measure.Sample]] = {v: [] for v in variants}
    for round_ in range(repeat):
        _say(f"N={n}: round {round_ + 1}/{repeat}")
        for t in threads:
            cpu = time.process_time()
            floors[t].append(measure.floor(ctx.server, MOUNT, f"n{n}", t, n))
            floor_cpu[t].append(time.process_time() - cpu)
        for variant in processes:
            sample = _script(ctx, n, SCRIPTS[variant]) if variant in SCRIPTS else _tool(ctx, n, variant)
            processes[variant].append(sample)
    _check_cold_copy(ctx)
    return _summarise_size(floors, floor_cpu, processes)


def _warm_up(ctx: Context, n: int, threads: list[int], with_hvac: bool) -> None:
    """One untimed run of each: the server's caches, the OS file cache, the warm copy's bytecode."""
    measure.floor(ctx.server, MOUNT, f"n{n}", max(threads), n)
    _script(ctx, n, SCRIPTS["stack floor"])
    if with_hvac:
        _script(ctx, n, SCRIPTS["hvac loop"])
    _tool(ctx, n, "render warm")
    _verify_output(ctx, n)


def _verify_output(ctx: Context, n: int) -> None:
    """The rendered file holds all N connections (counted, never shown)."""
    text = (ctx.out_dir / f"n{n}" / "bruin.yml").read_text(encoding="utf-8")
    found = sum(1 for line in text.splitlines() if line.startswith("        - {"))
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


def _profile(ctx: Context, n: int, repeat: int, threads: list[int]) -> dict[str, Any]:
    """Warm runs of N secrets: a stage stopwatch on render and check (median of `repeat`), render
    under cProfile and -X importtime, and (N >= 100) the reads at each concurrency beside the floor."""
    _say(f"N={n}: profiling")
    _tool(ctx, n, "render warm")  # the warm copy's bytecode, if --sizes did not include n
    copy = ctx.work / "tool-warm"
    render = ["render", "--schema", str(ctx.schema), "--output", str(ctx.out_dir / f"n{n}" / "bruin.yml")]
    check = ["check", "--schema", str(ctx.schema)]
    timed = {name: _median_stages([_timed_run(ctx, n, args, {}) for _ in range(repeat)])
             for name, args in (("render", render), ("check", check))}
    prof = ctx.work / f"render-{n}.prof"
    env = _tool_env(ctx, n, ctx.work / "profile")
    _run_checked([sys.executable, "-m", "cProfile", "-o", str(prof), str(copy / "materialize.py"), *render], env, copy)
    imports = _run_checked([sys.executable, "-X", "importtime", str(copy / "materialize.py"), *render], env, copy)
    sweep = _concurrency_sweep(ctx, n, render, threads, repeat) if n >= 100 else []
    return {"n": n, "timed": timed, "cprofile": stages.stage_times(str(prof)),
            "imports": stages.import_times(imports.splitlines()), "concurrency": sweep}


def _tool_env(ctx: Context, n: int, run_dir: Path) -> dict[str, str]:
    env = _base_env(run_dir / "home")
    env.update({"XDG_CACHE_HOME": str(run_dir / "cache"), "BRUIN_VAULT_HOST": ctx.server.addr,
                "BRUIN_VAULT_TOKEN": ctx.server.token, "BRUIN_VAULT_MOUNT_PATH": MOUNT,
                "BRUIN_VAULT_PATH": f"n{n}", **ctx.tool_env})
    return env


def _timed_run(ctx: Context, n: int, tool_args: list[str], extra_env: dict[str, str]) -> dict[str, Any]:
    """bench/timed.py through the launcher: stage times, and the process's wall time around them."""
    result = ctx.work / "timed.json"
    copy = ctx.work / "tool-warm"
    env = {**_tool_env(ctx, n, ctx.work / "profile"), **extra_env}
    sample = measure.run_process([sys.executable, str(BENCH / "timed.py"), str(result), str(copy), *tool_args],
                                 env, copy, ctx.work)
    timed: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    timed["process"] = sample.wall
    timed["start-up"] = timed["started_at"] - sample.started_at
    timed["exit"] = sample.ended_at - timed["ended_at"]
    return timed


def _median_stages(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(values: list[float]) -> float:
        return float(measure.summary(values)["median"])

    labels = list(dict.fromkeys(label for run in runs for label in run["stages"]))
    return {
        "process": median([r["process"] for r in runs]),
        # Python's start-up before timed.py's first line, and its exit after the last.
        "start-up": median([r["start-up"] for r in runs]),
        "exit": median([r["exit"] for r in runs]),
        "import bruin_materialize.cli": median([r["import bruin_materialize.cli"] for r in runs]),
        "main": median([r["main"] for r in runs]),
        "stages": {label: median([r["stages"].get(label, 0.0) for r in runs]) for label in labels},
        "rest of cli.main": median([r["rest of cli.main"] for r in runs]),
    }


def _concurrency_sweep(ctx: Context, n: int, tool_args: list[str], threads: list[int],
                       repeat: int) -> list[dict[str, Any]]:
    """KV.read_all at each BRUIN_MATERIALIZE_CONCURRENCY against the floor at as many threads."""
    rows = []
    for t in threads:
        reads, floors = [], []
        for _ in range(repeat):
            run = _timed_run(ctx, n, tool_args, {"BRUIN_MATERIALIZE_CONCURRENCY": str(t)})
            reads.append(run["stages"]["reads"])
            floors.append(measure.floor(ctx.server, MOUNT, f"n{n}", t, n))
        rows.append({"threads": t, "tool_reads": measure.summary(reads)["median"],
                     "floor": measure.summary(floors)["median"]})
    return rows


def _run_checked(command: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or "materialize: error" in proc.stderr:
        own = [line for line in proc.stderr.splitlines() if line.startswith("materialize:")]
        raise SystemExit(f"bench: a profiled run failed ({proc.returncode}): {own[-1:]}")
    return proc.stderr


# --- output --------------------------------------------------------------------------------------


def table_rows(report: dict[str, Any], statistic: str = "median") -> tuple[list[str], list[list[str]]]:
    head = ["N", "floor s (thr)", "stack floor s", "hvac loop s", "render cold s", "render warm s", "check cold s",
            "check warm s", "warm/floor", "cold/floor", "warm/stack", "hvac/warm", "peak MB render", "peak MB check"]
    rows = []
    for n, size in report["sizes"].items():
        floor = size["floor"][statistic]

        def med(variant: str) -> str:
            return f"{size[variant][statistic]:.3f}" if variant in size else "-"

        def ratio(variant: str) -> str:
            return f"{size[variant][statistic] / floor:.2f}x" if variant in size else "-"

        def over(numerator: str, denominator: str) -> str:
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
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |")
    startup = report["python_startup"]["median"]
    what = "medians" if statistic == "median" else "best (minimum)"
    print(f"\n{what} of {report['meta']['repeat']} runs; `python -c pass` takes {startup:.3f}s; "
          f"peak = the largest of the runs' own ru_maxrss\n")


# The goals: (size, what, limit, unit). "x": against the wire floor; "x stack": against the stack
# floor; "x faster": how many times the hvac loop's time the tool's is.
GOALS = (("20", "render warm", 1.3, "x stack"), ("20", "check warm", 1.3, "x stack"),
         ("20", "render cold", 1.3, "x stack"), ("1000", "render warm", 2.0, "x"), ("1000", "render cold", 2.0, "x"),
         ("5000", "render warm", 1.5, "x"), ("5000", "render cold", 1.5, "x"), ("5000", "render warm", 150, "MB"),
         ("1000", "render warm", 3.0, "x faster"))


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


def print_goals(report: dict[str, Any]) -> None:
    print("goals (median; peak memory: the largest run)     median        best run      verdict")
    for goal, value, best, verdict in goal_rows(report):
        print(f"  {goal:60} {value:>36} {best:>36}   {verdict}")


def print_profile(profile: dict[str, Any], report: dict[str, Any]) -> None:
    timed, cprof, imports = profile["timed"], profile["cprofile"], profile["imports"]
    render, check = timed["render"], timed["check"]
    print(f"\nwhere the time goes, N={profile['n']}, warm. stopwatch: median of {report['meta']['repeat']} runs "
          "without a profiler (bench/timed.py); cProfile: one render under it")
    print(f"  {'stage':36} {'render s':>9} {'check s':>9} {'cProfile s':>10}")
    rows = [(label, render.get(label), check.get(label), None)
            for label in ("start-up", "import bruin_materialize.cli")]
    for label, nested, _ in timed_stages.STAGES:
        if label in render["stages"] or label in check["stages"]:
            rows.append((("  " if nested else "") + label, render["stages"].get(label), check["stages"].get(label),
                         cprof["stages"].get(label, {}).get("seconds")))
    rows += [("rest of cli.main", render["rest of cli.main"], check["rest of cli.main"], None),
             ("cli.main in all", render["main"], check["main"], cprof["main"]),
             ("exit (interpreter teardown)", render["exit"], check["exit"], None),
             ("the process in all", render["process"], check["process"], None)]
    for label, *values in rows:
        print(f"  {label:36} " + " ".join("" if v is None else f"{v:{w}.3f}" for v, w in zip(values, (9, 9, 10))))
    print(f"  (`python -c pass`: {report['python_startup']['median']:.3f}s)")
    print(f"\n  imports (-X importtime, one render): {imports['total']:.3f}s; the largest: " +
          ", ".join(f"{i['module']} {i['seconds']:.3f}" for i in imports["top"][:6]))
    if profile["concurrency"]:
        print("\n  reads alone (median s): threads, KV.read_all at that BRUIN_MATERIALIZE_CONCURRENCY, floor, ratio")
    for row in profile["concurrency"]:
        ratio = row["tool_reads"] / row["floor"]
        print(f"  {row['threads']:>3} {row['tool_reads']:8.3f} {row['floor']:8.3f} {ratio:6.2f}x")
    print("\n  cProfile (render), most time of their own:")
    for row in cprof["top"]:
        print(f"  {row['own']:7.3f}s own {row['cumulative']:7.3f}s cum {row['calls']:>8} calls  {row['function']}")


if __name__ == "__main__":
    raise SystemExit(main())
