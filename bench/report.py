"""The benchmark's output: the machine it ran on, a plain-text table, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from crawler.config import PROJECT_ROOT

# Every figure a full run reports, in table order (tests/test_bench_smoke.py checks the JSON).
FIGURES = [
    "throughput.ours_articles_per_s",
    "throughput.bare_articles_per_s",
    "throughput.ratio",
    "idle.requests_per_source",
    "idle.not_modified_share",
    "idle.wall_s",
    "idle.cpu_s",
    "history.idle_small_s",
    "history.idle_large_s",
    "history.idle_ratio",
    "history.new10_small_s",
    "history.new10_large_s",
    "history.new10_ratio",
    "extraction.ours_ms",
    "extraction.readability_ms",
    "extraction.ratio",
    "latency.publish_to_webhook_s",
    "memory.daemon_peak_mb",
    "memory.daemon_rss_first_mb",
    "memory.daemon_rss_last_mb",
    "memory.daemon_growth",
    "memory.crawl_peak_mb",
    "memory.idle_crawl_peak_mb",
    "memory.cycle_crawl_peak_mb",
]


def machine() -> dict[str, Any]:
    """Return what the figures were measured on: CPU, cores, memory, OS and versions."""
    import psutil
    import scrapy

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "scrapy": scrapy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "commit": commit,
    }


def _number(value: float | None) -> str:
    """Return a compact rendering of a figure value."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: dict[str, dict[str, Any]]) -> str:
    """Return the figures as a Markdown table: median, spread, runs, aim and verdict."""
    rows = [
        "| figure | median | spread (min-max) | runs | unit | aim | met |",
        "|---|---|---|---|---|---|---|",
    ]
    order = [key for key in FIGURES if key in figures] + sorted(set(figures) - set(FIGURES))
    for key in order:
        fig = figures[key]
        spread = f"{_number(fig['min'])}-{_number(fig['max'])}" if fig["runs"] > 1 else ""
        verdict = "" if fig.get("ok") is None else ("yes" if fig["ok"] else "NO")
        note = f" ({fig['note']})" if fig.get("note") else ""
        rows.append(
            f"| {key}{note} | {_number(fig['median'])} | {spread} | {fig['runs']} | "
            f"{fig['unit']} | {fig.get('aim') or ''} | {verdict} |"
        )
    return "\n".join(rows)


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write the result as indented JSON (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str) + "\n", "utf-8")
