"""``python -m bench [--quick] [--out DIR] [--only NAME,...]``: run, print, write, plot.

The full run writes ``bench/results.json`` and ``bench/results.png``. ``--quick`` (the CI
smoke run) uses tiny sizes and few repeats and writes to a temporary folder unless
``--out`` is given, so the committed results stay untouched. A missed target never makes
the exit status non-zero; only a crash does.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .contenders import clean_servers, probe_backends
from .harness import Row, Settings

#: Measure modules, in the order they run (the ones needing no server first).
MEASURES = (
    "process_entities",
    "stall",
    "save_burst",
    "lookups",
    "misses",
    "memory",
    "restart",
    "storage_latency",
)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny sizes, few repeats (CI)")
    parser.add_argument("--out", type=Path,
                        help="folder for results.json/png (default: bench/, or a temp "
                             "folder with --quick)")
    parser.add_argument("--markdown", type=Path, metavar="RESULTS_JSON",
                        help="print the Markdown table of a results.json and exit (no run)")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(MEASURES)}")
    return parser.parse_args(argv)


async def _run(settings: Settings, measures: list[str]) -> list[Row]:
    await probe_backends(settings)
    for contender, why in settings.unavailable.items():
        print(f"skipping {contender}: {why}")
    await clean_servers(settings, leftovers=True)
    rows: list[Row] = []
    try:
        for name in measures:
            module = importlib.import_module(f"{__package__}.{name}")
            started = time.perf_counter()
            print(f"running {name} ...", flush=True)
            new_rows = await module.run(settings)
            for row in new_rows:
                for contender, why in settings.unavailable.items():
                    row.notes.append(f"{contender} skipped: {why}")
            rows.extend(new_rows)
            print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        await clean_servers(settings)
    return rows


def _load() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.markdown is not None:
        print(report.markdown(report.read_json(args.markdown)))
        return 0
    measures = list(MEASURES)
    if args.only:
        measures = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = set(measures).difference(MEASURES)
        if unknown:
            print(f"unknown measure(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING)
    out = args.out
    if out is None:
        out = (Path(tempfile.mkdtemp(prefix="tgsession-bench-")) if args.quick
               else Path(__file__).resolve().parent)
    out.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tgsession-bench-work-") as workdir:
        os.chmod(workdir, 0o700)
        settings = Settings(quick=args.quick, workdir=Path(workdir))
        rows = asyncio.run(_run(settings, measures))
    elapsed = time.perf_counter() - started
    print()
    print(report.table(rows))
    print()
    print(report.legend(rows))
    for row in rows:
        if row.p99:
            shown = ", ".join(f"{name} {value:.3f}" for name, value in row.p99.items())
            print(f"  p99 [{row.measure}] ({row.unit}): {shown}")
        for note in row.notes:
            print(f"  note [{row.measure}, {row.size:,}]: {note}")
    report.write_json(rows, out / "results.json")
    report.plot(rows, out / "results.png")
    print()
    print(f"{'quick' if args.quick else 'full'} run on {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, in {elapsed:.0f} s "
          f"(1-min load average {load_before} before, {_load()} after);\n"
          f"wrote {out / 'results.json'} and {out / 'results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
