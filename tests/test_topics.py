"""Tests of the topic matcher, the topics file, the JSONL interface and party extraction."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from opencc import OpenCC

from crawler.normalize import normalize_text
from monitor.bench_topics import DEVSET, DevPost, evaluate, load_devset
from monitor.parties import canonical_name, extract_parties
from monitor.topics import (
    TopicMatch,
    TopicSet,
    TopicsFileError,
    _compile_terms,
    classify_jsonl,
    load_topics,
)
from monitor.topics_text import normalize, segmenter

POSTS = {post.id: post for post in load_devset(DEVSET)}
SEEDS = [post for post in POSTS.values() if post.kind == "seed"]
HARD_NEGATIVE_KINDS = {"bio_no_coop", "coop_other_field", "list_mention", "passing_mention"}

NEW_ENERGY = """
topics:
  new_energy_coop:
    label: 新能源合作
    threshold: 6
    require: [cooperation, energy]
    cooccur: [cooperation, energy]
    groups:
      cooperation:
        min_score: 3
        terms: {合作协议: 3, 签约: 3, 共建: 3, 框架协议: 3, 合作: 1}
      energy:
        min_score: 2
        terms: [新能源, 风电, 光伏, 储能, 氢能, 生物质能]
"""


@pytest.fixture(scope="module")
def topics() -> TopicSet:
    """Return the shipped topics."""
    return load_topics()


def _biomed(topics: TopicSet, title: str, text: str) -> TopicMatch | None:
    """Return the biomed_coop match of a post, or None."""
    return next((m for m in topics.classify(title, text) if m.name == "biomed_coop"), None)


def test_devset_is_large_and_hard() -> None:
    assert len(POSTS) >= 155
    assert len(SEEDS) == 5
    hard = [p for p in POSTS.values() if p.kind in HARD_NEGATIVE_KINDS]
    assert len(hard) / len(POSTS) >= 0.4
    assert {p.script for p in POSTS.values()} >= {"simplified", "traditional", "pinyin"}


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.id)
def test_every_seed_matches_with_explanation(topics: TopicSet, seed: DevPost) -> None:
    match = _biomed(topics, seed.title, seed.text)
    assert match is not None
    assert match.score >= topics.spec.topics["biomed_coop"].threshold
    assert match.matched["cooperation"] and match.matched["biomed"]
    # Evidence is a sentence of the original text, not of its normalised form.
    assert match.evidence.rstrip("…").lstrip("…")[:20] in " ".join(seed.text.split())


@pytest.mark.parametrize(
    "post_id", ["b001", "b002", "b008", "b009", "c001", "c004", "c021", "l001", "l002", "n003"]
)
def test_hard_negatives_do_not_match(topics: TopicSet, post_id: str) -> None:
    post = POSTS[post_id]
    assert post.label is False
    assert _biomed(topics, post.title, post.text) is None


def test_devset_precision_and_recall_reach_the_aim(topics: TopicSet) -> None:
    report = evaluate(topics, POSTS.values())
    assert report.precision >= 0.95, [o.post.id for o in report.wrong]
    assert report.recall >= 0.95, [o.post.id for o in report.wrong]
    assert not report.seeds_missed


def test_scripts_score_alike(topics: TopicSet) -> None:
    kaiping = POSTS["seed_kaiping"]
    s2t = OpenCC("s2t")
    simplified = (normalize_text(kaiping.title), normalize_text(kaiping.text))
    traditional = (s2t.convert(simplified[0]), s2t.convert(simplified[1]))
    scores = [
        _biomed(topics, title, text)
        for title, text in [(kaiping.title, kaiping.text), simplified, traditional]
    ]
    assert all(m is not None for m in scores)
    assert max(m.score for m in scores if m) - min(m.score for m in scores if m) < 0.5
    assert len({json.dumps(m.matched, sort_keys=True) for m in scores if m}) == 1


def test_fast_normalize_equals_crawler_normalize() -> None:
    for tricky in ["一目瞭然", "沈默是金", "答覆如下", "網(wǎng)站", "ＰｏｌｙＵ　與中山"]:
        assert normalize(tricky) == normalize_text(tricky)
    for post in POSTS.values():
        for line in post.text.splitlines()[:40]:
            assert normalize(line) == normalize_text(line)


def test_one_search_of_the_joined_sentences_finds_what_a_search_per_sentence_finds(
    topics: TopicSet,
) -> None:
    found = Counter()
    for post in POSTS.values():
        norms = [sentence.norm for sentence in topics.sentences(post.title, post.text)]
        joined = "\n".join(norms)
        for topic in topics.topics:
            for terms in topic.groups.values():
                assert terms.joinable
                result = terms.anywhere(norms, joined)
                assert result == terms.anywhere(norms), (post.id, topic.name)
                found[result] += 1
    assert found[True] > 50 and found[False] > 50  # both answers were checked
    # A term holding a newline is looked for sentence by sentence: never across two.
    across = _compile_terms({"生物\n醫藥": 1.0}, {}, {})
    assert not across.joinable
    assert not across.anywhere(["生物", "醫藥"], "生物\n醫藥")


def test_term_inside_unrelated_word_does_not_match(topics: TopicSet) -> None:
    seg = segmenter()
    text = "我县与某企业签订生物质能发电项目协议，成立农民专业合作社。"
    norm = normalize(text)
    start = norm.index("合作")
    assert not seg.is_word(norm, start, start + 2)  # 合作社 is no 合作
    start = norm.index("生物")
    assert not seg.is_word(norm, start, start + 2)  # 生物质能 is no 生物
    head = "市人民医院与大学签约。"
    assert seg.is_word(head, head.index("医院"), head.index("医院") + 2)  # 人民医院 is a 医院
    user = load_topics(_write(NEW_ENERGY))
    energy = user.classify("我县签约生物质能项目", "我县与某企业签订生物质能发电合作协议。")
    assert energy and energy[0].matched["energy"] == ["生物质能"]


def test_user_file_adds_a_topic_without_code(tmp_path: Path) -> None:
    topics = load_topics(_write(NEW_ENERGY, tmp_path))
    assert topics.names == ["biomed_coop", "new_energy_coop"]
    post = POSTS["c003"]
    names = [m.name for m in topics.classify(post.title, post.text)]
    assert names == ["new_energy_coop"]
    seed = POSTS["seed_zhongshan"]
    assert [m.name for m in topics.classify(seed.title, seed.text)] == ["biomed_coop"]


def test_user_file_overrides_and_disables(tmp_path: Path) -> None:
    override = "topics:\n  biomed_coop:\n    threshold: 1000\n"
    topics = load_topics(_write(override, tmp_path))
    assert topics.spec.topics["biomed_coop"].groups["biomed"].terms["生物医药"] == 3
    seed = POSTS["seed_zhongshan"]
    assert topics.classify(seed.title, seed.text) == []
    assert load_topics(_write("topics:\n  biomed_coop: {enabled: false}\n", tmp_path)).names == []
    extra = "topics:\n  biomed_coop:\n    groups:\n      biomed:\n        terms: [类器官]\n"
    merged = load_topics(_write(extra, tmp_path)).spec.topics["biomed_coop"]
    assert (
        merged.groups["biomed"].terms["类器官"] == 1 and "生物医药" in merged.groups["biomed"].terms
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            (
                "topics:\n  x:\n    threshold: 1\n    groups:\n      g:\n        patterns:\n"
                "          bad: {regex: '签(署'}\n"
            ),
            [".yaml:7:", "patterns.bad.regex", "bad regex"],
        ),
        (
            "topics:\n  x:\n    threshold: high\n    groups: {g: {terms: [a]}}\n",
            [".yaml:3:", "topics.x.threshold"],
        ),
        (
            "topics:\n  x:\n    threshold: 1\n    colour: red\n    groups: {g: {terms: [a]}}\n",
            [".yaml:4:", "topics.x.colour", "Extra inputs"],
        ),
        (
            "topics:\n  x:\n    threshold: 1\n    require: [nope]\n    groups: {g: {terms: [a]}}\n",
            ["topics.x", "unknown group 'nope'"],
        ),
        ("topics: [\n", ["YAML syntax error"]),
    ],
)
def test_bad_topic_files_give_clear_errors(
    tmp_path: Path, content: str, expected: list[str]
) -> None:
    path = _write(content, tmp_path)
    with pytest.raises(TopicsFileError) as error:
        load_topics(path)
    message = str(error.value)
    assert str(path) in message
    for part in expected:
        assert part in message
    assert isinstance(error.value, ValueError)


def test_classify_jsonl_round_trip(topics: TopicSet) -> None:
    posts = [POSTS["seed_zhongshan"], POSTS["n001"]]
    lines = [
        json.dumps({"id": p.id, "title": p.title, "text": p.text}, ensure_ascii=False)
        for p in posts
    ]
    out = [json.loads(line) for line in classify_jsonl(["", *lines], topics)]
    assert [o["id"] for o in out] == ["seed_zhongshan", "n001"]
    assert set(out[0]) == {"id", "topics", "parties"}
    assert set(out[0]["topics"][0]) == {"name", "score", "matched", "evidence"}
    assert out[0]["topics"][0]["name"] == "biomed_coop"
    assert out[1]["topics"] == []
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        list(classify_jsonl([lines[0], "{not json"], topics))
    with pytest.raises(ValueError, match="line 1: missing 'id'"):
        list(classify_jsonl(['{"title": "x"}'], topics))


def test_parties_of_the_seeds() -> None:
    zhongshan = POSTS["seed_zhongshan"]
    parties = extract_parties(zhongshan.title, zhongshan.text)
    assert parties[:2] == ["香港理工大学", "中山市人民政府"]
    assert len(parties) <= 6
    chinanews = POSTS["seed_chinanews"]
    assert "上海联影医疗科技股份有限公司" in extract_parties(chinanews.title, chinanews.text)
    kaiping = POSTS["seed_kaiping"]
    assert "开平市科工商务局" in extract_parties(kaiping.title, kaiping.text)
    assert extract_parties("关于2025年元旦放假安排的通知", "1月1日放假1天。") == []


def test_canonical_names() -> None:
    assert canonical_name("中山市政府") == "中山市人民政府"
    assert canonical_name("港理工") == "香港理工大学"
    assert canonical_name("PolyU") == "香港理工大学"
    assert canonical_name("中科院苏州医工所") == "中国科学院苏州生物医学工程技术研究所"


def test_classify_is_fast(topics: TopicSet) -> None:
    seed = POSTS["seed_zhongshan"]  # about 2,900 characters
    topics.classify(seed.title, seed.text)
    started = time.perf_counter()
    for _ in range(10):
        topics.classify(seed.title, seed.text)
    assert (time.perf_counter() - started) / 10 < 0.05  # aim: well under 20 ms


_counter = iter(range(1_000_000))


def _write(content: str, folder: Path | None = None) -> Path:
    """Return the path of a new YAML file holding `content`."""
    import tempfile

    folder = folder or Path(tempfile.mkdtemp())
    path = folder / f"topics_{next(_counter)}.yaml"
    path.write_text(content, encoding="utf-8")
    return path
