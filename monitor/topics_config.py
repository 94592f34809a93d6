"""The topics file: YAML schema, the user's file laid over the shipped one, and clear errors.

Shape (see `monitor/topics.yaml` for the shipped default and the README section on topics):

    version: 1
    aliases: {<canonical>: [<variant>, ...]}   # shared by every topic and by party names
    shield: [<word>, ...]                        # unrelated words no term may match inside
    topics:
      <name>:
        threshold: <float>
        groups: {<group>: {terms: {<term>: <weight>}, patterns: {<label>: {regex, weight}}}}
        require / central / cooccur: [<group>, ...]
        exclude: {title: [...], text: [...]}

Overlay rules: a user topic with a new name is added; one with an existing name is deep-merged
into the shipped one (mappings merge key by key, lists and scalars replace), or replaces it
whole with `replace: true`; `enabled: false` switches a topic off. Top-level `aliases` merge key
by key and `shield` lists are joined.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SHIPPED_TOPICS = Path(__file__).with_name("topics.yaml")
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


class TopicsFileError(ValueError):
    """A topics file that cannot be read or is invalid; the message names file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatternSpec(_Strict):
    """A regular expression over normalised (simplified, NFKC) text, reported under its label."""

    regex: str
    weight: float = Field(default=1.0, ge=0)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regex {value!r}: {exc}") from None
        return value


class GroupSpec(_Strict):
    """A term group: literal terms with weights, optional regex patterns, a minimum score."""

    label: str = ""
    weight: float = 1.0
    min_score: float = Field(default=0.0, ge=0)
    terms: dict[str, float] = Field(default_factory=dict)
    patterns: dict[str, PatternSpec] = Field(default_factory=dict)

    @field_validator("terms", mode="before")
    @classmethod
    def _list_means_weight_one(cls, value: Any) -> Any:
        return _terms_as_mapping(value)

    @field_validator("terms")
    @classmethod
    def _terms_sane(cls, value: dict[str, float]) -> dict[str, float]:
        for term, weight in value.items():
            if not str(term).strip():
                raise ValueError("empty term")
            if weight < 0:
                raise ValueError(f"term {term!r}: weight must be >= 0 (use a group weight < 0)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> GroupSpec:
        if not self.terms and not self.patterns:
            raise ValueError("a group needs at least one term or pattern")
        return self


class ExcludeSpec(_Strict):
    """Terms that veto a topic: anywhere in the title, or anywhere in the text."""

    title: list[str] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list)


class TopicSpec(_Strict):
    """One topic: term groups, how they combine, and the score a post needs to match."""

    label: str = ""
    description: str = ""
    enabled: bool = True
    threshold: float = Field(ge=0)
    title_boost: float = Field(default=2.0, ge=0)
    list_discount: float = Field(default=0.3, ge=0, le=1)
    lead_chars: int = Field(default=300, ge=0)
    require: list[str] = Field(default_factory=list)
    central: list[str] = Field(default_factory=list)
    cooccur: list[str] = Field(default_factory=list)
    groups: dict[str, GroupSpec]
    exclude: ExcludeSpec = Field(default_factory=ExcludeSpec)
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    shield: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _groups_exist(self) -> TopicSpec:
        if not self.groups:
            raise ValueError("a topic needs at least one group")
        for field_name in ("require", "central", "cooccur"):
            for group in getattr(self, field_name):
                if group not in self.groups:
                    known = ", ".join(sorted(self.groups))
                    raise ValueError(f"{field_name}: unknown group {group!r} (groups: {known})")
        return self


class TopicsFile(_Strict):
    """The whole file: shared aliases and shield words, and the topics by name."""

    version: int = 1
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    shield: list[str] = Field(default_factory=list)
    topics: dict[str, TopicSpec]

    @field_validator("topics")
    @classmethod
    def _names(cls, value: dict[str, TopicSpec]) -> dict[str, TopicSpec]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"topic name {name!r}: use letters, digits, '_' or '-'")
        return value


def _terms_as_mapping(value: Any) -> Any:
    """Return `terms` as {term: weight}: a plain list gives every term weight 1."""
    if isinstance(value, list):
        return {str(term): 1.0 for term in value}
    return value


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """Return the parsed mapping of a YAML file and its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopicsFileError(f"{path}: cannot read topics file: {exc}") from None
    try:
        # libyaml's parser when PyYAML has it: the same nodes, marks and errors, a tenth of
        # the time (the built-in topics file took 70 ms before each cycle's crawl could start).
        # The text is parsed twice on purpose: building values from `node` would rewrite its
        # mappings that use merge keys (`<<`) in place, and the tree must keep the file's shape.
        node = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # a safe loader: plain values only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise TopicsFileError(f"{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise TopicsFileError(f"{path}:1: the topics file must be a mapping with a 'topics' key")
    return data, node


def _deep_merge(base: Any, over: Any) -> Any:
    """Return `over` laid on `base`: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            if key == "terms":
                value = _terms_as_mapping(value)
                merged[key] = _deep_merge(_terms_as_mapping(merged.get(key, {})), value)
            else:
                merged[key] = _deep_merge(merged[key], value) if key in merged else value
        return merged
    return over


def overlay(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """Return the user's raw topics data laid over the shipped data (see the module doc)."""
    merged = dict(base)
    for key, value in user.items():
        if key == "topics" and isinstance(value, dict) and isinstance(base.get("topics"), dict):
            topics = dict(base["topics"])
            for name, topic in value.items():
                if isinstance(topic, dict) and topic.get("replace") is True:
                    topics[name] = {k: v for k, v in topic.items() if k != "replace"}
                elif isinstance(topic, dict) and isinstance(topics.get(name), dict):
                    topic = {k: v for k, v in topic.items() if k != "replace"}
                    topics[name] = _deep_merge(topics[name], topic)
                else:
                    topics[name] = topic
            merged["topics"] = topics
        elif key == "aliases" and isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        elif key == "shield" and isinstance(value, list) and isinstance(base.get(key), list):
            merged[key] = list(base[key]) + [w for w in value if w not in base[key]]
        else:
            merged[key] = value
    return merged


def _depth_and_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[int, int]:
    """Return how many steps of `loc` exist in the YAML tree and the 1-based line reached."""
    if node is None:
        return 0, 0
    depth, line = 0, node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if found is None:
                break
            node = found
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
        depth, line = depth + 1, node.start_mark.line + 1
    return depth, line


def _describe(exc: ValidationError, files: list[tuple[Path, yaml.Node | None]]) -> str:
    """Return one line per validation error: `file:line: field.path: message`."""
    lines = []
    for error in exc.errors()[:8]:
        loc = tuple(part for part in error["loc"] if part != "[key]")
        # The file whose tree holds the deepest part of the path is the one to blame;
        # on a tie the user's file (last) wins, as the shipped file is known good.
        best = max(((*_depth_and_line(node, loc), i) for i, (_, node) in enumerate(files)))
        path = files[best[2]][0]
        field = ".".join(str(part) for part in loc) or "(top level)"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{path}:{best[1]}: {field}: {message}")
    more = len(exc.errors()) - len(lines)
    if more > 0:
        lines.append(f"... and {more} more error(s)")
    return "\n".join(lines)


def load_spec(user_file: Path | None = None, shipped: Path = SHIPPED_TOPICS) -> TopicsFile:
    """Return the validated topics: the shipped file with `user_file` laid over it."""
    base, base_node = _read_yaml(shipped)
    files: list[tuple[Path, yaml.Node | None]] = [(shipped, base_node)]
    data = base
    if user_file is not None:
        user, user_node = _read_yaml(Path(user_file))
        files.append((Path(user_file), user_node))
        data = overlay(base, user)
    try:
        return TopicsFile.model_validate(data)
    except ValidationError as exc:
        raise TopicsFileError(_describe(exc, files)) from None
