"""``python -m benchmarks [--backend sqlite|postgresql|both] [--quick] [--only NAME ...]``: run the
scenarios on each backend, print a table, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Context, Outcome
from benchmarks.databases import ADMIN_URL, BACKENDS, Databases, redacted
from benchmarks.targets import Figures, comparisons, evaluate

SCENARIOS = ("http", "processing", "latency", "fanout", "scale", "peers", "workers", "memory", "limits")
#: What a bare run does on each backend. memory (200k jobs through one worker) alone takes
#: minutes, so it runs with ``--only memory`` or ``--all``; each default pass stays under ten.
DEFAULT = {
    "sqlite": ("http", "processing", "latency", "fanout", "scale", "peers", "workers"),
    "postgresql": ("processing", "latency", "scale", "peers", "workers"),
}
#: Modules whose name is not the scenario's: ``peers`` are the peers of the backend measured.
_MODULES = {("sqlite", "http"): "http_enqueue", ("postgresql", "http"): "http_enqueue", ("postgresql", "peers"): "pg_peers"}
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
    packages = (
        "jobqueue", "uvicorn", "starlette", "aiosqlite", "asyncpg", "psycopg", "psycopg-pool", "msgspec", "uvloop",
        "arq", "saq", "huey", "redis", "hiredis", "procrastinate", "pgqueuer",
    )  # fmt: skip
    for package in packages:
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
        "git": _git_state(),
    }


def _git_state() -> str:
    """The commit measured, and whether the product's files had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "jobqueue", "migrations"], check=False, cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes in jobqueue/ or migrations/" if dirty.stdout.strip() else "")


async def run_one(name: str, ctx: Context) -> Outcome:
    module = importlib.import_module(f"benchmarks.scenarios.{_MODULES.get((ctx.backend, name), name)}")
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


def print_comparisons(backend: str, rows: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    if len(rows) > 1:
        latency = backend == "sqlite"
        print(f"\n== {backend}: jobqueue vs peers (same run)")
        print(f"  {'system':<15}{'enqueue/s':>12}{'process/s':>12}" + (f"{'idle p50 ms':>13}" if latency else ""))
        for row in rows:
            print(f"  {row['system']:<15}{cell(row['enqueue'], ',.0f'):>12}{cell(row['process'], ',.0f'):>12}"
                  + (f"{cell(row['idle p50'], '.2f'):>13}" if latency else ""))  # fmt: skip
        for row in rows[1:]:
            ratios = [f"{key} {value:.2f}x" for key, value in row["ratios"].items() if key != "idle p50" and value]
            if row["ratios"].get("idle p50"):
                ratios.append(
                    f"idle p50 {row['ratios']['idle p50']:.2f}x "
                    f"({row['our idle p50']:.2f} vs {row['idle p50']:.2f} ms alternating; lower is better)"
                )
            if ratios:
                print(f"  jobqueue / {row['system']}: " + ", ".join(ratios))
    print(f"\n== {backend}: targets")
    for item in targets:
        state = {True: "met", False: "NOT met", None: "not measured"}[item["met"]]
        value = "-" if item["value"] is None else f"{item['value']:,.2f}"
        print(f"  {item['target']:<48}{value:>12}  {state}")


async def run_backend(backend: str, names: list[str], ctx: Context) -> list[Outcome]:
    print(f"\n#### {backend}: {', '.join(names)}", flush=True)
    outcomes = []
    for name in names:
        print(f"-- {backend} {name} ...", flush=True)
        outcomes.append(await run_one(name, ctx))
    return outcomes


async def main_async(args: argparse.Namespace) -> int:
    only = [n for raw in args.only for n in raw.split(",") if n]
    unknown = [n for n in only if n.rpartition(":")[2] not in SCENARIOS or n.rpartition(":")[0] not in ("", *BACKENDS)]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    workdir = Path(tempfile.mkdtemp(prefix="jobqueue-bench-"))
    print(f"jobqueue benchmarks ({'quick' if args.quick else 'full'}) on {', '.join(backends)}; work files in {workdir}")
    started = time.perf_counter()
    report: dict[str, Any] = {"backends": {}}
    results: dict[str, tuple[list[Outcome], str | None]] = {}
    try:
        for backend in backends:
            databases = Databases(backend, workdir)
            # A name may be qualified by its backend (postgresql:peers); a bare one means every backend.
            names = [n.rpartition(":")[2] for n in only if n.rpartition(":")[0] in ("", backend)] if only else [
                *DEFAULT[backend], *(["memory"] if args.all else [])
            ]
            unavailable = databases.check()
            if unavailable:
                print(f"\n#### {backend}: skipped: {unavailable}")
                results[backend] = ([], unavailable)
                continue
            ctx = Context(
                quick=args.quick, workdir=workdir, redis_url=args.redis_url, backend=backend, databases=databases
            )
            results[backend] = (await run_backend(backend, names, ctx), None)
            report["backends"][backend] = {"server": databases.server_settings()} if backend == "postgresql" else {}
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    for backend, (outcomes, unavailable) in results.items():
        print(f"\n#### {backend}")
        if unavailable:
            print(f"skipped: {unavailable}")
            report["backends"][backend] = {"skipped": unavailable}
            continue
        print_table(outcomes)
        figures = Figures(outcomes)
        rows, targets = comparisons(backend, figures), evaluate(backend, figures)
        print_comparisons(backend, rows, targets)
        report["backends"][backend].update(
            scenarios={o.name: o.as_json() for o in outcomes}, comparison=rows, targets=targets
        )
    print(f"\ntotal {total:.0f}s")
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "seconds": round(total, 1),
        "machine": machine(),
        **report,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 1 if any(o.failed for outcomes, _ in results.values() for o in outcomes) else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="sqlite",
                        help="where jobqueue keeps its jobs: SQLite files (default), databases of their own on "
                             f"the PostgreSQL server of POSTGRES_BENCH_URL ({redacted(ADMIN_URL)}), or both")
    parser.add_argument("--quick", action="store_true", help="small counts and short runs: a smoke test")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only these scenarios (repeat or comma-separate; BACKEND:NAME for one backend "
                             f"only): {', '.join(SCENARIOS)}")
    parser.add_argument("--all", action="store_true", help="also the memory scenario (several minutes per backend)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                        help="Redis for the SQLite peers and events (this db is flushed!) [env BENCH_REDIS_URL]")
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
