#!/usr/bin/env python3
"""Time against the number of secrets, log-log, from the JSON of bench/run.py.

    python bench/plot.py RESULTS.json [docs/performance.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# (key in the JSON, legend, style)
SERIES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("floor", "floor: bare http.client, best of 1-8 threads (in-process)", {"color": "black", "marker": "o"}),
    ("stack floor", "stack floor: imports of hvac, pycurl, jinja2, ruamel.yaml + keep-alive reads (process)",
     {"color": "gray", "marker": "o", "linestyle": ":"}),
    ("hvac loop", "hvac, one secret after another (process)", {"color": "tab:red", "marker": "s"}),
    ("render cold", "materialize.py render, cold (process)", {"color": "tab:blue", "marker": "^", "linestyle": "--"}),
    ("render warm", "materialize.py render, warm (process)", {"color": "tab:blue", "marker": "v"}),
    ("check warm", "materialize.py check, warm (process)", {"color": "tab:green", "marker": "d"}),
)


def draw(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; a file only
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = sorted(report["sizes"], key=int)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for key, label, style in SERIES:
        points = [(int(n), report["sizes"][n][key]["median"]) for n in sizes if key in report["sizes"][n]]
        if points:
            ax.plot(*zip(*points, strict=True), label=label, **style)
    _goals(ax, report, sizes)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([int(n) for n in sizes], labels=[f"{int(n):,}" for n in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("secrets read (KV v2, OpenBao dev server on loopback)")
    ax.set_ylabel("wall time, s (median)")
    meta = report["meta"]
    commit = meta.get("git", {}).get("commit", "")[:7]
    ax.set_title(f"bruin-materialize {commit}, {meta['date'][:10]}, {meta['cpus']} cores, median of {meta['repeat']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


_GOAL: dict[str, Any] = {"marker": "_", "markersize": 26, "markeredgewidth": 2.5, "color": "tab:purple",
                         "linestyle": "none"}


def _goals(ax: Any, report: dict[str, Any], sizes: list[str]) -> None:
    """The targets: 1.3x the stack floor at 20, 2.0x the floor at 1,000, 1.5x at 5,000."""
    targets = {"20": ("stack floor", 1.3), "1000": ("floor", 2.0), "5000": ("floor", 1.5)}
    for n, (base, factor) in targets.items():
        if n in sizes and base in report["sizes"][n]:
            ax.plot([int(n)], [report["sizes"][n][base]["median"] * factor], **_GOAL)
    ax.plot([], [], **{**_GOAL, "markersize": 12},
            label="goal (1.3x stack floor at 20; 2.0x floor at 1,000; 1.5x at 5,000)")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    report = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "docs" / "performance.png"
    draw(report, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
