"""Measure a topic on the labelled development set: precision, recall, F1 and the posts it gets wrong.

Run as `python -m monitor.bench_topics [--topic biomed_coop] [--devset FILE] [--check]`;
`--check` exits 1 when precision or recall is below the aim (0.95) or a seed post is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from monitor.topics import TopicSet, load_topics

DEVSET = Path(__file__).resolve().parent.parent / "tests" / "data" / "topics" / "devset.jsonl"
AIM = 0.95


@dataclass(frozen=True)
class DevPost:
    """One labelled post of the development set."""

    id: str
    kind: str
    label: bool
    script: str
    title: str
    text: str


@dataclass(frozen=True)
class Outcome:
    """One post's label, prediction and score."""

    post: DevPost
    predicted: bool
    score: float
    evidence: str


@dataclass(frozen=True)
class Report:
    """Precision, recall and F1 of one topic, with the outcomes behind them."""

    topic: str
    outcomes: list[Outcome]
    seconds_per_post: float

    def _count(self, label: bool, predicted: bool) -> int:
        """Return how many outcomes have this label and prediction."""
        return sum(1 for o in self.outcomes if o.post.label == label and o.predicted == predicted)

    @property
    def precision(self) -> float:
        """Return TP / (TP + FP) (1.0 when nothing is predicted)."""
        tp, fp = self._count(True, True), self._count(False, True)
        return tp / (tp + fp) if tp + fp else 1.0

    @property
    def recall(self) -> float:
        """Return TP / (TP + FN) (1.0 when nothing is labelled true)."""
        tp, fn = self._count(True, True), self._count(True, False)
        return tp / (tp + fn) if tp + fn else 1.0

    @property
    def f1(self) -> float:
        """Return the harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def wrong(self) -> list[Outcome]:
        """Return the misclassified outcomes."""
        return [o for o in self.outcomes if o.post.label != o.predicted]

    @property
    def seeds_missed(self) -> list[Outcome]:
        """Return the seed posts not matched."""
        return [o for o in self.outcomes if o.post.kind == "seed" and not o.predicted]


def load_devset(path: Path = DEVSET) -> list[DevPost]:
    """Return the labelled posts of a JSONL development set."""
    posts = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                posts.append(
                    DevPost(
                        str(data["id"]),
                        data["kind"],
                        bool(data["label"]),
                        data.get("script", "simplified"),
                        data["title"],
                        data["text"],
                    )
                )
            except (json.JSONDecodeError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: bad dev-set line: {exc}") from None
    return posts


def evaluate(topics: TopicSet, posts: Iterable[DevPost], topic: str = "biomed_coop") -> Report:
    """Return the report of one topic over the posts."""
    outcomes = []
    posts = list(posts)
    started = time.perf_counter()
    for post in posts:
        match = next((m for m in topics.classify(post.title, post.text) if m.name == topic), None)
        outcomes.append(
            Outcome(
                post,
                match is not None,
                match.score if match else 0.0,
                match.evidence if match else "",
            )
        )
    elapsed = time.perf_counter() - started
    return Report(topic, outcomes, elapsed / max(1, len(posts)))


def format_report(report: Report) -> str:
    """Return the report as text: counts, P/R/F1, per-kind accuracy and the wrong posts."""
    lines = [
        (
            f"topic {report.topic}: {len(report.outcomes)} posts, "
            f"{sum(o.post.label for o in report.outcomes)} labelled true"
        ),
        f"precision {report.precision:.3f}  recall {report.recall:.3f}  F1 {report.f1:.3f}",
        f"mean time per post {report.seconds_per_post * 1000:.1f} ms",
        "by kind (correct/total):",
    ]
    kinds: dict[str, list[Outcome]] = {}
    for outcome in report.outcomes:
        kinds.setdefault(outcome.post.kind, []).append(outcome)
    for kind, outcomes in sorted(kinds.items()):
        correct = sum(1 for o in outcomes if o.post.label == o.predicted)
        lines.append(f"  {kind:<18} {correct}/{len(outcomes)}")
    lines.append(f"wrong: {len(report.wrong)}")
    for o in report.wrong:
        what = "false positive" if o.predicted else "false negative"
        lines.append(
            f"  {o.post.id} [{o.post.kind}, {o.post.script}] {what} score {o.score}: {o.post.title}"
        )
        if o.evidence:
            lines.append(f"      evidence: {o.evidence}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the report; with --check return 1 when below the aim or a seed is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default="biomed_coop")
    parser.add_argument("--devset", type=Path, default=DEVSET)
    parser.add_argument(
        "--topics-file",
        type=Path,
        default=None,
        help="user topics file laid over the shipped topics",
    )
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {AIM}")
    args = parser.parse_args(argv)
    topics = load_topics(args.topics_file)
    report = evaluate(topics, load_devset(args.devset), args.topic)
    print(format_report(report))
    if args.check and (report.precision < AIM or report.recall < AIM or report.seeds_missed):
        print(
            f"below the aim: precision and recall must be >= {AIM}, no seed missed", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
