"""Scoring a topic on a post's term hits: group scores, passing mentions, evidence, the match."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.topics_config import TopicSpec
from monitor.topics_text import Sentence

_DECAY = 0.5  # each repeat of a term counts half the one before
_MAX_REPEATS = 8
_EVIDENCE_CHARS = 200


@dataclass(frozen=True)
class TopicMatch:
    """A topic a post matched: score, terms found per group (canonical), one evidence sentence."""

    name: str
    score: float
    matched: dict[str, list[str]]
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        """Return `{name, score, matched, evidence}` as stored and shown in alerts."""
        return {
            "name": self.name,
            "score": self.score,
            "matched": {group: list(terms) for group, terms in self.matched.items()},
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Hit:
    """One term found: its group, canonical term, weight, sentence and span."""

    group: str
    term: str
    weight: float
    sentence: int
    start: int
    end: int


def listed_hits(found: list[Hit], lists: list[list[tuple[int, int]]]) -> set[Hit]:
    """Return hits in an enumeration where under half the items belong to the hit's group."""
    listed: set[Hit] = set()
    for items in lists:
        for group in {h.group for h in found}:
            inside = [[h for h in found if h.group == group and s <= h.start < e] for s, e in items]
            if sum(1 for item in inside if item) * 2 < len(items):
                listed.update(h for item in inside for h in item)
    return listed


def group_score(
    hits: list[Hit], listed: set[Hit], group: str, sentences: list[Sentence], spec: TopicSpec
) -> float:
    """Return a group's score: per term, its weighted hits with each repeat counting less."""
    per_term: dict[str, list[float]] = {}
    for hit in hits:
        if hit.group != group:
            continue
        weight = hit.weight
        if sentences[hit.sentence].is_title:
            weight *= spec.title_boost
        if hit in listed:
            weight *= spec.list_discount
        per_term.setdefault(hit.term, []).append(weight)
    score = 0.0
    for weights in per_term.values():
        weights.sort(reverse=True)
        score += sum(w * _DECAY**k for k, w in enumerate(weights[:_MAX_REPEATS]))
    return score


def matched_terms(hits: list[Hit], spec: TopicSpec) -> dict[str, list[str]]:
    """Return group -> canonical terms found, the weightiest first."""
    matched: dict[str, list[str]] = {}
    for group in spec.groups:
        weight: dict[str, float] = {}
        for hit in hits:
            if hit.group == group:
                weight[hit.term] = weight.get(hit.term, 0.0) + hit.weight
        if weight:
            matched[group] = sorted(weight, key=lambda term: (-weight[term], term))
    return matched


def evidence_sentence(
    hits: list[Hit], listed: set[Hit], sentences: list[Sentence], cooccur: list[str]
) -> str | None:
    """Return the original sentence that best shows the match (groups of `cooccur` together)."""
    by_sentence: dict[int, dict[str, dict[str, float]]] = {}
    for hit in hits:
        if hit not in listed:
            terms = by_sentence.setdefault(hit.sentence, {}).setdefault(hit.group, {})
            terms[hit.term] = hit.weight
    candidates = [
        (not sentences[i].is_title, sum(sum(t.values()) for t in groups.values()), -i)
        for i, groups in by_sentence.items()
        if all(group in groups for group in cooccur)
    ]
    if not candidates:
        return None
    index = -max(candidates)[2]
    return _trim(sentences[index], [h for h in hits if h.sentence == index])


def _trim(sentence: Sentence, hits: list[Hit]) -> str:
    """Return the sentence's original text, cut around its first hit when very long."""
    text = " ".join(sentence.original.split())
    if len(text) <= _EVIDENCE_CHARS:
        return text
    first = min(h.start for h in hits) if hits else 0
    centre = int(first * len(text) / max(1, len(sentence.norm)))
    start = max(0, min(centre - _EVIDENCE_CHARS // 3, len(text) - _EVIDENCE_CHARS))
    end = start + _EVIDENCE_CHARS
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
