"""Mistyped configuration: errors name file, line and field; `--check` lists them all at once;
a bad source file never stops the daemon from crawling the good ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crawler.config import PROJECT_ROOT
from monitor.topics import load_topics
from monitor.topics_config import TopicsFileError
from tests.e2e import monitor_env, run_monitor
from tests.hostile_server import HostileServer, seed_yaml

GOOD = seed_yaml("good")
# file name: (text, line, field, words in the message)
BAD_SEEDS = {
    "yaml_error": (GOOD + "list_urls: [unclosed\n", 9, "", "YAML error"),
    "unknown_key": (
        GOOD.replace("max_pages: 1\n", "max_pages: 1\nlist_page: 3\n"),
        8,
        "list_page",
        "Extra inputs are not permitted",
    ),
    "bad_regex": (
        GOOD.replace(r"/content/post_\d+\.html$", "(post_[0-9+"),
        6,
        "article_pattern",
        "bad regular expression",
    ),
    "missing_field": (GOOD.replace("name: 恶意站点 good\n", ""), None, "name", "Field required"),
    "bad_cron": (
        GOOD + "schedule:\n  cron: '*/61 * * *'\n",
        9,
        "schedule.cron",
        "bad cron expression",
    ),
}
BAD_TOPICS = {
    "yaml": ("topics:\n  t1: [unclosed\n", 3, "", "YAML syntax error"),
    "unknown_key": (
        "topics:\n  t1:\n    threshold: 1\n    treshold: 2\n    groups: {g: {terms: [医药]}}\n",
        4,
        "topics.t1.treshold",
        "Extra inputs are not permitted",
    ),
    "bad_regex": (
        "topics:\n  t1:\n    threshold: 1\n    groups:\n      g:\n        patterns:\n"
        + "          p: {regex: '(医药'}\n",
        7,
        "topics.t1.groups.g.patterns.p.regex",
        "bad regex",
    ),
    "missing_field": (
        "topics:\n  t1:\n    groups: {g: {terms: [医药]}}\n",
        3,  # where the mapping of t1 starts
        "topics.t1.threshold",
        "Field required",
    ),
}


def _seed_file(text: str, name: str) -> str:
    """Return seed text whose id matches its file name."""
    return text.replace("id: good", f"id: {name}")


@pytest.fixture
def seeds_dir(tmp_path: Path) -> Path:
    """Return a seeds folder with one good source file and one of each kind of mistake."""
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "good.yaml").write_text(GOOD, encoding="utf-8")
    for name, (text, *_rest) in BAD_SEEDS.items():
        (folder / f"{name}.yaml").write_text(_seed_file(text, name), encoding="utf-8")
    return folder


def test_sources_check_reports_every_seed_error_with_file_line_and_field(
    tmp_path: Path, seeds_dir: Path
) -> None:
    env = monitor_env(tmp_path, "http://127.0.0.1:9", None, MONITOR_SEEDS_DIR=str(seeds_dir))
    done = run_monitor(["sources", "--check"], env)
    assert done.returncode == 1
    assert "1 valid, 5 error(s)" in done.stdout
    for name, (_text, line, field, words) in BAD_SEEDS.items():
        where = f"{seeds_dir / name}.yaml" + (f":{line}" if line else "")
        matching = [x for x in done.stderr.splitlines() if x.startswith(where + ":")]
        assert matching, f"{where} not in:\n{done.stderr}"
        assert f": {field}: " in matching[0] if field else True
        assert words in matching[0], matching[0]


@pytest.mark.parametrize("case", sorted(BAD_TOPICS))
def test_topics_file_errors_name_file_line_and_field(tmp_path: Path, case: str) -> None:
    text, line, field, words = BAD_TOPICS[case]
    topics = tmp_path / "topics.yaml"
    topics.write_text(text, encoding="utf-8")
    with pytest.raises(TopicsFileError) as info:
        load_topics(topics)
    expected = f"{topics}:{line}: " + (f"{field}: " if field else "")
    assert str(info.value).startswith(expected) and words in str(info.value), str(info.value)


def test_a_bad_topics_file_stops_the_daemon_at_start_up(tmp_path: Path) -> None:
    topics = tmp_path / "topics.yaml"
    topics.write_text(BAD_TOPICS["bad_regex"][0], encoding="utf-8")
    env = monitor_env(tmp_path, "http://127.0.0.1:9", None, MONITOR_TOPICS_FILE=str(topics))
    done = run_monitor(["run", "--once"], env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"monitor: {topics}:7: topics.t1.groups.g.patterns.p.regex: bad regex" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "logs").exists()  # no crawl was started


def test_sources_check_also_reports_topics_and_channels_errors_at_once(
    tmp_path: Path, seeds_dir: Path
) -> None:
    topics = tmp_path / "topics.yaml"
    topics.write_text(BAD_TOPICS["bad_regex"][0], encoding="utf-8")
    channels = tmp_path / "channels.yaml"
    channels.write_text("channels:\n  hook:\n    kind: webhook\n    ur1: http://x\n", "utf-8")
    env = monitor_env(
        tmp_path,
        "http://127.0.0.1:9",
        channels,
        MONITOR_SEEDS_DIR=str(seeds_dir),
        MONITOR_TOPICS_FILE=str(topics),
    )
    done = run_monitor(["sources", "--check"], env)
    assert done.returncode == 1
    assert f"{topics}:7: topics.t1.groups.g.patterns.p.regex: bad regex" in done.stderr
    assert re.search(rf"{re.escape(str(channels))}:4: channels\.hook\.ur1: Extra", done.stderr)
    assert len([x for x in done.stderr.splitlines() if str(seeds_dir) in x]) == 5


def test_shipped_configuration_checks_clean(tmp_path: Path) -> None:
    env = monitor_env(tmp_path, "http://127.0.0.1:9", None)
    env["MONITOR_SEEDS_DIR"] = str(PROJECT_ROOT / "seeds")
    done = run_monitor(["sources", "--check"], env)
    assert done.returncode == 0, done.stderr
    assert "0 error(s)" in done.stdout


def test_bad_source_files_never_stop_the_daemon_running_the_good_ones(
    tmp_path: Path, seeds_dir: Path
) -> None:
    with HostileServer() as server:
        env = monitor_env(tmp_path, server.url, None, MONITOR_SEEDS_DIR=str(seeds_dir))
        done = run_monitor(["run", "--once"], env)
        assert "/good/content/post_2.html" in server.requests
    assert done.returncode == 0, done.stderr[-3000:]
    skipped = [x for x in done.stderr.splitlines() if "source file skipped" in x]
    assert len(skipped) == 5
    assert any(f"{seeds_dir / 'bad_cron.yaml'}:9: schedule.cron: " in x for x in skipped)
    assert "source good: 2 posts, 2 new" in done.stderr
