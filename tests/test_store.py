"""Storing articles: new, unchanged and changed (a new version with a diff), one identity per URL."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import func, select

from crawler.items import ArticleItem
from crawler.models import Article, ArticleVersion
from crawler.store import store_article
from crawler.urls import canonical_url
from tests.world import with_source

ITEM = ArticleItem(
    source_id="kaiping",
    url="http://www.kaiping.gov.cn/kpskgsj/zwgk/dwdt/content/post_3212345.html",
    title="江門市“邑科匯”科技成果對接會(生物醫(yī)藥領域)在開平舉辦",
    body="為推進科技成果轉移轉化進程，近日舉辦對接會。\n本次活動聚焦生物醫(yī)藥。",
    published_at="2024-11-05T17:11:06+08:00",
    source_name="本網",
    fetched_at="2026-11-22T04:00:00+00:00",
)


def test_new_unchanged_changed(database_url: str) -> None:
    sessions = with_source(database_url)
    with sessions.begin() as session:
        first = store_article(session, ITEM, baseline=False)
    with sessions.begin() as session:
        again = store_article(
            session, replace(ITEM, fetched_at="2026-11-22T05:00:00+00:00"), baseline=False
        )
    edited = replace(
        ITEM, body=ITEM.body + "\n達成初步合作意向7項。", fetched_at="2026-11-22T06:00:00+00:00"
    )
    with sessions.begin() as session:
        changed = store_article(session, edited, baseline=False)

    assert (first.outcome, again.outcome, changed.outcome) == ("new", "unchanged", "changed")
    assert again.version_id is None
    with sessions() as session:
        article = session.scalars(select(Article)).one()
        versions = session.scalars(select(ArticleVersion).order_by(ArticleVersion.version_no)).all()
        assert [v.version_no for v in versions] == [1, 2]
        assert versions[0].diff is None
        assert "+達成初步合作意向7項。" in (versions[1].diff or "")
        assert article.published_at.isoformat() == "2024-11-05T09:11:06+00:00"
        assert article.last_seen_at.hour == 6


def test_link_variants_are_one_article(database_url: str) -> None:
    sessions = with_source(database_url)
    variants = [
        ITEM.url,
        ITEM.url.replace("http://", "https://") + "?utm_source=wechat",
        ITEM.url + "#top",
    ]
    assert len({canonical_url(v) for v in variants}) == 1
    for url in variants:
        with sessions.begin() as session:
            store_article(session, replace(ITEM, url=url), baseline=False)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Article)) == 1
        assert session.scalar(select(func.count()).select_from(ArticleVersion)) == 1


def test_pinyin_annotation_only_change_is_not_a_new_version(sqlite_url: str) -> None:
    sessions = with_source(sqlite_url)
    with sessions.begin() as session:
        store_article(session, ITEM, baseline=True)
    stripped = replace(ITEM, body=ITEM.body.replace("(yī)", ""))
    with sessions.begin() as session:
        result = store_article(session, stripped, baseline=False)
    assert result.outcome == "unchanged"
    with sessions() as session:
        assert session.scalars(select(ArticleVersion)).one().baseline is True


def test_sqlite_timestamps_are_written_as_sqlalchemy_writes_them(sqlite_url: str) -> None:
    """The faster SQLite writer of UTCDateTime stores the text SQLAlchemy's own would."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import create_engine, text
    from sqlalchemy.dialects import sqlite

    from crawler.models import UTCDateTime

    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    reference = sqlite.DATETIME().bind_processor(dialect)
    cst = timezone(timedelta(hours=8))
    moments = [
        datetime(2026, 11, 22, 4, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 12, 0, 0, 7, tzinfo=cst),
        datetime(999, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=cst),
    ]
    for moment in moments:
        utc = moment.astimezone(UTC)
        assert ours is not None and reference is not None
        assert ours(utc) == reference(utc), moment
    # Through a real table: stored as before, read back equal and aware, compared in SQL.
    sessions = with_source(sqlite_url)
    with sessions.begin() as session:
        for number, moment in enumerate(moments[:2] + moments[3:]):
            session.add(
                Article(
                    source_id="kaiping",
                    canonical_url=f"www.kaiping.gov.cn/{number}",
                    url=f"http://www.kaiping.gov.cn/{number}",
                    title="标题",
                    content_hash="0" * 64,
                    first_seen_at=moment,
                    last_seen_at=moment,
                    checks=0,
                )
            )
    engine = create_engine(sqlite_url)
    with engine.connect() as connection:
        raw = connection.execute(text("select first_seen_at from articles order by id")).all()
    engine.dispose()
    assert [row[0] for row in raw] == [
        "2026-11-22 04:00:00.000000",
        "2026-11-22 04:00:00.000007",
        "2024-02-29 15:59:59.999999",
    ]
    with sessions() as session:
        read = session.scalars(select(Article.first_seen_at).order_by(Article.id)).all()
        assert read == [moments[0], moments[1], moments[3]]
        assert all(value.tzinfo is not None for value in read)
        later = session.scalars(
            select(Article.canonical_url)
            .where(Article.first_seen_at > moments[0])
            .order_by(Article.id)
        ).all()
        assert later == ["www.kaiping.gov.cn/1"]  # seven microseconds later
