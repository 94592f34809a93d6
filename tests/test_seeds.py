"""Source files: the shipped ones are valid; bad ones fail with file, line and field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config import PROJECT_ROOT
from crawler.seeds import SeedFileError, effective_seed, load_seed, load_seeds, parse_seed_text

GOOD = """\
id: demo
name: 示例栏目
base_url: http://www.example.gov.cn
list_urls:
  - http://www.example.gov.cn/news/index.html
article_pattern: /news/content/post_\\d+\\.html$
schedule:
  every: 15m
"""


def test_shipped_seed_files_are_valid() -> None:
    seeds, errors = load_seeds(PROJECT_ROOT / "seeds")
    assert errors == []
    assert "kaiping" in seeds
    assert seeds["kaiping"].base_url == "http://www.kaiping.gov.cn"


def test_good_seed_parses_with_defaults(tmp_path: Path) -> None:
    seed = parse_seed_text(GOOD, tmp_path / "demo.yaml")
    assert seed.schedule.interval().total_seconds() == 900
    assert seed.extractor == "generic"
    assert seed.domains() == ["www.example.gov.cn"]


@pytest.mark.parametrize(
    ("change", "field", "line", "words"),
    [
        (("  every: 15m", "  every: soon"), "schedule.every", 8, "duration"),
        (("  every: 15m", "  cron: '61 * * * *'"), "schedule.cron", 8, "cron"),
        (
            ("article_pattern: /news/content/post_\\d+\\.html$", "article_pattern: (unclosed"),
            "article_pattern",
            6,
            "regular expression",
        ),
        (("name: 示例栏目\n", "name: 示例栏目\nlist_pages: 3\n"), "list_pages", 3, "Extra"),
        (("name: 示例栏目\n", ""), "name", None, "required"),
        (("name: 示例栏目\n", "name: 示例栏目\nextractor: trss\n"), "extractor", 3, "'trs'"),
        (("name: 示例栏目\n", "name: 示例栏目\nencoding: gbk2312\n"), "encoding", 3, "unknown"),
        (("name: 示例栏目\n", "name: 示例栏目\nencoding: idna\n"), "encoding", 3, "not a page"),
    ],
)
def test_bad_seed_names_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], field: str, line: int | None, words: str
) -> None:
    path = tmp_path / "demo.yaml"
    with pytest.raises(SeedFileError) as info:
        parse_seed_text(GOOD.replace(*change), path)
    error = info.value.errors[0]
    assert error.path == path
    assert error.field == field
    assert error.line == line
    assert words.lower() in error.message.lower()
    assert str(path) in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD + "list_urls: [unclosed\n", encoding="utf-8")
    with pytest.raises(SeedFileError) as info:
        load_seed(path)
    assert info.value.errors[0].line is not None
    assert "YAML error" in str(info.value)


def test_one_bad_file_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("id: broken\nname: [\n", encoding="utf-8")
    seeds, errors = load_seeds(tmp_path)
    assert list(seeds) == ["demo"]
    assert len(errors) == 1 and errors[0].path.name == "broken.yaml"


def test_replay_moves_every_url(tmp_path: Path) -> None:
    seed = parse_seed_text(GOOD, tmp_path / "demo.yaml")
    moved = effective_seed(seed, "http://127.0.0.1:8800/")
    assert moved.base_url == "http://127.0.0.1:8800/demo"
    assert moved.list_urls == ["http://127.0.0.1:8800/demo/news/index.html"]
    assert effective_seed(seed, None) is seed


def test_extractor_kinds_are_the_registered_extractors() -> None:
    from typing import get_args

    from crawler.pages.article import EXTRACTORS
    from crawler.seeds import ExtractorKind

    assert set(get_args(ExtractorKind)) == set(EXTRACTORS)
