"""`python -m bench [--only idle,latency] [--quick]`: run benchmarks, print a table, write JSON.

Sections: throughput, cycles (idle cycle and history growth), extraction, latency, memory.
`--quick` runs every section on tiny sizes (a smoke test of the harness, not a measurement).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import cycles, extraction, latency, memory, throughput
from bench.common import SITES, log
from bench.report import machine, table, write_json
from crawler.config import PROJECT_ROOT

DEFAULT_OUT = PROJECT_ROOT / "bench-results" / "latest.json"
ALIASES = {"idle": "cycles", "history": "cycles"}


@dataclass(frozen=True)
class Sizes:
    """How big and how often each section runs."""

    posts: int = 2000  # per source, five sources (throughput)
    throughput_runs: int = 2  # a pair of 10,000-post crawls (ours, bare) takes about 4 minutes
    sources: int = 1000  # bulk sources of the idle cycle
    history: int = 200_000  # stored articles of the large-history phase
    cycle_runs: int = 3  # rounds of four cycles: idle and 10 new, at both history sizes
    extraction_runs: int = 7
    extraction_pages: int | None = None
    interval: int = 60  # schedule of the latency daemon, seconds
    latency_samples: int = 2
    latency_sources: int = 5  # the first N replayed sites
    memory_cycles: int = 60  # the daemon's RSS after 10 cycles against after this many


QUICK = Sizes(
    posts=20,
    throughput_runs=1,
    sources=4,
    history=300,
    cycle_runs=1,
    extraction_runs=2,
    extraction_pages=6,
    interval=2,
    latency_samples=1,
    latency_sources=1,
    memory_cycles=2,
)
# The memory daemon runs beside the latency daemon: both mostly wait on their schedules.
CONCURRENT = {"memory": "latency"}


def sections(sizes: Sizes, root: Path) -> dict[str, Callable[[], dict[str, Any]]]:
    """Return each section's runner, in running order."""
    return {
        "extraction": lambda: extraction.measure(sizes.extraction_runs, sizes.extraction_pages),
        "throughput": lambda: throughput.measure(root, sizes.posts, sizes.throughput_runs),
        "cycles": lambda: cycles.measure(root, sizes.sources, sizes.history, sizes.cycle_runs),
        "latency": lambda: latency.measure(
            root, sizes.interval, sizes.latency_samples, SITES[: sizes.latency_sources]
        ),
        "memory": lambda: memory.measure(root, sizes.memory_cycles),
    }


def timed(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Return a section's result with the seconds it took (its error, if it failed)."""
    started = time.monotonic()
    try:
        part = run()
    except Exception:  # noqa: BLE001 - one failed section must not lose the others' figures
        part = {"figures": {}, "detail": {"error": traceback.format_exc()}}
    part["detail"]["seconds"] = round(time.monotonic() - started, 1)
    return part


def record(result: dict[str, Any], name: str, part: dict[str, Any]) -> None:
    """Add a section's figures and detail to the result."""
    result["figures"].update(part["figures"])
    result["detail"][name] = part["detail"]
    error = part["detail"].get("error")
    if error:
        result.setdefault("errors", {})[name] = error.strip().splitlines()[-1]
        log(f"{name} FAILED after {part['detail']['seconds']:.0f}s:\n{error}")
    else:
        log(f"{name} done in {part['detail']['seconds']:.0f}s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated sections "
        "(throughput, cycles = idle + history, extraction, latency, memory)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON file (default {DEFAULT_OUT.relative_to(PROJECT_ROOT)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    for field, value in asdict(Sizes()).items():
        parser.add_argument(
            "--" + field.replace("_", "-"), type=int, default=None, help=f"default {value}"
        )
    return parser.parse_args(argv)


def chosen_sizes(args: argparse.Namespace) -> Sizes:
    """Return the sizes of this run: defaults or --quick, with any explicit overrides."""
    sizes = QUICK if args.quick else Sizes()
    overrides = {f: getattr(args, f) for f in asdict(sizes) if getattr(args, f) is not None}
    return replace(sizes, **overrides)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; print the table and write the JSON; return the exit status."""
    args = parse_args(argv)
    sizes = chosen_sizes(args)
    wanted = [ALIASES.get(s.strip(), s.strip()) for s in args.only.split(",") if s.strip()]
    started = time.time()
    out = args.out or DEFAULT_OUT
    with tempfile.TemporaryDirectory(prefix="govmonitor-bench-") as tmp:
        root = Path(tmp)
        runners = sections(sizes, root)
        unknown = [name for name in wanted if name not in runners]
        if unknown:
            print(
                f"unknown section(s): {', '.join(unknown)}; known: {', '.join(runners)}",
                file=sys.stderr,
            )
            return 2
        result: dict[str, Any] = {
            "machine": machine(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "quick": args.quick,
            "sizes": asdict(sizes),
            "figures": {},
            "detail": {},
        }
        chosen = [name for name in runners if not wanted or name in wanted]
        with ThreadPoolExecutor(max_workers=1) as beside:
            pending: dict[str, Future[dict[str, Any]]] = {}
            for name in chosen:
                partner = CONCURRENT.get(name)
                if partner in chosen:
                    continue  # started with its partner
                partners = [p for p, host in CONCURRENT.items() if host == name and p in chosen]
                for other in partners:
                    pending[other] = beside.submit(timed, runners[other])
                record(result, name, timed(runners[name]))
                for other in partners:
                    record(result, other, pending.pop(other).result())
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="govmonitor-bench-kept-"))
            shutil.copytree(root, kept, dirs_exist_ok=True)
            log(f"work folder kept in {kept}")
    result["seconds"] = round(time.time() - started, 1)
    write_json(out, result)
    info = result["machine"]
    print(
        f"Measured on {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, "
        f"{info['os']}, Python {info['python']}, Scrapy {info['scrapy']}, "
        f"SQLite {info['sqlite']} ({result['started']}, {result['seconds']:.0f}s)"
    )
    print(table(result["figures"]))
    print(f"JSON: {out}")
    for name, error in result.get("errors", {}).items():
        print(f"section {name} failed: {error}")
    return 1 if result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
