"""The repository explains itself: what the code cites is in the repository.

Docstrings and comments cite `docs/upstream-apis.md#<anchor>` (a heading of that page, GitHub's anchor rules) and
other `docs/*.md` pages, never the team handbook's section numbers or a path on a build machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("shared", "api", "server", "tests", "bench")
UPSTREAM_DOC = ROOT / "docs" / "upstream-apis.md"
# Built from parts so that this file does not match what it looks for.
HANDBOOK_SECTION = "upstream-apis.md " + "\N{SECTION SIGN}"
BUILD_MACHINE_PATH = re.compile(r"(?<![\w.])/" + "work" + r"/")
# The page and an anchor, optionally followed by more anchors after `, ` or ` and ` (several sections in one breath).
UPSTREAM_REFERENCE = re.compile(r"docs/upstream-apis\.md((?:#[\w-]+(?:,\s*|\s+and\s+)?)+)")
DOC_PAGE = re.compile(r"\bdocs/([\w-]+\.md)\b")


def python_files() -> list[Path]:
    return [path for name in CODE_DIRS for path in sorted((ROOT / name).rglob("*.py"))]


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path: Path) -> set[str]:
    return {anchor(line.lstrip("#")) for line in path.read_text().splitlines() if re.match(r"#{1,6} ", line)}


def cited_anchors() -> dict[str, list[str]]:
    """Every section of the upstream page that the code cites, with where it is cited."""
    cited: dict[str, list[str]] = {}
    for path in python_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in UPSTREAM_REFERENCE.finditer(line):
                for name in re.findall(r"#([\w-]+)", match.group(1)):
                    cited.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{number}")
    return cited


def test_the_anchor_rule_matches_github_headings() -> None:
    assert anchor(" Amplitude: users (active and new)") == "amplitude-users-active-and-new"
    assert anchor("RevenueCat: v1 subscribers (never called)") == "revenuecat-v1-subscribers-never-called"


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_source_file_cites_the_handbook_or_a_build_machine_path(path: Path) -> None:
    text = path.read_text()
    assert HANDBOOK_SECTION not in text
    assert not BUILD_MACHINE_PATH.search(text)


def test_every_upstream_section_the_code_cites_is_a_heading_of_the_page() -> None:
    cited = cited_anchors()
    assert cited, "no docs/upstream-apis.md#... reference found: the pattern is broken"
    missing = {name: where for name, where in cited.items() if name not in headings(UPSTREAM_DOC)}
    assert missing == {}


def test_every_section_link_inside_the_docs_points_at_a_heading() -> None:
    targets = {UPSTREAM_DOC.name: headings(UPSTREAM_DOC)}
    broken: list[str] = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for target, name in re.findall(r"\]\(([\w-]*\.md)?#([\w-]+)\)", page.read_text()):
            wanted = target or page.name
            if wanted not in targets:
                targets[wanted] = headings(ROOT / "docs" / wanted) if (ROOT / "docs" / wanted).is_file() else set()
            if name not in targets[wanted]:
                broken.append(f"{page.name} -> {wanted}#{name}")
    assert broken == []


def test_every_docs_page_the_code_mentions_exists() -> None:
    mentioned = {name for path in python_files() for name in DOC_PAGE.findall(path.read_text())}
    assert "upstream-apis.md" in mentioned
    assert sorted(name for name in mentioned if not (ROOT / "docs" / name).is_file()) == []
