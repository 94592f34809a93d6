"""The link policy: only http(s) links on a source's own domains; no private or loopback hosts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from scrapy.settings import Settings
from scrapy.statscollectors import MemoryStatsCollector
from scrapy.utils.project import get_project_settings
from sqlalchemy import create_engine, text

from crawler.linkpolicy import LinkPolicy, allowed_links
from crawler.pages.model import ListEntry, ListPage
from crawler.seeds import parse_seed_text
from tests.hostile_server import HostileServer, Trap
from tests.test_hostile_responses import crawl_env, run_crawl

DOMAINS = ["www.kaiping.gov.cn", "static.gd.gov.cn"]
POLICY = LinkPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_1.html",
        "https://www.kaiping.gov.cn:8443/a.html",
        "http://m.www.kaiping.gov.cn/a.html",  # a sub-domain of the source's host
        "http://static.gd.gov.cn/file.html",  # the source file's allowed_domains
        "HTTP://WWW.KAIPING.GOV.CN./a.html",
    ],
)
def test_links_on_the_sources_domains_are_followed(url: str) -> None:
    assert POLICY.refusal(url, DOMAINS) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://evil.example.com/post_1.html", "off-site link to evil.example.com"),
        ("http://kaiping.gov.cn/a.html", "off-site"),  # the parent domain is another site
        ("http://www.kaiping.gov.cn.evil.com/a.html", "off-site"),
        ("http://www.kaiping.gov.cn@evil.com/a.html", "user name or password"),
        ("http://user:pw@www.kaiping.gov.cn/a.html", "user name or password"),
        ("file:///etc/passwd", "file: links are never followed"),
        ("javascript:alert(1)", "javascript: links are never followed"),
        ("data:text/html,<script>alert(1)</script>", "data: links"),
        ("ftp://www.kaiping.gov.cn/a.txt", "ftp: links"),
        ("//www.kaiping.gov.cn/a.html", "scheme-less"),
        ("http://127.0.0.1/a.html", "loopback address 127.0.0.1:80"),
        ("http://127.0.0.2:8800/a.html", "loopback address"),
        ("http://10.0.0.1/a.html", "private address 10.0.0.1:80"),
        ("http://172.16.5.4/a.html", "private address"),
        ("http://192.168.1.1/a.html", "private address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local address"),
        ("http://0.0.0.0:8080/", "address"),
        ("http://[::1]:8080/", "loopback address [::1]:8080"),
        ("http://[fd00::1]/", "private address"),
        ("http://[::ffff:127.0.0.1]/", "refused"),
        ("http://2130706433/", "non-standard form refused (2130706433 means 127.0.0.1)"),
        ("http://0x7f000001/", "non-standard form"),
        ("http://0177.0.0.1/", "non-standard form"),
        ("http://127.1/", "non-standard form"),
        ("http://localhost:8800/", "loopback host localhost:8800"),
        ("http://admin.localhost/", "loopback host"),
        ("http://8.8.8.8/a.html", "off-site link to 8.8.8.8"),
        ("http://[::1/", "unparsable URL"),
    ],
)
def test_other_links_are_refused_with_a_reason(url: str, words: str) -> None:
    reason = POLICY.refusal(url, DOMAINS)
    assert reason is not None and words in reason, reason


REMEMBERED = [
    "http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_1.html",
    "http://www.kaiping.gov.cn/a@evil.com/b.html",  # "@" in the path, not the host
    "http://www.kaiping.gov.cn/a b\tc.html",
    "http://www.kaiping.gov.cn/" + "a" * 2100,  # an allowed host, but too long
    "http://www.kaiping.gov.cn@evil.com/a.html",
    "http://www.kaiping.gov.cn?x=/a.html",
    "http://www.kaiping.gov.cn\\@evil.com/a.html",
    " http://www.kaiping.gov.cn/a.html",
    "HTTP://WWW.KAIPING.GOV.CN./a.html",
    "https://www.kaiping.gov.cn:8443/a.html",
    "https://www.kaiping.gov.cn:99999/a.html",
    "http://static.gd.gov.cn/file.html",
    "http://evil.example.com/post_1.html",
    "http://127.0.0.1:8800/kaiping/a.html",
    "http://127.0.0.1:8801/kaiping/a.html",
    "http://[::1]:8080/",
    "javascript:alert(1)",
]


def test_a_policy_remembering_allowed_hosts_answers_as_a_new_one_would() -> None:
    """Answers do not depend on what the policy saw before, for any source's domains."""
    remembering = LinkPolicy(frozenset({"127.0.0.1:8800"}))
    sources = [DOMAINS, ["static.gd.gov.cn"], ["127.0.0.1"], None]
    for _ in range(2):
        for domains in sources:
            for url in REMEMBERED:
                fresh = LinkPolicy(frozenset({"127.0.0.1:8800"})).refusal(url, domains)
                assert remembering.refusal(url, domains) == fresh, (url, domains)
    # Remembered, an allowed host answers for its other URLs, on the source that allowed it.
    assert remembering.refusal("http://static.gd.gov.cn/other.html", ["static.gd.gov.cn"]) is None
    assert "off-site" in (remembering.refusal("http://static.gd.gov.cn/x.html", DOMAINS[:1]) or "")


def test_private_hosts_need_an_explicit_allowance_by_host_or_host_and_port() -> None:
    by_port = LinkPolicy(frozenset({"127.0.0.1:8800"}))
    assert by_port.refusal("http://127.0.0.1:8800/kaiping/a.html", ["127.0.0.1"]) is None
    assert "loopback" in (by_port.refusal("http://127.0.0.1:9/a.html", ["127.0.0.1"]) or "")
    by_host = LinkPolicy(frozenset({"10.1.2.3"}))
    assert by_host.refusal("http://10.1.2.3:8080/a.html", ["10.1.2.3"]) is None
    # An allowance lifts the private-address rule only; the link must still be on the source.
    assert "off-site" in (by_host.refusal("http://10.1.2.3/a.html", DOMAINS) or "")
    # A public IP address that is the source's own host is fine.
    assert POLICY.refusal("http://59.37.1.2/list.html", ["59.37.1.2"]) is None


def test_host_names_resolving_to_private_addresses_are_refused() -> None:
    assert "resolves to loopback address 127.0.0.1" in (
        POLICY.resolved_refusal("www.kaiping.gov.cn", 80, "127.0.0.1") or ""
    )
    assert "private address 10.9.8.7" in (POLICY.resolved_refusal("a.gov.cn", 80, "10.9.8.7") or "")
    assert POLICY.resolved_refusal("a.gov.cn", 80, "59.37.1.2") is None
    allowed = LinkPolicy(frozenset({"intranet.gov.cn"}))
    assert allowed.resolved_refusal("intranet.gov.cn", 80, "10.9.8.7") is None


def test_no_private_host_is_allowed_by_default_and_a_replay_allows_only_itself() -> None:
    assert get_project_settings().getlist("ALLOW_PRIVATE_HOSTS") == []
    assert LinkPolicy.from_settings(Settings()).private_allowed == frozenset()
    replay = LinkPolicy.from_settings(Settings({"REPLAY_URL": "http://127.0.0.1:8800/"}))
    assert replay.private_allowed == frozenset({"127.0.0.1:8800"})
    assert replay.refusal("http://127.0.0.1:8800/kaiping/a.html", ["127.0.0.1"]) is None
    assert replay.refusal("http://127.0.0.1:5432/", ["127.0.0.1"]) is not None


def test_urls_over_the_length_limit_are_refused_in_place_of_scrapys_middleware() -> None:
    base = "http://www.kaiping.gov.cn/"
    longest = base + "a" * (2083 - len(base))
    assert POLICY.refusal(longest, ["kaiping.gov.cn"]) is None
    assert "longer than 2083" in (POLICY.refusal(longest + "a", ["kaiping.gov.cn"]) or "")
    short_limit = LinkPolicy.from_settings(Settings({"URLLENGTH_LIMIT": 40}))
    assert short_limit.refusal(base + "post_1.html", None) is None
    assert short_limit.refusal(base + "content/post_123456789.html", None) is not None
    assert (
        LinkPolicy.from_settings(Settings({"URLLENGTH_LIMIT": 0})).refusal(longest * 2, None)
        is None
    )
    # The project turns Scrapy's UrlLengthMiddleware off: the policy is where the limit lives.
    middlewares = get_project_settings().getdict("SPIDER_MIDDLEWARES")
    assert middlewares["scrapy.spidermiddlewares.urllength.UrlLengthMiddleware"] is None


class _Crawler:
    """The part of a Scrapy crawler that allowed_links uses."""

    def __init__(self, **settings: object) -> None:
        self.settings = Settings(settings)
        self.stats = MemoryStatsCollector(self)  # type: ignore[arg-type]


def test_allowed_links_filters_posts_and_next_pages_and_caps_the_count(tmp_path: Path) -> None:
    seed = parse_seed_text(
        "id: kaiping\nname: x\nbase_url: http://www.kaiping.gov.cn\n"
        "list_urls: [http://www.kaiping.gov.cn/list.html]\narticle_pattern: post_\n",
        tmp_path / "kaiping.yaml",
    )
    entries = [ListEntry(f"http://www.kaiping.gov.cn/post_{n}.html") for n in range(5)]
    entries += [ListEntry("http://10.0.0.1/post_9.html"), ListEntry("http://evil.com/post_8.html")]
    page = ListPage(
        "http://www.kaiping.gov.cn/list.html",
        entries,
        ["http://www.kaiping.gov.cn/list_2.html", "http://127.0.0.1:6379/list_3.html"],
    )
    crawler = _Crawler(LIST_MAX_POSTS=3)
    kept = allowed_links(page, seed, crawler)
    assert [e.url for e in kept.entries] == [e.url for e in entries[:3]]
    assert kept.next_pages == ["http://www.kaiping.gov.cn/list_2.html"]
    assert crawler.stats.get_value("source/kaiping/links_refused") == 3
    assert crawler.stats.get_value("source/kaiping/links_over_limit") == 2


def _loopback_hostname() -> str | None:
    """Return this machine's host name when it resolves to a loopback address, else None."""
    name = socket.gethostname()
    try:
        return name if socket.gethostbyname(name).startswith("127.") else None
    except OSError:
        return None


def test_a_crawl_reaches_a_loopback_host_only_when_a_setting_allows_it(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    with Trap() as trap, HostileServer(trap_port=trap.port) as server:
        sites = {"allowed": server.url, "trapped": f"http://127.0.0.1:{trap.port}"}
        hostname = _loopback_hostname()
        if hostname is not None:
            sites["named"] = f"http://{hostname}:{trap.port}"
        for name, base in sites.items():
            (seeds / f"{name}.yaml").write_text(
                f"name: {name}\nbase_url: {base}\nlist_urls: [{base}/good/list.html]\n"
                "article_pattern: /content/post_\\d+\\.html$\n",
                encoding="utf-8",
            )
        env = crawl_env(tmp_path, seeds)
        done = run_crawl(env, list(sites), f"ALLOW_PRIVATE_HOSTS=127.0.0.1:{server.port}")
        assert done.returncode == 0, done.stderr[-3000:]
        engine = create_engine(env["DATABASE_URL"])
        with engine.connect() as conn:
            runs = dict(conn.execute(text("select source_id, error from crawl_runs")).all())
            statuses = dict(conn.execute(text("select source_id, status from crawl_runs")).all())
        engine.dispose()
    assert statuses["allowed"] == "ok" and runs["allowed"] is None
    assert statuses["trapped"] == "failed"
    assert runs["trapped"].startswith(f"link policy: loopback address 127.0.0.1:{trap.port}")
    if hostname is not None:
        assert f"host {hostname} resolves to loopback address 127.0.0.1" in runs["named"]
    assert trap.connections == []


def test_the_middleware_checks_every_url_but_the_one_its_list_page_allowed(
    tmp_path: Path,
) -> None:
    import asyncio
    from types import SimpleNamespace

    from scrapy import Request

    from crawler.linkpolicy import CHECKED_KEY
    from crawler.middlewares import LinkPolicyMiddleware, LinkRefused

    seed = parse_seed_text(
        "id: local\nname: x\nbase_url: http://127.0.0.1:8800\n"
        "list_urls: [http://127.0.0.1:8800/list.html]\narticle_pattern: post_\n",
        tmp_path / "local.yaml",
    )
    checked: list[str] = []

    class Counting(LinkPolicy):
        def refusal(self, url: str, domains: object) -> str | None:
            checked.append(url)
            return super().refusal(url, domains)  # type: ignore[arg-type]

    crawler = _Crawler()
    crawler.spider = SimpleNamespace(seeds={"local": seed})  # type: ignore[attr-defined]
    middleware = LinkPolicyMiddleware(
        crawler,  # type: ignore[arg-type]
        Counting(frozenset({"127.0.0.1:8800"})),
    )
    post = "http://127.0.0.1:8800/post_1.html"

    def through(request: Request) -> None:
        asyncio.run(middleware.process_request(request))

    through(Request(post, meta={"source_id": "local", CHECKED_KEY: post}))
    assert checked == []  # allowed on its list page: not checked again
    through(Request(post, meta={"source_id": "local"}))
    assert checked == [post]  # a request from anywhere else is
    # A request that no longer has the URL its list allowed (a redirect copies the meta).
    moved = Request(post, meta={"source_id": "local", CHECKED_KEY: post}).replace(
        url="http://10.0.0.1/post_1.html"
    )
    with pytest.raises(LinkRefused, match="10.0.0.1"):
        through(moved)
    assert checked == [post, "http://10.0.0.1/post_1.html"]
    assert crawler.stats.get_value("source/local/requests_refused") == 1
