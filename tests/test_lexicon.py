"""jieba's dictionary from our cache (monitor/lexicon.py): the same words, counts and tags as
jieba's own load, rebuilt when missing, stale or damaged, and never required."""

from __future__ import annotations

import logging
from pathlib import Path

import jieba
import pytest

from monitor import lexicon


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "govmonitor"


def jiebas_own(dictionary: Path | None = None) -> jieba.Tokenizer:
    tokenizer = jieba.Tokenizer(str(dictionary)) if dictionary else jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def small_dictionary(path: Path, extra: str = "") -> Path:
    path.write_text(
        "香港大学 500 nt\n深圳市 800 ns\n生物医药 300 n\n合作 900 v\n张三 20 nr\n" + extra,
        encoding="utf-8",
    )
    return path


def test_the_cache_holds_what_jieba_loads(cache_home: Path) -> None:
    first = jieba.Tokenizer()
    built = lexicon.load(first)  # no cache yet: jieba loads, the cache is written
    assert list(cache_home.glob("*.lexicon")) == [lexicon.cache_file(first)]
    second = jieba.Tokenizer()
    cached = lexicon.load(second)
    own = jiebas_own()
    assert cached.freq == own.FREQ and cached.total == own.total == built.total
    assert second.initialized and second.FREQ is cached.freq
    # One int object per distinct count (a fresh one per word would cost 8 MB more).
    assert len({id(count) for count in cached.freq.values()}) == len(set(cached.freq.values()))
    assert cached.proper == built.proper
    assert {"深圳市", "香港大学", "中国科学院"} <= cached.proper and "合作" not in cached.proper
    # The tokenizer cuts as jieba's own does.
    text = "香港大学与深圳市合作共建生物医药研究院"
    assert list(second.cut(text, HMM=False)) == list(own.cut(text, HMM=False))


def test_a_changed_dictionary_gets_a_new_cache(cache_home: Path, tmp_path: Path) -> None:
    path = small_dictionary(tmp_path / "dict.txt")
    first = lexicon.load(jieba.Tokenizer(str(path)))
    assert first.proper == {"香港大学", "深圳市", "张三"}
    assert first.freq["香港大学"] == 500 and first.freq["香港"] == 0
    small_dictionary(path, "医疗器械 40 nz\n")
    tokenizer = jieba.Tokenizer(str(path))
    second = lexicon.load(tokenizer)
    assert second.freq == jiebas_own(path).FREQ and "医疗器械" in second.proper
    assert len(list(cache_home.glob("*.lexicon"))) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"something else\n" + data,  # not ours
        lambda data: data.replace(b'"total"', b'"tota1"', 1),  # a bad head
        lambda data: data[:-3] + b"\xff\xfe\xfd",  # not UTF-8
    ],
)
def test_a_damaged_cache_is_rebuilt(
    cache_home: Path, tmp_path: Path, damage, caplog: pytest.LogCaptureFixture
) -> None:
    path = small_dictionary(tmp_path / "dict.txt")
    lexicon.load(jieba.Tokenizer(str(path)))
    (cache,) = cache_home.glob("*.lexicon")
    cache.write_bytes(damage(cache.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="monitor.lexicon"):
        again = lexicon.load(jieba.Tokenizer(str(path)))
    assert again.freq == jiebas_own(path).FREQ and again.proper == {"香港大学", "深圳市", "张三"}
    assert "unreadable" in caplog.text and str(cache) in caplog.text
    written = lexicon.read(cache)  # written anew
    assert written is not None and written.freq == again.freq and written.proper == again.proper


def test_an_unwritable_cache_folder_only_costs_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    path = small_dictionary(tmp_path / "dict.txt")
    with caplog.at_level(logging.WARNING, logger="monitor.lexicon"):
        loaded = lexicon.load(jieba.Tokenizer(str(path)))
    assert loaded.freq == jiebas_own(path).FREQ
    assert "cannot cache jieba's dictionary" in caplog.text
