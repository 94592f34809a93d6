"""Near-duplicates: a story reposted across sites and scripts alerts once; others stay apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from crawler.db import session_factory
from crawler.normalize import to_simplified
from monitor.channels import build_notifier, load_channels
from monitor.digest import queue_digests
from monitor.dispatcher import dispatch_due
from monitor.stories import SIMILARITY, StoryIndex, from_bytes, signature, to_bytes
from replay.server import ReplayServer
from replay.sinks import WebhookSink
from tests.e2e import monitor_env, run_monitor

STORY_TITLE = "深圳与香港大学共建生物医药联合研究中心"
STORY = [
    (
        "记者20日获悉，深圳市人民政府与香港大学在河套深港科技创新合作区签署合作协议，"
        "共建“港大深圳生物医药联合研究中心”，聚焦创新药物研发、细胞治疗和高端医疗器械。"
    ),
    (
        "根据协议，研究中心将联合开展临床研究，引进香港大学医学院科研团队，"
        "推动科研成果在深圳转化落地，并与区内十余家生物医药企业建立产学研合作。"
    ),
    "双方还将共同培养生物医学领域的博士后和青年科研人员，打造深港生物医药创新高地。",
]
REPOST_TITLE = "深圳與香港大學共建生物醫藥聯合研究中心"
REPOST = [
    "（轉載自中國新聞網）",
    *[p.replace("记者20日获悉，", "") for p in STORY],
]


def _traditional(text_: str) -> str:
    from opencc import OpenCC

    return OpenCC("s2t").convert(text_)


def test_signatures_group_reposts_across_scripts_and_keep_others_apart() -> None:
    original = signature(STORY_TITLE, "\n".join(STORY))
    repost = signature(REPOST_TITLE, _traditional("\n".join(REPOST)))
    other = signature(
        "开平市召开冬季安全生产工作会议", "会议强调要压实安全生产责任，全面排查整治各类隐患。" * 4
    )
    assert original is not None and repost is not None and other is not None
    assert original.jaccard(repost) >= SIMILARITY
    assert original.jaccard(other) < 0.1
    assert from_bytes(to_bytes(original)).jaccard(original) == 1.0
    assert to_simplified(REPOST_TITLE) == STORY_TITLE


def test_index_finds_the_closest_post_only() -> None:
    index = StoryIndex()
    index.add(1, signature(STORY_TITLE, "\n".join(STORY)))
    index.add(2, signature("开平市召开冬季安全生产工作会议", "会议强调要压实安全生产责任。" * 6))
    found = index.most_similar(signature(REPOST_TITLE, "\n".join(REPOST)), exclude=3)
    assert found is not None and found[0] == 1
    assert signature("短", "太短") is None


def test_story_reposted_by_another_site_alerts_once(tmp_path: Path) -> None:
    with (
        ReplayServer(["chinanews", "kaiping"]) as replay,
        WebhookSink() as hook,
        WebhookSink() as daily,
    ):
        channels = tmp_path / "channels.yaml"
        channels.write_text(
            f"channels:\n  hook:\n    kind: webhook\n    url: {hook.url}\n"
            f"  daily:\n    kind: webhook\n    url: {daily.url}\n    mode: digest_daily\n",
            encoding="utf-8",
        )
        env = monitor_env(tmp_path, replay.url, channels)
        args = ["run", "--once", "--sources", "chinanews,kaiping"]
        assert run_monitor(args, env).returncode == 0  # baseline
        replay.publish("chinanews", STORY_TITLE, STORY)
        assert run_monitor(args, env).returncode == 0
        replay.publish("kaiping", REPOST_TITLE, [_traditional(p) for p in REPOST])
        done = run_monitor(args, env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "is a repost of story" in done.stderr
        alerts = hook.wait_for(1)
        # The daily digest lists the story once, with the repost attached to it.
        sessions = session_factory(env["DATABASE_URL"])
        configs = load_channels(channels)
        queue_digests(sessions, configs, "daily")
        dispatch_due(sessions, {name: build_notifier(name, c) for name, c in configs.items()})
        (digest,) = daily.wait_for(1)
    assert len(alerts) == 1 and alerts[0].json["source_id"] == "chinanews"
    (entry,) = digest.json["entries"]
    assert entry["title"] == STORY_TITLE
    assert [(r["source_id"], r["title"]) for r in entry["reposts"]] == [("kaiping", REPOST_TITLE)]
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(
            text("select source_id, story_id from articles where title in (:a, :b)"),
            {"a": STORY_TITLE, "b": REPOST_TITLE},
        ).all()
    engine.dispose()
    assert {source for source, _ in rows} == {"chinanews", "kaiping"}
    assert len({story for _, story in rows}) == 1 and rows[0][1] is not None


def test_rolled_back_posts_leave_the_index() -> None:
    index = StoryIndex()
    index.add(1, signature(STORY_TITLE, "\n".join(STORY)), 10)
    index.begin()
    index.add(2, signature(REPOST_TITLE, "\n".join(REPOST)), 10)
    assert index.most_similar(signature(STORY_TITLE, "\n".join(STORY)), exclude=1)[0] == 2
    index.rollback()
    assert index.most_similar(signature(STORY_TITLE, "\n".join(STORY)), exclude=1) is None
    assert index.story_of(2) is None and index.story_of(1) == 10
    # A post added afterwards takes a row of its own: the first post's signature is intact.
    index.add(
        3, signature("开平市召开冬季安全生产工作会议", "会议强调要压实安全生产责任。" * 6), 11
    )
    assert index.most_similar(signature(STORY_TITLE, "\n".join(STORY)), exclude=99) == (1, 1.0)


def test_story_and_repost_in_one_crawl_alert_once(tmp_path: Path) -> None:
    """Both posts are classified in one transaction: the repost joins a story not yet stored."""
    with ReplayServer(["chinanews", "kaiping"]) as replay, WebhookSink() as hook:
        channels = tmp_path / "channels.yaml"
        channels.write_text(
            f"channels:\n  hook:\n    kind: webhook\n    url: {hook.url}\n", encoding="utf-8"
        )
        env = monitor_env(tmp_path, replay.url, channels)
        args = ["run", "--once", "--sources", "chinanews,kaiping"]
        assert run_monitor(args, env).returncode == 0  # baseline
        replay.publish("chinanews", STORY_TITLE, STORY)
        replay.publish("kaiping", REPOST_TITLE, [_traditional(p) for p in REPOST])
        done = run_monitor(args, env)
        assert done.returncode == 0, done.stderr[-2000:]
        alerts = hook.wait_for(1)
    assert "is a repost of story" in done.stderr
    assert len(alerts) == 1
    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        stories = conn.execute(
            text("select distinct story_id from articles where title in (:a, :b)"),
            {"a": STORY_TITLE, "b": REPOST_TITLE},
        ).all()
        versions = conn.execute(
            text("select count(*) from article_versions where classified_at is null")
        ).scalar_one()
    engine.dispose()
    assert len(stories) == 1 and stories[0][0] is not None
    assert versions == 0


def test_signatures_are_the_values_datasketch_gives_for_the_same_shingles() -> None:
    """Stored signatures are compared with new ones: the numpy path must equal datasketch's."""
    import re

    import numpy as np
    from datasketch import MinHash

    from crawler.normalize import normalize_text
    from monitor.stories import NUM_PERM, SCHEME, SHINGLE

    posts = [
        (
            "香港大學與深圳市共建生物醫藥研究院",
            "雙方將在南山區共建聯合實驗室，聚焦創新藥物與醫療器械。" * 3,
        ),
        ("医疗器械孵化联盟成立", "联盟由十家企业发起（InnoPort@Shanghai），首批入驻项目12个。" * 2),
        (
            "Biomedical fair",
            "A matchmaking fair for biomedical firms, 生物医药 对接会, 2025年5月。" * 2,
        ),
    ]
    for title, body in posts:
        got = signature(title, body)
        assert got is not None
        text_ = re.sub(r"[\W_]+", "", normalize_text(title + "\n" + body))
        shingles = {text_[i : i + SHINGLE] for i in range(len(text_) - SHINGLE + 1)}
        want = MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME)
        want.update_batch([s.encode("utf-8") for s in shingles])
        assert np.array_equal(np.asarray(got.hashvalues), np.asarray(want.hashvalues)), title
        assert from_bytes(to_bytes(got)).jaccard(want) == 1.0


def test_cached_shingle_hashes_are_the_hashes_and_the_cache_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signature made from cached shingle hashes equals one hashed afresh; a full cache is
    emptied before it grows past HASH_CACHE_SIZE."""
    import numpy as np

    from monitor import stories

    monkeypatch.setattr(stories, "_hash_cache", {})
    monkeypatch.setattr(stories, "HASH_CACHE_SIZE", 64)
    shingles = [f"{chr(0x4E00 + n)}市政府" for n in range(50)]
    direct = stories._fmix32(stories._sha1_hash32(shingles))
    assert np.array_equal(stories._shingle_hashes(shingles), direct)  # all computed
    assert len(stories._hash_cache) == 50
    # Half cached, half new: 75 would pass the bound, so the cache starts again from the new.
    mixed = shingles[25:] + [f"{chr(0x4E00 + n)}区政府" for n in range(25)]
    got = stories._shingle_hashes(mixed)
    assert np.array_equal(got, stories._fmix32(stories._sha1_hash32(mixed)))
    assert len(stories._hash_cache) == 25
    assert np.array_equal(stories._shingle_hashes(mixed), got)  # partly cached again

    title, body = "香港大學與深圳市共建生物醫藥研究院", "雙方將在南山區共建聯合實驗室。" * 4
    monkeypatch.setattr(stories, "HASH_CACHE_SIZE", 1 << 16)
    monkeypatch.setattr(stories, "_hash_cache", {})
    cold = signature(title, body)
    assert stories._hash_cache  # filled by the first signature
    warm = signature(title, body)
    assert cold is not None and warm is not None
    assert np.array_equal(cold.hashvalues, warm.hashvalues)


def test_bands_permutations_and_band_keys_are_datasketchs() -> None:
    """The runtime does without datasketch (and SciPy): its parameters are written out here."""
    import numpy as np
    from datasketch import MinHash, MinHashLSH

    from monitor.stories import BANDS, NUM_PERM, ROWS, SCHEME, SEED, _permutations

    lsh = MinHashLSH(threshold=SIMILARITY, num_perm=NUM_PERM)
    assert (lsh.b, lsh.r) == (BANDS, ROWS)
    want = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME).permutations
    got = _permutations()
    assert all(np.array_equal(g, w) and g.dtype == w.dtype for g, w in zip(got, want, strict=True))
    minhash = signature(STORY_TITLE, "\n".join(STORY))
    assert minhash is not None
    keys = StoryIndex()._band_keys(minhash)
    assert keys == [lsh._H(minhash.hashvalues[start:end]) for start, end in lsh.hashranges]


def _variants() -> list[tuple[str, str]]:
    """Return posts made from one template: many share LSH bands, some are equal (ties)."""
    import random

    rng = random.Random(7)
    words = ["合作", "协议", "生物", "医药", "研究", "中心", "创新", "成果", "转化", "平台"]
    words += ["企业", "高校", "联合", "实验室", "项目", "签约"]
    base = ["".join(rng.choice(words) for _ in range(30)) for _ in range(4)]
    posts = []
    for number in range(120):
        lines = [
            line if rng.random() < 0.8 else "".join(rng.choice(words) for _ in range(30))
            for line in base
        ]
        posts.append((f"标题{number % 7}", "。\n".join(lines)))
    return posts


def test_most_similar_is_the_closest_lsh_candidate_earliest_first() -> None:
    """Against datasketch's LSH candidates, scored one by one: same post, same similarity."""
    import numpy as np
    from datasketch import MinHash, MinHashLSH

    from monitor.stories import NUM_PERM, SCHEME

    def theirs(values: np.ndarray) -> MinHash:
        return MinHash(num_perm=NUM_PERM, seed=1, hashvalues=values, scheme=SCHEME)

    index = StoryIndex()
    lsh = MinHashLSH(threshold=SIMILARITY, num_perm=NUM_PERM)
    answers = ties = 0
    for article_id, (title, body) in enumerate(_variants(), start=1):
        minhash = signature(title, body)
        assert minhash is not None
        query = theirs(minhash.hashvalues)
        previous = article_id - 1  # excluded, as a post is when it is indexed already
        scored = sorted(
            (-query.jaccard(theirs(index.matrix[index.rows[found]])), found)
            for found in lsh.query(query)
            if found != previous
        )
        want = (scored[0][1], -scored[0][0]) if scored and -scored[0][0] >= SIMILARITY else None
        assert index.most_similar(minhash, exclude=previous) == want
        answers += want is not None
        ties += len(scored) > 1 and scored[0][0] == scored[1][0]
        index.add(article_id, minhash, article_id)
        lsh.insert(article_id, query)
    assert answers > 80 and ties > 20


def test_signature_from_topic_sentences_equals_the_whole_texts() -> None:
    """Alerting signs a post from the sentences topic matching normalised: the same values."""
    import random

    import numpy as np

    from monitor.stories import sentences_signature
    from monitor.topics_text import split_sentences

    body = "\n".join(STORY)
    posts = [
        (STORY_TITLE, body),
        (REPOST_TITLE, _traditional("\n".join(REPOST))),
        ("網(wǎng)站", "網(wǎng)！(wǎng)站；（zhàn）新聞。”\n(hàn)漢字（完）！？!?;；"),
        (
            "  ",
            "Ａｂｃ１２３　全角字母，e\u0301 à la carte！\u0301é。\n\n  \u3000 第二段 \t 文字。"
            * 3,
        ),
        ("", "一行\n二行\r\n三行。“引号。”下一句！」又一句？』" * 4),
        ("标题（InnoPort@Shanghai）", "⒜⑴㈱ ＫＭ 乾隆年間，覆蓋面廣；瞭解情況。" * 4),
        ("短", "太短"),
    ]
    pieces = [
        *"網絡乾隆瞭解覆蓋发展汉字Ａｂ１é",
        "\u0301",
        "(wǎng)",
        "（hàn）",
        "。",
        "！",
        "?",
        "；",
    ]
    pieces += ["\n", " ", "\u3000", "\t", "”", "」", '"', "⒜", "⑴", "乾隆年間", "瞭解到", "覆"]
    rng = random.Random(11)
    for _ in range(300):
        posts.append(("".join(rng.choices(pieces, k=8)), "".join(rng.choices(pieces, k=80))))
    for title, text_ in posts:
        whole = signature(title, text_)
        parts = sentences_signature([s.norm for s in split_sentences(title, text_, 300)])
        if whole is None:
            assert parts is None, title
        else:
            assert parts is not None and np.array_equal(parts.hashvalues, whole.hashvalues), title
