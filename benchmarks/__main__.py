"""``python -m benchmarks [--quick] [--only NAME ...]``: run the scenarios, print a table, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import Context, Outcome

SCENARIOS = ("http", "processing", "latency", "fanout", "scale", "peers", "memory")
#: What a bare ``python -m benchmarks`` runs: memory (200k jobs through one worker) alone takes
#: minutes, so it runs with ``--only memory`` or ``--all`` and the default stays under ten.
DEFAULT = tuple(s for s in SCENARIOS if s != "memory")
_MODULES = {"http": "http_enqueue"}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("jobqueue", "uvicorn", "starlette", "aiosqlite", "msgspec", "uvloop", "arq", "saq", "redis"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "wrk": shutil.which("wrk") is not None,
        "versions": versions,
    }


async def run_one(name: str, ctx: Context) -> Outcome:
    module = importlib.import_module(f"benchmarks.scenarios.{_MODULES.get(name, name)}")
    started = time.perf_counter()
    try:
        outcome: Outcome = await module.run(ctx)
    except Exception as exc:  # one broken scenario must not hide the others' figures
        outcome = Outcome(name, failed=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.2f}x" if value >= 0.2 else f"{value:.3f}"
    if unit in ("ms",):
        return f"{value:.2f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:,.0f} {unit}"


def print_table(outcomes: list[Outcome]) -> None:
    width = max((len(k) for o in outcomes for k in o.figures), default=20) + 2
    for outcome in outcomes:
        head = f"== {outcome.name} ({outcome.seconds:.0f}s)"
        if outcome.failed:
            print(f"{head}: FAILED: {outcome.failed}")
            continue
        if outcome.skipped:
            print(f"{head}: skipped: {outcome.skipped}")
            continue
        print(head)
        for key, (value, unit) in outcome.figures.items():
            print(f"  {key:<{width}}{_fmt(value, unit):>18}")
        for note in outcome.notes:
            print(f"  - {note}")


def comparisons(by_name: dict[str, Outcome]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The jobqueue / peer rows and the issue's targets, from figures measured in this run."""

    def fig(scenario: str, key: str) -> float | None:
        outcome = by_name.get(scenario)
        return None if outcome is None else outcome.value(key)

    ours = {
        "enqueue": fig("processing", "enqueue (Python API, 50 tasks)"),
        "process": fig("processing", "process"),
        "idle p50": fig("latency", "cross-process enqueue->done p50"),
    }
    rows = [{"system": "jobqueue", **ours}]
    for peer in ("arq", "saq"):
        theirs = {
            "enqueue": fig("peers", f"{peer} enqueue"),
            "process": fig("peers", f"{peer} process"),
            "idle p50": fig("peers", f"{peer} enqueue->done p50"),
        }
        if any(v is not None for v in theirs.values()):
            # jobqueue's idle p50 measured in rounds alternating with this peer's: the ratio
            # compares figures taken on the same machine state (see peers._interleaved_latency).
            ours_alternating = fig("peers", f"jobqueue enqueue->done p50 (alternating with {peer})")
            rows.append({"system": peer, **theirs, "our idle p50": ours_alternating})

    targets: list[dict[str, Any]] = []

    def target(name: str, value: float | None, goal: float, higher_is_better: bool = True) -> None:
        met = None if value is None else (value >= goal if higher_is_better else value <= goal)
        targets.append({"target": name, "value": value, "goal": goal, "met": met})

    peer_process = [r["process"] for r in rows[1:] if r["process"]]
    target(
        "processing / fastest peer >= 3",
        ours["process"] / max(peer_process) if ours["process"] and peer_process else None,
        3.0,
    )
    target("processing >= 9,000 jobs/s", ours["process"], 9000)
    target("HTTP enqueue / no-op >= 0.7", fig("http", "enqueue / no-op"), 0.7)
    saq_p50 = fig("peers", "saq enqueue->done p50")
    our_p50 = fig("peers", "jobqueue enqueue->done p50 (alternating with saq)")
    target(
        "idle p50 (cross-process) / SAQ p50 <= 1",
        our_p50 / saq_p50 if our_p50 and saq_p50 else None,
        1.0,
        higher_is_better=False,
    )
    scale = by_name.get("scale")
    ratio = None
    if scale is not None:
        ratio = next((v for k, (v, u) in scale.figures.items() if k.startswith("claim x1 ") and u == "ratio"), None)
    target("claim rate 1M / 10k >= 0.8", ratio, 0.8)
    target("RSS growth 20k -> 200k <= 10%", fig("memory", "growth"), 0.10, higher_is_better=False)
    return rows, targets


def print_comparisons(rows: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    if len(rows) > 1:
        print("\n== jobqueue vs peers (same run)")
        print(f"  {'system':<10}{'enqueue/s':>12}{'process/s':>12}{'idle p50 ms':>13}")
        for row in rows:
            print(f"  {row['system']:<10}{cell(row['enqueue'], ',.0f'):>12}{cell(row['process'], ',.0f'):>12}"
                  f"{cell(row['idle p50'], '.2f'):>13}")
        ours = rows[0]
        for row in rows[1:]:
            ratios = []
            for key in ("enqueue", "process"):
                if ours[key] and row[key]:
                    ratios.append(f"{key} {ours[key] / row[key]:.2f}x")
            if row.get("our idle p50") and row["idle p50"]:
                ratios.append(
                    f"idle p50 {row['our idle p50'] / row['idle p50']:.2f}x "
                    f"({row['our idle p50']:.2f} vs {row['idle p50']:.2f} ms alternating; lower is better)"
                )
            print(f"  jobqueue / {row['system']}: " + ", ".join(ratios))
    print("\n== targets")
    for item in targets:
        state = {True: "met", False: "NOT met", None: "not measured"}[item["met"]]
        value = "-" if item["value"] is None else f"{item['value']:,.2f}"
        print(f"  {item['target']:<42}{value:>12}  {state}")


async def main_async(args: argparse.Namespace) -> int:
    names = [n for raw in args.only for n in raw.split(",") if n] or list(SCENARIOS if args.all else DEFAULT)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="jobqueue-bench-"))
    ctx = Context(quick=args.quick, workdir=workdir, redis_url=args.redis_url)
    print(f"jobqueue benchmarks ({'quick' if args.quick else 'full'}): {', '.join(names)}; work files in {workdir}")
    started = time.perf_counter()
    outcomes = []
    try:
        for name in names:
            print(f"-- {name} ...", flush=True)
            outcomes.append(await run_one(name, ctx))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    print()
    print_table(outcomes)
    rows, targets = comparisons({o.name: o for o in outcomes})
    print_comparisons(rows, targets)
    print(f"\ntotal {total:.0f}s")
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "seconds": round(total, 1),
        "machine": machine(),
        "scenarios": {o.name: o.as_json() for o in outcomes},
        "comparison": rows,
        "targets": targets,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 1 if any(o.failed for o in outcomes) else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts and short runs: a smoke test")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"run only these scenarios (repeat or comma-separate): {', '.join(SCENARIOS)}")
    parser.add_argument("--all", action="store_true", help="also the memory scenario (several minutes)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                        help="Redis for the peers (this db is flushed!) [env BENCH_REDIS_URL]")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results ({RESULTS})")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (databases, logs)")
    args = parser.parse_args()
    try:
        import uvloop

        return uvloop.run(main_async(args))
    except ImportError:
        return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
