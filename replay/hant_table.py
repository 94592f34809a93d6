"""Maintenance tool: rebuild `data/hant.tsv` from the texts in `data/` (needs OpenCC).

Run `python -m replay.hant_table` after adding simplified text to a converted site's data.
The replay itself reads only the table, so it runs with the standard library alone.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CONVERTED_SOURCES = ["templates.toml", "kaiping", "liangjiang"]
# Where OpenCC's one-character choice is not the one government texts use (U+7C3D, not U+7C64).
OVERRIDES = {"\u7b7e": "\u7c3d"}


def needed_characters() -> set[str]:
    """Return every character used in the data files of the converted sites."""
    chars: set[str] = set()
    for name in CONVERTED_SOURCES:
        path = DATA / name
        if not path.exists():
            continue
        files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
        for file in files:
            chars.update(file.read_text(encoding="utf-8"))
    return chars


def build_table() -> list[tuple[str, str]]:
    """Return (simplified, traditional) pairs for the characters OpenCC changes."""
    import opencc  # type: ignore[import-untyped]

    converter = opencc.OpenCC("s2tw")
    pairs = []
    for char in sorted(needed_characters()):
        traditional = OVERRIDES.get(char) or converter.convert(char)
        if traditional != char and len(traditional) == 1:
            pairs.append((char, traditional))
    return pairs


def main() -> None:
    """Write `data/hant.tsv`."""
    header = "# Simplified -> traditional, one character a line; built by replay/hant_table.py.\n"
    lines = [f"{s}\t{t}" for s, t in build_table()]
    (DATA / "hant.tsv").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} characters")


if __name__ == "__main__":
    main()
