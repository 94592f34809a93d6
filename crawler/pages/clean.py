"""Boilerplate and spam: invisible or decorative elements, and the kinds of text line to drop or stop at.

Markers are written once, in simplified Chinese, and compared against the matching form of
each line (as `crawler.normalize.normalize_text` makes it), so traditional text and text with
pinyin annotations (`網(wǎng)站`) are recognised without listing every variant.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache

from lxml import etree
from lxml.html import HtmlElement

from crawler.normalize import normalize_line
from crawler.pages.document import ElementRow

# --- elements -------------------------------------------------------------------------------

_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:px)?\s*(?:;|$)"
    r"|(?:left|top)\s*:\s*-\d{3,}px)",
    re.IGNORECASE,
)
_HIDDEN_XPATH = etree.XPath(
    "//*[@hidden] | //*[@style] | //thead[not(ancestor::table)] | //tbody[not(ancestor::table)]"
)

_TOKEN = r"(?:^|[\s_-]){}(?:$|[\s_-])"
_BOILERPLATE_ATTR = re.compile(
    "|".join(
        [
            r"breadcrumb|crumb|bread",
            _TOKEN.format(
                r"(?:position|location|weizhi|dqwz|curpos|currentpos|current|path|dangqian)"
            ),
            r"share|fenxiang|bdshare|jiathis|print|dayin|fontsize|font-size|zihao",
            _TOKEN.format(r"(?:font|fonts|zh|zoomtool)"),
            r"copyright|banquan",
            _TOKEN.format(r"(?:foot|footer|bottom|ft)"),
            r"relate|xgxw|xgwz|xgtj|xglj|xgnr|recommend|tuijian|hotnews|hotlist|rmzx|rmtj",
            _TOKEN.format(r"(?:hot|more|latest|rank)"),
            r"prevnext|prev-next|pre-next|prenext|updown|shangxia|fanye|pager|pagination|pagebar",
            _TOKEN.format(r"(?:prev|next|pre|page)"),
            _TOKEN.format(r"(?:nav|navbar|navigation|menu|topbar|topnav|top|sidebar|side|aside)"),
            r"comment|pinglun|qrcode|erweima|jiucuo|toolbar|widget",
            _TOKEN.format(r"(?:ewm|tool|tools|btns?|ad|ads|advert|banner)"),
        ]
    ),
    re.IGNORECASE,
)
_BOILERPLATE_TAGS = frozenset(("nav", "footer", "aside", "form"))
_CHROME_XPATH = etree.XPath("//*[@class or @id] | //nav | //footer | //aside | //form")


# The attributes themselves are found much faster than the elements that have them.
_HIDDEN_ATTR_XPATH = etree.XPath("//@hidden | //@style")
# The same node-set as _HIDDEN_XPATH, the elements reached from their attributes.
_HIDDEN_PARENTS_XPATH = etree.XPath(
    "//@hidden/.. | //@style/.. | //thead[not(ancestor::table)] | //tbody[not(ancestor::table)]"
)


def _stray_table_part(root: HtmlElement) -> bool:
    """Return True when the page has a <thead> or <tbody> outside any <table>."""
    for part in root.getroottree().getroot().iter("thead", "tbody"):
        if next(part.iterancestors("table"), None) is None:
            return True
    return False


def _hidden_candidates(root: HtmlElement) -> list[HtmlElement]:
    """Return the elements `_HIDDEN_XPATH` selects, in page order."""
    if _stray_table_part(root):
        return _HIDDEN_PARENTS_XPATH(root)
    found: list[HtmlElement] = []
    last = None
    for attribute in _HIDDEN_ATTR_XPATH(root):
        element = attribute.getparent()
        if element is not last:
            found.append(element)
            last = element
    return found


def drop_invisible(root: HtmlElement) -> None:
    """Remove hidden elements and stray <thead>/<tbody> outside tables (signs of injected spam)."""
    for element in _hidden_candidates(root):
        if element.tag in ("thead", "tbody") or element.get("hidden") is not None:
            _drop(element)
            continue
        style = element.get("style") or ""
        if not _HIDDEN_STYLE.search(style):
            continue
        if _revealed_later(element):
            # Shown as the browser will show it, so later steps (readability too) keep it.
            element.set("style", _HIDDEN_STYLE.sub(";", style))
        else:
            _drop(element)


def _revealed_later(element: HtmlElement) -> bool:
    """Return True for hidden article prose that a script shows on load (WeChat's #js_content)."""
    if element.get("id") == "js_content":
        return True
    text = element.text_content()
    if len(text) < 200 or text.count("。") < 3 or link_density(element) > 0.3:
        return False
    return not _SPAM_STRONG.search(norm_head(text, 400))


def _drop(element: HtmlElement) -> None:
    """Remove `element` and its subtree, keeping its tail text in the flow."""
    if element.getparent() is not None:
        element.drop_tree()


def boilerplate_attr(element: HtmlElement) -> bool:
    """Return True when the class or id of `element` names a navigation or decoration block."""
    return _boilerplate_names(element.get("class"), element.get("id"))


def _boilerplate_names(classes: str | None, element_id: str | None) -> bool:
    """Return True when a class and id name a navigation or decoration block."""
    attrs = f"{classes or ''} {element_id or ''}".strip()
    if not attrs:
        return False
    if len(attrs) > 200:
        return _BOILERPLATE_ATTR.search(attrs) is not None
    return _boilerplate_attrs_cached(attrs)


@lru_cache(maxsize=8192)
def _boilerplate_attrs_cached(attrs: str) -> bool:
    """Return whether a short `class id` string names a block, cached: page templates repeat them."""
    return _BOILERPLATE_ATTR.search(attrs) is not None


def link_density(element: HtmlElement) -> float:
    """Return the share of the text of `element` that sits inside links."""
    total = len("".join(element.text_content().split()))
    if not total:
        return 0.0
    linked = sum(len("".join(a.text_content().split())) for a in element.iter("a"))
    return min(1.0, linked / total)


def chrome_elements(
    root: HtmlElement, containers: list[HtmlElement], rows: list[ElementRow] | None = None
) -> list[HtmlElement]:
    """Return navigation, share, print, related and footer blocks, never the body or its ancestors.

    `rows` are the page's `element_rows`, when already read.
    """
    protected: set[HtmlElement] = set()
    for container in containers:
        protected.add(container)
        protected.update(container.iterancestors())
    container_set = set(containers)
    if rows is None:
        rows = [(e, e.tag, e.get("class"), e.get("id")) for e in _CHROME_XPATH(root)]
    found = []
    for element, tag, classes, element_id in rows:
        if classes is None and element_id is None and tag not in _BOILERPLATE_TAGS:
            continue
        if not isinstance(tag, str) or element in protected:
            continue
        if tag not in _BOILERPLATE_TAGS and not _boilerplate_names(classes, element_id):
            continue
        if (
            container_set
            and _inside(element, container_set)
            and not _disposable_inside_body(element)
        ):
            continue
        found.append(element)
    return found


def _inside(element: HtmlElement, containers: set[HtmlElement]) -> bool:
    """Return True when `element` lies below one of `containers`."""
    return not containers.isdisjoint(element.iterancestors())


def _disposable_inside_body(element: HtmlElement) -> bool:
    """Return True when a boilerplate-looking block inside the body is (short and) mostly links."""
    # Short plain text there is left to the line rules, which know labels and widgets.
    density = link_density(element)
    if density > 0.5:
        return True
    text = "".join(element.text_content().split())
    return density > 0.3 and len(text) < 200


# --- lines ----------------------------------------------------------------------------------


class LineKind(Enum):
    """What a line of page text is, for the body."""

    TEXT = "text"
    DROP = "drop"
    END = "end"
    SPAM = "spam"


@lru_cache(maxsize=16384)
def norm(text: str) -> str:
    """Return the matching form of a line (`normalize_text`), cached: markers repeat a lot."""
    return normalize_line(text)


def norm_head(text: str, limit: int = 160) -> str:
    """Return the matching form of the first `limit` characters of `text`."""
    return norm(text[:limit])


def _words(text: str) -> frozenset[str]:
    """Return the set of the space-separated words in `text`."""
    return frozenset(text.split())


_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
# Headings of what follows an article: related posts, attachments, rankings.
_END_HEADINGS = _words(
    "相关附件 附件下载 相关内容 相关新闻 相关推荐 相关阅读 相关文章 相关链接 "
    "相关稿件 相关报道 相关信息 相关文件 相关资讯 相关专题 热门资讯 热门新闻 "
    "热门文章 热门推荐 热点新闻 热点推荐 热点资讯 推荐阅读 猜你喜欢 精彩推荐 "
    "更多新闻 更多资讯 往期回顾 最新资讯 最新新闻 最新文章 为你推荐 为您推荐 "
    "相关阅读推荐 新闻推荐 热门排行 点击排行 阅读排行"
)
_END_PREFIX = re.compile(
    r"^(?:上一篇|下一篇|上一条|下一条|上一则|下一则|版权声明|免责声明|相关附件|继续滑动看下一个|预览时标签不可点)"
)
# Rows of the open-government catalogue table above a document (索引号, 发布机构, 文号, ...).
_CATALOGUE = re.compile(
    r"索引号|发布机构|发文机关|主题分类|体裁分类|成文日期|发布日期|有效性|公开方式|文号"
)
_BREADCRUMB = re.compile(
    r"^(?:您|你)?(?:现在|当前|目前)?(?:的)?(?:所在)?(?:的)?位置(?:是)?\s*[:>›»]"
    r"|^首页\s*[>›»/]|^(?:\S{1,15}\s*[>›»]\s*){2,}\S{1,20}$"
)
_META_LABELS = (
    r"发布日期|发布时间|发表时间|发表日期|更新时间|更新日期|发稿时间|来源|信息来源|文章来源|稿件来源|"
    r"新闻来源|作者|撰稿|撰稿人|供稿|责任编辑|编辑|审核|审校|校对|摄影|浏览次数|访问次数|点击数|点击量|"
    r"阅读数|阅读量|阅读次数|浏览量|浏览|字号|字体|分享|标签|发布单位|发布机构"
)
_META_LINE = re.compile(rf"^[【\[(]?(?:{_META_LABELS})\s*[:：]")
_META_LABEL_ANY = re.compile(rf"(?:{_META_LABELS}|时间|日期)\s*[:：]")
# An info bar that opens with the date: "2024年11月07日 17:36 来源：中国新闻网".
_DATED_INFO = re.compile(
    r"^(?:19|20)\d{2}\s*[-/.年]\s*\d{1,2}.{0,30}?(?:来源|作者|编辑|浏览|点击)\s*[:：]"
)
_EDITOR = re.compile(r"^[【\[(]\s*(?:责任编辑|编辑|责编)\s*[:：].{0,20}[】\])]$")
_FOOTER = re.compile(
    r"版权所有|ICP备|ICP证|网站标识码|网站识别码|公网安备|copyright|©|刊用本网站稿件|"
    r"未经(?:书面)?授权.{0,8}(?:转载|使用|复制)|不代表.{0,12}(?:观点|立场)|"
    r"(?:主办|承办|协办|技术支持|网站建设|维护|运维)(?:单位)?\s*[:：]",
    re.IGNORECASE,
)
_FOOTER_LINKS = re.compile(
    r"联系我们|网站帮助|网站地图|服务申明|隐私声明|关于我们|网站声明|使用帮助|免责声明"
)
_WIDGET = re.compile(
    r"扫一扫在手机打开当前页|在手机上打开|手机扫一扫|扫一扫|打印本页|打印此页|打印文章|打印|关闭本页|关闭窗口|关闭|"
    r"字体大小|字体|字号|默认|分享到|分享|收藏本页|收藏|加入收藏|返回顶部|返回列表|返回|顶部|我要纠错|纠错|"
    r"手机版|微信|微博|朋友圈|qq空间|qq|复制链接|增大|减小|正常|保存|阅读原文|关注该公众号|大|中|小|"
    r"[\s\W_]",
    re.IGNORECASE,
)
_WIDGET_WORD = re.compile(r"打印|关闭|字体|字号|分享|收藏|返回|纠错|扫一扫|阅读原文|公众号")

# Injected porn/gambling keyword lists. "Strong" words almost never occur in government text;
# "weak" ones do, and only add weight to a line that already has strong ones.
_SPAM_STRONG = re.compile(
    r"国产精品|无码|有码|人妻|丝袜|一区二区|二区三区|中文字幕|博彩|娱乐城|百家乐|色情|乱伦|熟女|巨乳|"
    r"(?<![a-z])av(?![a-z])|三级片|成人影|成人视频|偷拍|自拍偷|制服诱惑|六合彩|时时彩|老司机|精品视频|"
    r"av综合|伦理片|美腿",
    re.IGNORECASE,
)
_SPAM_WEAK = re.compile(
    r"日韩|欧美|亚洲|亚欧|彩票|精品|在线观看|在线看|高清|免费|美女|视频|真人|棋牌|投注|下注|澳门|葡京|"
    r"福利|女优|少妇|午夜|制服|综合网"
)
_LIST_SEPARATORS = re.compile(r"[,，、|｜/;；]+")
# Whether _SPAM_STRONG matches, found faster: its Chinese words need no IGNORECASE (no
# character but itself matches a CJK ideograph in any case), which makes the engine try
# every alternative at every character; only its "av" words do, and they need an a or A.
_SPAM_STRONG_CJK = re.compile(
    "|".join(word for word in _SPAM_STRONG.pattern.split("|") if "av" not in word)
)
_SPAM_STRONG_AV = re.compile(
    "|".join(word for word in _SPAM_STRONG.pattern.split("|") if "av" in word), re.IGNORECASE
)
# A character _PUNCT does not match: a line has some when its bare form is not empty.
_WORD_CHAR = re.compile(r"[^\s\W_]")


def _strong_spam(text: str) -> bool:
    """Return `_SPAM_STRONG.search(text) is not None`."""
    if _SPAM_STRONG_CJK.search(text) is not None:
        return True
    return ("a" in text or "A" in text) and _SPAM_STRONG_AV.search(text) is not None


def is_spam(line: str) -> bool:
    """Return True when `line` is an injected list of pornography or gambling keywords."""
    text = norm_head(line, 400)
    strong = {m.group(0).lower() for m in _SPAM_STRONG.finditer(text)}
    if len(strong) >= 4:
        return True
    if len(strong) < 2:
        return False
    hits = len(strong) + len({m.group(0) for m in _SPAM_WEAK.finditer(text)})
    if hits < 3 or "。" in text:
        return False
    segments = [s for s in _LIST_SEPARATORS.split(text) if s.strip()]
    keyword_list = len(segments) >= 2 and len(text) / len(segments) <= 30
    return keyword_list or len(text) <= 40


def _is_widget(text: str) -> bool:
    """Return True when a matching-form line consists only of print/font/share/close controls."""
    return len(text) <= 60 and bool(_WIDGET_WORD.search(text)) and not _WIDGET.sub("", text)


@lru_cache(maxsize=4096)
def _bare(text: str) -> str:
    """Return a short matching-form line without spaces and punctuation, cached: headers repeat."""
    return _PUNCT.sub("", text)


def is_end_line(line: str) -> bool:
    """Return True when `line` ends the body: `classify_line(line) is LineKind.END`, checked alone."""
    if len(line) > 400:
        return False
    text = norm_head(line, 400)
    if len(text) > 120:
        return False
    bare = _bare(text)
    return bool(bare) and (bare in _END_HEADINGS or _END_PREFIX.match(bare) is not None)


def classify_line(line: str) -> LineKind:
    """Return whether a line belongs in the body (TEXT), is dropped, is spam, or ends the body."""
    text = norm_head(line, 400)
    short = len(text) <= 120 and len(line) <= 400
    if short:
        bare = _bare(text)
        if not bare:
            return LineKind.DROP if len(text) <= 3 else LineKind.TEXT
        if bare in _END_HEADINGS or _END_PREFIX.match(bare):
            return LineKind.END
    elif _WORD_CHAR.search(text) is None:  # its bare form is empty; only that matters
        return LineKind.DROP if len(text) <= 3 else LineKind.TEXT
    if _strong_spam(text) and is_spam(line):
        return LineKind.SPAM
    if not short:
        return LineKind.TEXT
    if (
        _BREADCRUMB.search(text)
        or _EDITOR.match(text)
        or _is_widget(text)
        or _DATED_INFO.match(text)
    ):
        return LineKind.DROP
    if _META_LINE.match(text) and (len(text) <= 80 or len(_META_LABEL_ANY.findall(text)) >= 2):
        return LineKind.DROP
    if len(_META_LABEL_ANY.findall(text)) >= 2 and len(text) <= 100:
        return LineKind.DROP
    if _FOOTER.search(text) and len(text) <= 160:
        return LineKind.DROP
    if len(_FOOTER_LINKS.findall(text)) >= 2 and len(text) <= 60:
        return LineKind.DROP
    if len(set(_CATALOGUE.findall(text))) >= 2 and len(text) <= 100:
        return LineKind.DROP
    return LineKind.TEXT
