"""The channels file: YAML `channels: {<name>: {kind: ..., topics, mode, ...}}` -> validated configs.

With no channels file, alerts go to the default channels `console` and `file`. Errors name the
file, the line and the field, and never echo a value (it might be a secret).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from crawler.config import get_settings
from monitor.notifiers import KINDS, build, kind_help
from monitor.notifiers.base import ChannelConfig, Notifier
from monitor.notifiers.local import ConsoleConfig, FileConfig

__all__ = [
    "ChannelConfig",
    "ChannelsError",
    "build_notifier",
    "default_channels",
    "kind_help",
    "load_channels",
]

ChannelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
AnyChannel = Annotated[
    Union[tuple(cls.config_model for cls in KINDS.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="kind"),
]


class ChannelsFile(BaseModel):
    """The whole channels file."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[ChannelName, AnyChannel]


class ChannelsError(ValueError):
    """A channels file that cannot be used; the message names file, line and field."""


def default_channels() -> dict[str, ChannelConfig]:
    """Return the channels used when there is no channels file: console and file."""
    return {"console": ConsoleConfig(kind="console"), "file": FileConfig(kind="file")}


def load_channels(path: Path | None = None) -> dict[str, ChannelConfig]:
    """Return the channels of `path`; with None, of ./channels.yaml if present, else the defaults."""
    if path is None:
        path = get_settings().resolved_channels_file()
        if path is None:
            return default_channels()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChannelsError(f"{path}: cannot read channels file: {exc}") from None
    root = _compose(path, text)
    data = yaml.safe_load(text) if root is not None else None
    if not isinstance(data, dict):
        raise ChannelsError(f"{path}:1: expected a mapping with a 'channels' key")
    try:
        parsed = ChannelsFile.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(path, root, error) for error in exc.errors()]
        raise ChannelsError("invalid channels file:\n" + "\n".join(lines)) from None
    return {name: config.with_base_dir(path.parent) for name, config in parsed.channels.items()}


def build_notifier(name: str, config: ChannelConfig) -> Notifier:
    """Return the notifier for channel `name`."""
    return build(name, config)


def _compose(path: Path, text: str) -> yaml.Node | None:
    """Return the YAML node tree of `text`; raise ChannelsError on bad YAML or duplicate keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ChannelsError(f"{where}: {problem}") from None
    if root is not None:
        _check_duplicates(path, root)
    return root


def _check_duplicates(path: Path, node: yaml.Node) -> None:
    """Return None if no mapping in the tree repeats a key; raise ChannelsError if one does."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ChannelsError(
                        f"{path}:{line}: duplicate key {key.value!r} "
                        f"(first at line {seen[key.value]})"
                    )
                seen[key.value] = line
            _check_duplicates(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicates(path, item)


def _field_path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Return an error location without the union tag pydantic inserts after a channel name."""
    if len(loc) > 2 and loc[0] == "channels" and loc[2] in KINDS:
        return loc[:2] + loc[3:]
    return loc


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Return the 1-based line of the deepest part of `loc` present in the YAML tree."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part)
                ),
                None,
            )
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _describe(path: Path, root: yaml.Node | None, error: Any) -> str:
    """Return one validation error as '<file>:<line>: <field>: <problem>' (no input value)."""
    loc = _field_path(tuple(error["loc"]))
    line = _line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    field = ".".join(str(part) for part in loc if part != "[key]") or "(top level)"
    return f"  {where}: {field}: {error['msg']}{_suggestion(error)}"


def _suggestion(error: Any) -> str:
    """Return ' (did you mean ...?)' for a misspelt field of a channel, or ''."""
    loc = tuple(error["loc"])
    if (
        error["type"] != "extra_forbidden"
        or len(loc) != 4
        or loc[0] != "channels"
        or loc[2] not in KINDS
    ):
        return ""
    model = KINDS[str(loc[2])].config_model
    known = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[3]), known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
