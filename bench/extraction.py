"""Extraction cost: milliseconds per saved page for our extractor and for readability-lxml alone.

Both read the raw bytes of every page of tests/corpus/pages; each run times one pass of each,
in alternating order, and its ratio is ours / readability.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.common import figure, log
from crawler.config import PROJECT_ROOT
from crawler.pages.article import extract_article

CORPUS = PROJECT_ROOT / "tests" / "corpus"
AIM_RATIO = 1.5


def load_cases(limit: int | None = None) -> list[dict[str, Any]]:
    """Return the corpus cases with their page bytes under `raw`."""
    cases: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text("utf-8"))
    for case in cases:
        case["raw"] = (CORPUS / case["file"]).read_bytes()
    return cases[:limit] if limit else cases


def ours(case: dict[str, Any]) -> object:
    """Extract one page with our generic extractor, as the spider does."""
    headers = {"content-type": case.get("content_type") or "text/html"}
    return extract_article(case["url"], case["raw"], headers, crawl_time=datetime.now(UTC))


def readability_alone(case: dict[str, Any]) -> object:
    """Extract one page with readability-lxml alone: title and main-content HTML."""
    from readability import Document

    document = Document(case["raw"])
    return document.title(), document.summary()


def timed_pass(extract: Callable[[dict[str, Any]], object], cases: list[dict[str, Any]]) -> float:
    """Return milliseconds per page of one pass of `extract` over `cases`."""
    started = time.perf_counter()
    for case in cases:
        extract(case)
    return (time.perf_counter() - started) * 1000 / len(cases)


def measure(runs: int, limit: int | None = None) -> dict[str, Any]:
    """Return the extraction figures over the saved-page corpus."""
    cases = load_cases(limit)
    log(f"extraction: {len(cases)} saved pages, {runs} runs")
    timed_pass(ours, cases)  # warm-up: imports, OpenCC tables, lxml
    timed_pass(readability_alone, cases)
    ours_ms: list[float] = []
    readability_ms: list[float] = []
    for number in range(runs):
        if number % 2 == 0:
            ours_ms.append(timed_pass(ours, cases))
            readability_ms.append(timed_pass(readability_alone, cases))
        else:
            readability_ms.append(timed_pass(readability_alone, cases))
            ours_ms.append(timed_pass(ours, cases))
    ratios = [a / b for a, b in zip(ours_ms, readability_ms, strict=True)]
    ratio = figure(ratios, "x readability", f"<= {AIM_RATIO}")
    ratio["ok"] = ratio["median"] is not None and ratio["median"] <= AIM_RATIO
    return {
        "figures": {
            "extraction.ours_ms": figure(ours_ms, "ms/page", digits=2),
            "extraction.readability_ms": figure(readability_ms, "ms/page", digits=2),
            "extraction.ratio": ratio,
        },
        "detail": {"pages": len(cases), "corpus": str(Path("tests/corpus/pages"))},
    }
