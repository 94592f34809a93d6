"""Source files (`seeds/<id>.yaml`): the pydantic model and a loader whose errors name file, line and field."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
# libyaml's loader when PyYAML has it: hundreds of source files load in a blink.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Codecs Python knows that no web page is written in.
_NOT_PAGE_CODECS = frozenset(
    {"idna", "punycode", "undefined", "raw-unicode-escape", "unicode-escape"}
)


def parse_duration(text: str) -> timedelta:
    """Return the timedelta of a duration such as 90s, 30m, 2h or 1d; raise ValueError otherwise."""
    match = _INTERVAL_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 2h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Schedule(BaseModel):
    """When a source is crawled: `every: 30m` (interval) or `cron: "*/30 * * * *"` (crontab, CST)."""

    model_config = ConfigDict(extra="forbid")

    every: str | None = Field(default=None, description="Interval such as 90s, 30m, 2h, 1d.")
    cron: str | None = Field(default=None, description="Five-field crontab in China Standard Time.")

    @field_validator("every")
    @classmethod
    def _check_every(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="Asia/Shanghai")
        except ValueError as exc:
            raise ValueError(f"bad cron expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' or 'cron'")
        return self

    def interval(self) -> timedelta | None:
        """Return the interval for `every`, or None for a cron schedule."""
        return None if self.every is None else parse_duration(self.every)


# The article page kinds of crawler/pages/article.py's EXTRACTORS (kept here so that checking
# a seed file does not load the extractors; tests/test_seeds.py checks both lists agree).
ExtractorKind = Literal["generic", "trs", "hanweb", "gd_platform", "readability"]


class Seed(BaseModel):
    """One monitored site column, as declared in `seeds/<id>.yaml`."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        pattern=r"^[a-z][a-z0-9_]{1,40}$", description="Source id; also the spider name."
    )
    name: str = Field(description="Human name of the column, shown in alerts.")
    site_name: str = Field(
        default="", description="Name of the site (e.g. 开平市人民政府门户网站)."
    )
    base_url: str = Field(description="Origin of the real site, e.g. http://www.kaiping.gov.cn")
    list_urls: list[str] = Field(min_length=1, description="Column list pages to start from.")
    article_pattern: str = Field(
        description="Regex (searched in the URL) that marks article pages."
    )
    list_pattern: str | None = Field(
        default=None, description="Regex (searched in the URL) for further list pages (pagination)."
    )
    max_pages: int = Field(default=3, ge=1, le=500, description="List pages followed per cycle.")
    extractor: ExtractorKind = Field(
        default="generic",
        description="Page-object kind for article pages (`monitor sources --kinds` lists them).",
    )
    encoding: str | None = Field(default=None, description="Force this charset for the site.")
    schedule: Schedule = Field(default_factory=lambda: Schedule(every="30m"))
    allowed_domains: list[str] = Field(default_factory=list, description="Extra domains to follow.")
    browser: Literal["none", "lists", "articles", "all"] = Field(
        default="none",
        description="Pages that need a real browser (Chromium via scrapy-playwright).",
    )
    robots_txt: Literal["obey", "ignore"] = Field(
        default="obey",
        description="obey: skip pages the site's robots.txt disallows (recorded as the reason); "
        "ignore: fetch them anyway.",
    )
    enabled: bool = True

    @field_validator("article_pattern", "list_pattern")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        return value

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                known = codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown charset {value!r} (e.g. gb18030, utf-8)") from None
            if not getattr(known, "_is_text_encoding", True) or known.name in _NOT_PAGE_CODECS:
                raise ValueError(f"{value!r} is not a page charset (e.g. gb18030, utf-8)")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as http://www.kaiping.gov.cn")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _lists_on_site(self) -> Seed:
        for url in self.list_urls:
            if not url.startswith(self.base_url):
                raise ValueError(f"list URL {url!r} is not under base_url {self.base_url!r}")
        return self

    def with_base(self, new_base: str) -> Seed:
        """Return a copy whose URLs are moved from `base_url` to `new_base` (for replays)."""
        new_base = new_base.rstrip("/")
        moved = [new_base + url[len(self.base_url) :] for url in self.list_urls]
        return self.model_copy(update={"base_url": new_base, "list_urls": moved})

    def needs_browser(self, page_kind: str) -> bool:
        """Return True when pages of `page_kind` ("list" or "article") must go through a browser."""
        return self.browser == "all" or self.browser == f"{page_kind}s"

    def domains(self) -> list[str]:
        """Return the host names this source may follow links to."""
        host = urlsplit(self.base_url).hostname or ""
        return [host, *self.allowed_domains]


@dataclass(frozen=True)
class SeedError:
    """One problem in one source file, located as precisely as the YAML allows."""

    path: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class SeedFileError(Exception):
    """A source file could not be loaded; `errors` lists every problem found in it."""

    def __init__(self, errors: list[SeedError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _key_lines(node: yaml.Node, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each key path in a composed YAML document to its 1-based line number."""
    lines: dict[tuple[Any, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, key_node.value)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, index)
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path))
    return lines


def parse_seed_text(text: str, path: Path) -> Seed:
    """Return the validated seed in `text`; raise SeedFileError naming file, line and field."""
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        data = _yaml_error(text, path)  # raises with the pure-Python parser's words
    if not isinstance(data, dict):
        raise SeedFileError([SeedError(path, 1, "", "expected a mapping of fields")])
    data.setdefault("id", path.stem)
    try:
        seed = Seed.model_validate(data)
    except ValidationError as exc:
        # Line numbers are only wanted for errors: compose the document only then.
        lines = _key_lines(yaml.compose(text))
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = None
            for cut in range(len(loc), 0, -1):
                if loc[:cut] in lines:
                    line = lines[loc[:cut]]
                    break
            field = ".".join(str(p) for p in loc) or "(file)"
            errors.append(SeedError(path, line, field, err["msg"]))
        raise SeedFileError(errors) from None
    if seed.id != path.stem:
        line = _key_lines(yaml.compose(text)).get(("id",))
        raise SeedFileError(
            [SeedError(path, line, "id", f"must match the file name {path.stem!r}")]
        )
    return seed


def _yaml_error(text: str, path: Path) -> Any:
    """Raise SeedFileError for text that is not valid YAML, located and worded by PyYAML."""
    try:
        yaml.compose(text)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SeedFileError([SeedError(path, line, "", f"YAML error: {problem}")]) from None


# A crawl reads the seeds folder twice (spider classes, then the crawl's sources): files that
# have not changed since are not parsed again.
_LOADED: dict[tuple[str, int, int], Seed] = {}


def load_seed(path: Path) -> Seed:
    """Return the validated seed stored at `path`."""
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key in _LOADED:
            return _LOADED[key]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedFileError([SeedError(path, None, "", f"cannot read: {exc}")]) from None
    seed = _LOADED[key] = parse_seed_text(text, path)
    return seed


def seed_files(seeds_dir: Path) -> list[Path]:
    """Return the source files in `seeds_dir`, sorted by name."""
    return sorted(p for p in seeds_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_seeds(seeds_dir: Path) -> tuple[dict[str, Seed], list[SeedError]]:
    """Return the valid seeds by id and the errors of the invalid files (never raises for a file)."""
    seeds: dict[str, Seed] = {}
    errors: list[SeedError] = []
    for path in seed_files(seeds_dir):
        try:
            seed = load_seed(path)
        except SeedFileError as exc:
            errors.extend(exc.errors)
            continue
        if seed.id in seeds:
            errors.append(SeedError(path, None, "id", f"duplicate source id {seed.id!r}"))
            continue
        seeds[seed.id] = seed
    return seeds, errors


def effective_seed(seed: Seed, replay_url: str | None) -> Seed:
    """Return `seed` moved onto `<replay_url>/<id>` when a replay is configured."""
    if not replay_url:
        return seed
    return seed.with_base(f"{replay_url.rstrip('/')}/{seed.id}")
