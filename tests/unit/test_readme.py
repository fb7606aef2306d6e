"""The Markdown docs render as written (CommonMark) and name only real make targets.

A closing fence with text after it is not a closing fence in CommonMark: the
code block then runs on and swallows the headings and tables below it, which
a reader sees as one grey box. Rendering with markdown-it-py (CommonMark plus
tables, as GitHub and most viewers do) finds that before a reader does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[2]
DOCS = [path for path in (REPO / "README.md", REPO / "bench" / "README.md",
                          REPO / "deploy" / "ansible" / "README.md", REPO / "CONTRIBUTING.md")
        if path.exists()]
HEADING = re.compile(r"^#{2,6} \S")
TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*$")
MAKE_COMMAND = re.compile(r"(?:^|[\s;&|(`])make\s+((?:[A-Z_]+=\S+\s+)*)([a-z][a-z0-9-]*)")
CLOSING_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*$")


def render(path: Path):
    return MarkdownIt("commonmark").enable("table").parse(path.read_text())


def fences(path: Path):
    lines = path.read_text().splitlines()
    for token in render(path):
        if token.type == "fence":
            yield token, lines


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_code_fence_closes(path):
    for token, lines in fences(path):
        start, end = token.map
        last = lines[end - 1] if end - 1 < len(lines) else ""
        closing = CLOSING_FENCE.match(last)
        assert end - start >= 2 and closing and closing.group(1)[0] == token.markup[0] \
            and len(closing.group(1)) >= len(token.markup), (
            f"{path.name}:{start + 1}: the fence opened here does not close before line {end} "
            f"(a closing fence takes no text after it)")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_fence_line_ends_up_inside_a_code_block(path):
    # "``` text" meant as a close is content, and the block runs on to the
    # next bare fence, turning the prose between into code.
    for token, _ in fences(path):
        for offset, line in enumerate(token.content.splitlines(), start=token.map[0] + 2):
            marker = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
            assert not (marker and marker.group(1)[0] == token.markup[0]
                        and len(marker.group(1)) >= len(token.markup)), (
                f"{path.name}:{offset}: a fence inside the code block opened on line "
                f"{token.map[0] + 1} (text after a closing fence makes it content)")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_code_block_swallows_a_heading_or_a_table(path):
    for token, _ in fences(path):
        for offset, line in enumerate(token.content.splitlines(), start=token.map[0] + 2):
            assert not HEADING.match(line), f"{path.name}:{offset}: a heading inside a code block"
            assert not TABLE_RULE.match(line), f"{path.name}:{offset}: a table inside a code block"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_document_has_its_headings(path):
    # Rendered headings equal the ATX headings written outside code blocks:
    # nothing turned into code, nothing swallowed.
    tokens = render(path)
    rendered = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    written, fence = [], None
    for line in path.read_text().splitlines():
        marker = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if fence is None and marker:
            fence = marker.group(1)
        elif fence is not None and CLOSING_FENCE.match(line) and line.strip()[0] == fence[0] \
                and len(line.strip()) >= len(fence):
            fence = None
        elif fence is None and re.match(r"^#{1,6} ", line):
            written.append(line.lstrip("#").strip())
    assert rendered == written


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def named_make_commands(path: Path) -> set[str]:
    """``make X`` in code (inline spans and blocks): what a reader would paste."""
    code = []
    for token in render(path):
        if token.type == "fence":
            code.append(token.content)
        for child in token.children or ():
            if child.type == "code_inline":
                code.append(child.content)
    return {match.group(2) for snippet in code for match in MAKE_COMMAND.finditer(snippet)}


def test_every_make_target_the_readme_names_exists():
    named = named_make_commands(REPO / "README.md")
    assert {"run", "test"} <= named, "README.md should show `make run` and `make test`"
    missing = named - make_targets()
    assert not missing, f"README.md names make targets the Makefile lacks: {sorted(missing)}"
