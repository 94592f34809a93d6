"""Extraction quality and speed on the saved-page corpus (tests/corpus): ours beside others.

`python -m monitor.bench_extract [--json FILE] [--check]` prints, per extractor, body
precision / recall / F1 at character level (bags of characters, whitespace ignored, summed
over all pages), the share of pages whose publish date (CST day) is right, and median
milliseconds per page. Competitors: readability-lxml alone, trafilatura and GNE (each only
if installed). Every extractor gets the same decoded text; decoding is not timed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from crawler.config import PROJECT_ROOT
from crawler.pages.article import extract_article
from crawler.pages.dates import CST
from crawler.pages.encoding import decode_html

CORPUS = PROJECT_ROOT / "tests" / "corpus"
_YMD = re.compile(r"(\d{4})\D{1,3}(\d{1,2})\D{1,3}(\d{1,2})")
_SPACE = re.compile(r"\s+")

# (body, date as YYYY-MM-DD or None) from (url, raw bytes, decoded text)
Extractor = Callable[[str, bytes, str], tuple[str, str | None]]


@dataclass
class Score:
    """Running totals of one extractor over the corpus."""

    overlap: int = 0
    predicted: int = 0
    expected: int = 0
    dates_right: int = 0
    pages: int = 0
    millis: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        """Return precision, recall, F1, date accuracy and median ms/page."""
        precision = self.overlap / self.predicted if self.predicted else 0.0
        recall = self.overlap / self.expected if self.expected else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "date_accuracy": round(self.dates_right / self.pages, 4) if self.pages else 0.0,
            "ms_per_page": round(statistics.median(self.millis), 3) if self.millis else 0.0,
        }


def _chars(text: str) -> Counter[str]:
    return Counter(_SPACE.sub("", text))


def _ymd(text: str | None) -> str | None:
    match = _YMD.search(text or "")
    if not match:
        return None
    year, month, day = (int(part) for part in match.groups())
    return f"{year:04d}-{month:02d}-{day:02d}"


def ours(url: str, html: bytes, text: str) -> tuple[str, str | None]:
    """Return body and date from our extractor (on the raw bytes, as in a crawl)."""
    article = extract_article(url, html, {})
    day = article.published_at.astimezone(CST).date().isoformat() if article.published_at else None
    return article.body, day


def readability_alone(url: str, html: bytes, text: str) -> tuple[str, str | None]:
    """Return the text of readability-lxml's summary (it finds no dates)."""
    import lxml.html
    from readability import Document

    summary = Document(text).summary(html_partial=True)
    root = lxml.html.fromstring(summary)
    for block in root.iter("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4"):
        block.tail = "\n" + (block.tail or "")
    return root.text_content(), None


def trafilatura_extract(url: str, html: bytes, text: str) -> tuple[str, str | None]:
    """Return trafilatura's body and date."""
    import trafilatura

    body = trafilatura.extract(text, url=url, include_tables=True, favor_precision=False) or ""
    meta = trafilatura.extract_metadata(text)
    return body, _ymd(meta.date if meta else None)


def gne_extract(url: str, html: bytes, text: str) -> tuple[str, str | None]:
    """Return GNE's (GeneralNewsExtractor) body and publish time."""
    from gne import GeneralNewsExtractor

    result = GeneralNewsExtractor().extract(text)
    return result.get("content") or "", _ymd(result.get("publish_time"))


def available() -> dict[str, Extractor]:
    """Return the extractors that can run here, ours first."""
    found: dict[str, Extractor] = {"ours": ours, "readability-lxml": readability_alone}
    for name, module, func in (
        ("trafilatura", "trafilatura", trafilatura_extract),
        ("gne", "gne", gne_extract),
    ):
        try:
            __import__(module)
        except ImportError:
            print(f"note: {name} is not installed; skipped", file=sys.stderr)
            continue
        found[name] = func
    return found


def run(repeat: int = 3) -> dict[str, dict[str, Any]]:
    """Return each extractor's scores over the corpus."""
    cases = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))
    extractors = available()
    scores = {name: Score() for name in extractors}
    for case in cases:
        html = (CORPUS / case["file"]).read_bytes()
        text, _ = decode_html(html, {}, None)
        expected = _chars(case["body"])
        expected_day = (
            datetime.fromisoformat(case["published_at"]).astimezone(CST).date().isoformat()
            if case["published_at"]
            else None
        )
        for name, extract in extractors.items():
            score = scores[name]
            timings = []
            body, day = "", None
            for _ in range(repeat):
                started = time.perf_counter()
                try:
                    body, day = extract(case["url"], html, text)
                except Exception as exc:  # noqa: BLE001 - a competitor crashing on a page scores nothing
                    body, day = "", None
                    score.failures.append(f"{case['file']}: {type(exc).__name__}")
                    break
                timings.append((time.perf_counter() - started) * 1000)
            got = _chars(body)
            score.overlap += sum((got & expected).values())
            score.predicted += sum(got.values())
            score.expected += sum(expected.values())
            score.dates_right += day == expected_day
            score.pages += 1
            if timings:
                score.millis.append(min(timings))
    return {name: {**s.row(), "failures": s.failures} for name, s in scores.items()}


def main(argv: list[str] | None = None) -> int:
    """Print the table; with --check, exit 1 unless ours meets the aims."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--check", action="store_true", help="fail unless F1 >= 0.95, best of all, dates >= 0.95"
    )
    args = parser.parse_args(argv)
    results = run()
    print(f"{'extractor':<18}{'P':>8}{'R':>8}{'F1':>8}{'dates':>8}{'ms/page':>9}")
    for name, row in results.items():
        print(
            f"{name:<18}{row['precision']:>8.3f}{row['recall']:>8.3f}{row['f1']:>8.3f}"
            f"{row['date_accuracy']:>8.3f}{row['ms_per_page']:>9.2f}"
        )
    base = results["readability-lxml"]["ms_per_page"]
    if base:
        print(f"ours / readability-lxml time: {results['ours']['ms_per_page'] / base:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    if args.check:
        mine = results["ours"]
        best_other = max(r["f1"] for n, r in results.items() if n != "ours")
        ok = mine["f1"] >= 0.95 and mine["f1"] > best_other and mine["date_accuracy"] >= 0.95
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
