"""The cooperating parties of a post: universities, governments, companies, parks, hospitals.

Names are taken from sentences that report cooperation (and the title), in simplified script
and canonical form: aliases from the topics file (港理工 -> 香港理工大学, 中科院 -> 中国科学院)
and official government names (中山市政府 -> 中山市人民政府, the name on the government's own
seal and website).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from monitor.topics_text import Sentence, segmenter, split_sentences, trie_regex

MAX_PARTIES = 6
_MAX_NAME = 28
_MAX_SENTENCES = 60

_CUE = re.compile(
    r"签署|签订|签约|共建|合建|合作|携手|联合|揭牌|联盟|对接|落户|入驻|备忘录|协议|共同|牵手|结对"
)
# Suffixes of organisation names, longest first so 有限公司 wins over 公司.
_SUFFIX_WORDS = """股份有限公司 有限责任公司 有限公司 集团公司 集团 公司 大学 学院 研究院 研究所 科学院 实验室
    研究中心 中心 医院 人民政府 政府 管委会 管理委员会 委员会 基金会 协会 学会 联盟 高新区 开发区
    新区 产业园 科技园 科学技术局 科技局 商务局 工作局 管理局 促进局 健康局 监管局 保障局 信息化局
    改革局 教育局 服务局"""  # bureaus by their kind only: a bare 局 would also end 格局 and 布局
_SUFFIXES = tuple(_SUFFIX_WORDS.split())
_SUFFIX = re.compile(trie_regex(_SUFFIXES))
# Words that end a name when walking left from its suffix.
_STOP = frozenset(
    [
        "与",
        "和",
        "及",
        "同",
        "跟",
        "以及",
        "暨",
        "或",
        "在",
        "由",
        "对",
        "向",
        "为",
        "将",
        "已",
        "并",
        "也",
        "还",
        "是",
        "的",
        "了",
        "等",
        "共",
        "于",
        "从",
        "把",
        "被",
        "让",
        "给",
        "近日",
        "日前",
        "今天",
        "今日",
        "昨天",
        "昨日",
        "当天",
        "记者",
        "获悉",
        "据悉",
        "了解",
        "本次",
        "此次",
        "双方",
        "三方",
        "多方",
        "其中",
        "作为",
        "依托",
        "通过",
        "代表",
        "表示",
        "举行",
        "举办",
        "签署",
        "签订",
        "签约",
        "共建",
        "合建",
        "合作",
        "携手",
        "联合",
        "出席",
        "参加",
        "来自",
        "包括",
        "组织",
        "成立",
        "正式",
        "与会",
        "及其",
        "旗下",
        "所属",
        "隶属",
        "主办",
        "承办",
        "协办",
        "支持",
        "指导",
        "推动",
        "促进",
        "发挥",
        "该",
        "本",
        "其",
        "各",
        "多家",
        "相关",
        "有关",
        "当地",
        "本地",
        "一批",
        "一家",
        "首家",
        "这",
        "这些",
        "此",
        "我",
        "我市",
        "我区",
        "我县",
        "我省",
        "全市",
        "全区",
        "全省",
        "分别",
        "先后",
        "共同",
        "积极",
        "进一步",
        "深化",
        "加强",
        "开展",
        "推进",
        "引进",
        "落户",
        "入驻",
        "揭牌",
        "建设",
        "打造",
        "设立",
        "也是",
        "围绕",
        "聚焦",
        "面向",
        "发布",
        "宣布",
        "启动",
        "完成",
        "达成",
        "实现",
        "获得",
        "成为",
        "即",
        "又",
        "均",
        "都",
        "还",
        "而",
        "但",
        "所",
        "以",
        "有",
    ]
)
_GOVERNMENT = re.compile(r"^(.{2,12}?(?:省|市|区|县|自治州|州|盟|旗))政府$")


@dataclass(frozen=True)
class _Known:
    """Known organisation names: a regex of their variants and variant -> canonical."""

    regex: re.Pattern[str] | None
    canonical: Mapping[str, str]


@lru_cache(maxsize=1)
def _known() -> _Known:
    """Return the shipped organisation aliases (those whose canonical name is an organisation)."""
    from monitor.topics_config import load_spec
    from monitor.topics_text import normalize

    canonical: dict[str, str] = {}
    for name, variants in load_spec().aliases.items():
        name = normalize(name)
        if not _SUFFIX.search(name) and not name.endswith(("大学", "科学院")):
            continue
        for variant in [name, *variants]:
            canonical[normalize(variant).lower()] = name
    regex = re.compile(trie_regex(canonical), re.IGNORECASE) if canonical else None
    segmenter().add_words(v for v in canonical if len(v) > 1)
    return _Known(regex, canonical)


def canonical_name(name: str) -> str:
    """Return the canonical form of an organisation name (aliases, official government names)."""
    known = _known()
    name = name.strip("“”\"'《》()（） ")
    if name.lower() in known.canonical:
        return known.canonical[name.lower()]
    if known.regex is not None:
        match = known.regex.match(name)
        if match and match.end() < len(name):
            # 中科院苏州医工所 -> 中国科学院苏州医工所: an alias as a prefix names the parent.
            name = known.canonical[match.group().lower()] + name[match.end() :]
    government = _GOVERNMENT.match(name)
    if government:
        return government.group(1) + "人民政府"
    return name


def _proper_words() -> frozenset[str]:
    """Return jieba's dictionary words tagged as place, organisation or other proper names."""
    return segmenter().proper_words


def _walk_left(norm: str, end: int, suffix_start: int) -> tuple[int, str] | None:
    """Return (start, name) of the organisation ending at `end`, or None if it has no name.

    Walks left from the suffix over name-like words, then starts the name at its first proper
    word (a place, an organisation, a known alias, or a run of characters jieba does not know),
    so that 连接香港理工大学 gives 香港理工大学 and 技术创新研究院 gives nothing.
    """
    low = max(0, suffix_start - _MAX_NAME)
    bounds = segmenter().cuts(norm[low:end])
    limit = suffix_start - low
    words = [(a, b) for a, b in pairwise(bounds) if b <= limit]
    span: list[tuple[int, int]] = []
    for a, b in reversed(words):
        word = norm[low + a : low + b]
        if word in _STOP or not all(c.isalnum() or c == "·" for c in word):
            break
        span.insert(0, (a, b))
    proper, known = _proper_words(), _known().canonical
    for i, (a, b) in enumerate(span):
        word = norm[low + a : low + b]
        single_run = b - a == 1 and i + 1 < len(span) and span[i + 1][1] - span[i + 1][0] == 1
        if word in proper or word.lower() in known or word.isascii() or single_run:
            start = low + a
            name = norm[start:end]
            return (start, name) if len(name) >= 4 and not word.isdigit() else None
    return None


def _names_in(sentence: Sentence) -> list[str]:
    """Return the organisation names in one sentence, in order of appearance."""
    norm, seg, known = sentence.norm, segmenter(), _known()
    candidates: list[tuple[int, int, str]] = []
    if known.regex is not None:
        for match in known.regex.finditer(norm):
            if seg.is_word(norm, *match.span()):
                candidates.append((match.start(), match.end(), match.group()))
    for match in _SUFFIX.finditer(norm):
        end = match.end()
        if end < len(norm) and _SUFFIX.match(norm, end):
            continue  # 研究院 in 研究院中心: wait for the outer suffix.
        found = _walk_left(norm, end, match.start())
        if found is None or norm[max(0, found[0] - 1) : found[0]] in ("在", "于"):
            continue  # no name, or a venue (在国际会展中心举行) rather than a party
        candidates.append((found[0], end, found[1]))
    chosen: list[tuple[int, int, str]] = []
    for start, end, name in sorted(candidates, key=lambda c: (c[0] - c[1], c[0])):
        if all(end <= s or e <= start for s, e, _ in chosen):
            chosen.append((start, end, name))
    return [canonical_name(name) for _, _, name in sorted(chosen)]


def extract_parties(title: str, text: str, sentences: list[Sentence] | None = None) -> list[str]:
    """Return the cooperating organisations of a post, canonical names, most relevant first.

    `sentences` may be the post's `split_sentences` made for topic matching (whatever their
    lead): only their text and which is the title count here.
    """
    if sentences is None:
        sentences = split_sentences(title or "", text or "", lead_chars=0)
    scores: dict[str, float] = {}
    first: dict[str, int] = {}
    used = 0
    for index, sentence in enumerate(sentences):
        if not sentence.is_title and not _CUE.search(sentence.norm):
            continue
        used += 1
        if used > _MAX_SENTENCES:
            break
        for name in _names_in(sentence):
            bonus = 3.0 if sentence.is_title else 1.0
            if re.search(
                rf"(?:与|和|同|、){re.escape(name)}|{re.escape(name)}(?:与|和|同|携手)",
                canonical_text(sentence.norm),
            ):
                bonus += 1.0
            scores[name] = scores.get(name, 0.0) + bonus
            first.setdefault(name, index)
    ranked = sorted(scores, key=lambda n: (-scores[n], first[n]))
    return ranked[:MAX_PARTIES]


def canonical_text(norm: str) -> str:
    """Return a normalised sentence with known aliases replaced by canonical names."""
    known = _known()
    if known.regex is None:
        return norm
    return known.regex.sub(lambda m: known.canonical[m.group().lower()], norm)
