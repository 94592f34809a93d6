"""Every seed post, crawled from its site's replay by `scrapy crawl`: every field right, no boilerplate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.config import PROJECT_ROOT
from replay.server import ReplayServer
from tests.e2e import monitor_env

# id: (title, published_at, source, first body words, last body words)
SEEDS = {
    "zhongshan": (
        "香港理工大学与中山市携手共建技术创新研究院,助力生物医药产业腾飞",
        "2024-12-18T16:05:00+08:00",
        "中山市科学技术局",
        "引言: 在科技创新浪潮席卷全球的今天",
        "并为人民群众的健康福祉做出更大的贡献。",
    ),
    "kaiping": (
        "江門市“邑科匯”科技成果對接會(生物醫(yī)藥領域)在開平舉辦",
        "2024-11-05T17:11:06+08:00",
        "本網(wǎng)",
        "為推進科技成果轉移轉化進程",
        "帶動生物醫(yī)藥產(chǎn)業(yè)價值鏈向高端邁進。",
    ),
    "chinanews": (
        "沪港携手推动科研合作、促进成果转化、开展医疗创新",
        "2025-05-28T16:21:57+08:00",
        "中国新闻网",
        "中新网上海5月28日电 (记者 陈静)",
        "促进提升国内的影像诊疗技术。(完)",
    ),
    "liangjiang": (
        None,
        "2021-06-09T19:12:00+08:00",
        "兩江新區(qū)",
        "6月9日\n2021中科院先進醫(yī)療器械產(chǎn)業(yè)",
        "部分資料來源:重慶日報 重慶兩江新區(qū)",
    ),
    "sznews": (
        "15万平米空间,18个科研项目签约!河套深港科技创新合作区科创园区开园",
        "2021-10-14T18:36:00+08:00",
        "深圳新闻网",
        "河套深港科技创新合作区科创园区开园暨项目签约入驻活动顺利举行",
        "打造原始创新策源地。",
    ),
}
BOILERPLATE = [
    "打印",
    "字體",
    "字体",
    "您當前的位置",
    "当前位置",
    "上一篇",
    "下一篇",
    "相关推荐",
    "相關推薦",
    "相关内容",
    "热门资讯",
    "版权声明",
    "版權所有",
    "版权所有",
    "ICP",
    "网站标识码",
    "網站標識碼",
    "公网安备",
    "国产精品",
    "人妻",
    "无码",
    "相關附件",
    "联系我们",
    "聯系我們",
    "vivo钱包",
]


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Crawl every replay once (one process) and return each seed post's item by source."""
    tmp = tmp_path_factory.mktemp("seeds")
    out = tmp / "out.jsonl"
    with ReplayServer() as replay:
        env = monitor_env(tmp, replay.url, None)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "scrapy",
                "crawl",
                "sources",
                "-O",
                str(out),
                "-s",
                f"REPLAY_URL={replay.url}",
                "-s",
                "STORE_ENABLED=0",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            check=False,
            text=True,
            timeout=600,
        )
        seed_urls = {sid: replay.seed_url(sid) for sid in SEEDS}
    assert done.returncode == 0, done.stderr[-3000:]
    items = [json.loads(line) for line in Path(out).read_text(encoding="utf-8").splitlines()]
    by_url = {item["url"]: item for item in items}
    return {sid: by_url[url] for sid, url in seed_urls.items() if url in by_url}


@pytest.mark.parametrize("source_id", sorted(SEEDS))
def test_seed_post_fields_and_clean_body(crawled: dict[str, dict], source_id: str) -> None:
    assert source_id in crawled, f"the {source_id} seed post was not crawled"
    item = crawled[source_id]
    title, published_at, source, first, last = SEEDS[source_id]
    if title is not None:
        assert item["title"] == title
    else:
        assert item["title"].startswith("2021中科院先進醫(yī)療器械產(chǎn)業(yè)")
    assert item["published_at"] == published_at
    assert item["source_name"] == source
    assert item["body"].startswith(first)
    assert item["body"].endswith(last)
    for junk in BOILERPLATE:
        assert junk not in item["body"], f"{junk!r} in the {source_id} body"
