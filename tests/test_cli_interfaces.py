"""The stable JSONL interfaces: `monitor extract` and `monitor classify`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from crawler.config import PROJECT_ROOT
from replay.server import ReplayServer
from tests.e2e import monitor_env, run_monitor

CORPUS = PROJECT_ROOT / "tests" / "corpus"
EXTRACT_KEYS = {"path", "title", "published_at", "source", "body", "attachments", "doc_number"}


def test_extract_jsonl_prints_one_object_per_saved_page(tmp_path: Path) -> None:
    cases = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))[:3]
    paths = [str(CORPUS / case["file"]) for case in cases]
    done = run_monitor(["extract", "--jsonl", *paths], monitor_env(tmp_path, "", None))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["path"] for row in rows] == paths
    for row, case in zip(rows, cases, strict=True):
        assert set(row) == EXTRACT_KEYS
        assert row["title"] == case["title"]
        assert row["published_at"] == case["published_at"]
        assert row["body"] == case["body"]


def test_extract_url_fetches_one_page_from_the_replay(tmp_path: Path) -> None:
    with ReplayServer(["kaiping"]) as replay:
        url = replay.seed_url("kaiping")
        done = run_monitor(["extract", url], monitor_env(tmp_path, "", None))
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert set(row) == EXTRACT_KEYS and row["path"] == url
    assert row["published_at"] == "2024-11-05T17:11:06+08:00"
    assert row["body"].startswith("為推進科技成果轉移轉化進程")


def test_classify_jsonl_marks_cooperation_and_leaves_notices(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        "\n".join(
            json.dumps(p, ensure_ascii=False)
            for p in [
                {
                    "id": "a",
                    "title": "香港理工大学与中山市共建技术创新研究院",
                    "text": "香港理工大学与中山市人民政府签署合作协议，共建技术创新研究院，聚焦生物医药，"
                    "推动新药研发和临床试验成果转化。",
                },
                {
                    "id": "b",
                    "title": "关于2024年国庆期间交通管制的通告",
                    "text": "10月1日至7日，中山大道部分路段实行交通管制，请市民绕行。",
                },
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    done = run_monitor(["classify", "--jsonl", str(posts)], monitor_env(tmp_path, "", None))
    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert set(rows["a"]) == {"id", "topics", "parties"}
    (topic,) = rows["a"]["topics"]
    assert set(topic) == {"name", "score", "matched", "evidence"}
    assert topic["name"] == "biomed_coop" and "香港理工大学" in rows["a"]["parties"]
    assert rows["b"]["topics"] == []


def test_classify_names_the_bad_line(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "title": "t", "text": "x"}\n{not json\n', encoding="utf-8")
    done = run_monitor(["classify", "--jsonl", str(posts)], monitor_env(tmp_path, "", None))
    assert done.returncode == 2
    assert "line 2" in done.stderr
