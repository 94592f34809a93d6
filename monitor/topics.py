"""Topic matching: which topics a post is about, with score, matched terms and evidence.

Topics are data (`monitor/topics.yaml`, a user file laid over it; see `topics_config`).
Matching runs on normalised text (NFKC, pinyin annotations removed, traditional to
simplified), sentence by sentence, so evidence can be quoted from the original text.
A literal term counts only where jieba's segmentation agrees it is a word (or the head of
one); shield words and exclusions keep unrelated compounds and notices out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.topics_config import (
    TopicsFile,
    TopicsFileError,
    TopicSpec,
    load_spec,
)
from monitor.topics_score import (
    Hit,
    TopicMatch,
    evidence_sentence,
    group_score,
    listed_hits,
    matched_terms,
)
from monitor.topics_text import (
    Segmenter,
    Sentence,
    enumerations,
    normalize,
    segmenter,
    split_sentences,
    trie_regex,
)

__all__ = [
    "TopicMatch",
    "TopicSet",
    "TopicsFileError",
    "classify_jsonl",
    "classify_record",
    "load_topics",
]


@dataclass(frozen=True)
class _Terms:
    """Literal terms (with alias variants) and regex patterns, compiled for one group."""

    regex: re.Pattern[str] | None
    canonical: Mapping[str, str]
    weights: Mapping[str, float]
    patterns: tuple[tuple[str, re.Pattern[str], float], ...] = ()
    # No term holds a newline: `anywhere` may search the texts joined by newlines at once.
    joinable: bool = True

    def find(
        self, norm: str, seg: Segmenter, shielded: list[tuple[int, int]]
    ) -> Iterator[tuple[str, float, int, int]]:
        """Yield (canonical term, weight, start, end) for each term found in a normalised text."""
        if self.regex is not None:
            for match in self.regex.finditer(norm):
                start, end = match.span()
                # Inside (or across) a shield word: not this term. A term that spans a
                # whole shield word (a user's 生物质能 term) is that word and counts.
                if any(
                    s < end and start < e and not (start <= s and e <= end) for s, e in shielded
                ):
                    continue
                if not seg.is_word(norm, start, end):
                    continue
                term = self.canonical[match.group().lower()]
                yield term, self.weights[term], start, end
        for label, pattern, weight in self.patterns:
            for match in pattern.finditer(norm):
                yield label, weight, match.start(), match.end()

    def anywhere(self, norms: list[str], joined: str | None = None) -> bool:
        """Return True if a term or pattern occurs in any of the texts (words or not).

        `joined` is the texts joined by newlines: the literal terms are looked for in it with
        one search, not one a text (no term holds a newline, so none matches across two
        texts); patterns, which could, are looked for text by text.
        """
        texts = [joined] if joined is not None and self.joinable else norms
        if self.regex is not None and any(self.regex.search(text) for text in texts):
            return True
        return any(pattern.search(norm) for _, pattern, _ in self.patterns for norm in norms)

    @property
    def empty(self) -> bool:
        """Return True when there is nothing to find."""
        return self.regex is None and not self.patterns


def _compile_terms(
    weights: Mapping[str, float],
    aliases: Mapping[str, str],
    variants: Mapping[str, list[str]],
    patterns: Iterable[tuple[str, str, float]] = (),
) -> _Terms:
    """Return compiled terms: each term, its alias variants, all in normalised form."""
    canonical: dict[str, str] = {}
    norm_weights: dict[str, float] = {}
    for raw, weight in weights.items():
        term = aliases.get(normalize(raw).lower(), normalize(raw))
        if weight <= 0:
            continue
        norm_weights[term] = max(weight, norm_weights.get(term, 0.0))
        for variant in [raw, term, *variants.get(term, [])]:
            canonical.setdefault(normalize(variant).lower(), term)
    regex = re.compile(trie_regex(canonical), re.IGNORECASE) if canonical else None
    compiled = tuple((label, re.compile(rx, re.IGNORECASE), w) for label, rx, w in patterns)
    joinable = not any("\n" in variant for variant in canonical)
    return _Terms(regex, canonical, norm_weights, compiled, joinable)


@dataclass(frozen=True)
class _Topic:
    """One enabled topic, compiled."""

    name: str
    spec: TopicSpec
    groups: Mapping[str, _Terms]
    exclude_title: _Terms
    exclude_text: _Terms
    shield: re.Pattern[str] | None

    def classify(self, sentences: list[Sentence], seg: Segmenter) -> TopicMatch | None:
        """Return the match of this topic on the sentences, or None."""
        spec = self.spec
        # A required group none of whose terms occurs scores 0: no match, whatever else is
        # found (most posts end here, after one search per sentence).
        norms = [sentence.norm for sentence in sentences]
        joined = "\n".join(norms)
        if not all(self.groups[name].anywhere(norms, joined) for name in spec.require):
            return None
        shields = [self._shielded(norm) for norm in norms]
        for sentence, shielded in zip(sentences, shields, strict=True):
            if sentence.is_title and any(self.exclude_title.find(sentence.norm, seg, shielded)):
                return None
            if not self.exclude_text.empty and any(
                self.exclude_text.find(sentence.norm, seg, shielded)
            ):
                return None
        hits, listed = self._hits(sentences, seg, shields)
        scores = {
            name: group_score(hits, listed, name, sentences, spec) * spec.groups[name].weight
            for name in spec.groups
        }
        for name in spec.require:
            if scores[name] < max(spec.groups[name].min_score, 1e-9):
                return None
        for name in spec.central:
            if not any(
                h.group == name and h not in listed and sentences[h.sentence].lead for h in hits
            ):
                return None
        total = sum(scores.values())
        if total < spec.threshold:
            return None
        evidence = evidence_sentence(hits, listed, sentences, spec.cooccur)
        if evidence is None:
            return None
        return TopicMatch(self.name, round(total, 2), matched_terms(hits, spec), evidence)

    def _shielded(self, norm: str) -> list[tuple[int, int]]:
        """Return the spans of shield words in a normalised sentence."""
        if self.shield is None:
            return []
        return [m.span() for m in self.shield.finditer(norm)]

    def _hits(
        self, sentences: list[Sentence], seg: Segmenter, shields: list[list[tuple[int, int]]]
    ) -> tuple[list[Hit], set[Hit]]:
        """Return every term hit, and those inside a mixed enumeration (a passing mention).

        `shields` holds the shield word spans of each sentence.
        """
        hits: list[Hit] = []
        listed: set[Hit] = set()
        for index, (sentence, shielded) in enumerate(zip(sentences, shields, strict=True)):
            found = [
                Hit(group, term, weight, index, start, end)
                for group, terms in self.groups.items()
                for term, weight, start, end in terms.find(sentence.norm, seg, shielded)
            ]
            if not found:
                continue
            hits.extend(found)
            if "、" in sentence.norm:
                listed.update(listed_hits(found, enumerations(sentence.norm)))
        return hits, listed


@dataclass(frozen=True)
class TopicSet:
    """The enabled topics, compiled; `classify` returns the topics a post matches, best first."""

    spec: TopicsFile
    topics: tuple[_Topic, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: TopicsFile) -> TopicSet:
        """Return the compiled topic set of a validated topics file."""
        seg = segmenter()
        compiled = []
        base_aliases = _alias_map(spec.aliases)
        words: set[str] = set()
        for name, topic in spec.topics.items():
            if not topic.enabled:
                continue
            aliases = {**base_aliases, **_alias_map(topic.aliases)}
            variants = _variants(aliases)
            groups = {
                group: _compile_terms(
                    g.terms,
                    aliases,
                    variants,
                    ((label, p.regex, p.weight) for label, p in g.patterns.items()),
                )
                for group, g in topic.groups.items()
            }
            shield = [normalize(w) for w in [*spec.shield, *topic.shield] if w.strip()]
            exclude_title = _compile_terms(dict.fromkeys(topic.exclude.title, 1.0), {}, {})
            exclude_text = _compile_terms(dict.fromkeys(topic.exclude.text, 1.0), {}, {})
            for terms in [*groups.values(), exclude_title, exclude_text]:
                words.update(terms.canonical)
            words.update(shield)
            shield_rx = re.compile(trie_regex(shield), re.IGNORECASE) if shield else None
            compiled.append(_Topic(name, topic, groups, exclude_title, exclude_text, shield_rx))
        seg.add_words(words)
        return cls(spec, tuple(compiled), base_aliases)

    @property
    def names(self) -> list[str]:
        """Return the names of the enabled topics."""
        return [topic.name for topic in self.topics]

    @property
    def fingerprint(self) -> str:
        """Return a hash of the merged topics data (changes whenever a topic changes)."""
        data = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]

    def sentences(self, title: str, text: str) -> list[Sentence]:
        """Return the post's sentences as `classify` reads them (normalised, lead marked)."""
        lead = max((topic.spec.lead_chars for topic in self.topics), default=0)
        return split_sentences(title or "", text or "", lead)

    def classify(
        self, title: str, text: str, sentences: list[Sentence] | None = None
    ) -> list[TopicMatch]:
        """Return the topics the post matches, best score first (empty when none).

        `sentences` is `self.sentences(title, text)` when the caller has it already.
        """
        if not self.topics:
            return []
        seg = segmenter()
        lead = max(topic.spec.lead_chars for topic in self.topics)
        if sentences is None:
            sentences = self.sentences(title, text)
        matches = []
        for topic in self.topics:
            if topic.spec.lead_chars != lead:
                sentences_for = split_sentences(title or "", text or "", topic.spec.lead_chars)
            else:
                sentences_for = sentences
            match = topic.classify(sentences_for, seg)
            if match is not None:
                matches.append(match)
        return sorted(matches, key=lambda m: (-m.score, m.name))


def _alias_map(aliases: Mapping[str, list[str]]) -> dict[str, str]:
    """Return normalised variant (lower case) -> normalised canonical name."""
    mapping: dict[str, str] = {}
    for canonical, variants in aliases.items():
        name = normalize(canonical)
        for variant in [canonical, *variants]:
            mapping[normalize(variant).lower()] = name
    return mapping


def _variants(aliases: Mapping[str, str]) -> dict[str, list[str]]:
    """Return canonical name -> its variants."""
    variants: dict[str, list[str]] = {}
    for variant, canonical in aliases.items():
        variants.setdefault(canonical, []).append(variant)
    return variants


def load_topics(user_file: Path | None = None) -> TopicSet:
    """Return the shipped topics with `user_file` laid over them; TopicsFileError if invalid."""
    return TopicSet.from_spec(load_spec(user_file))


def classify_record(topics: TopicSet, title: str, text: str) -> dict[str, Any]:
    """Return `{topics: [...], parties: [...]}` for a post, as stored with an article version."""
    from monitor.parties import extract_parties

    matches = topics.classify(title, text)
    return {
        "topics": [m.to_dict() for m in matches],
        "parties": extract_parties(title, text),
    }


def classify_jsonl(lines: Iterable[str], topics: TopicSet) -> Iterator[str]:
    """Yield one JSON line `{id, topics, parties}` per input line `{id, title, text}`."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            post = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"line {number}: invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None
        if not isinstance(post, dict):
            kind = type(post).__name__
            raise ValueError(f"line {number}: expected a JSON object, got {kind}")  # noqa: TRY004
        if "id" not in post:
            raise ValueError(f"line {number}: missing 'id'")
        title, text = post.get("title") or "", post.get("text") or ""
        if not isinstance(title, str) or not isinstance(text, str):
            raise ValueError(f"line {number}: 'title' and 'text' must be strings")  # noqa: TRY004
        record = classify_record(topics, title, text)
        yield json.dumps({"id": post["id"], **record}, ensure_ascii=False)
