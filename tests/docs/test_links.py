"""Every relative link of README.md and docs/ names a file of the repository (and, for a
Markdown page, a heading it has): no reference outside the repository, none broken."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.examples import FENCE, ROOT, documents

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(h) for h in HEADING.findall(text)}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a URL: allowed only to say where a standard or product lives
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(root):
            found.append(f"{target}: outside the repository")
        elif not resolved.exists():
            found.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            found.append(f"{target}: no such heading")
    return found


def test_every_relative_link_resolves_inside_the_repository() -> None:
    broken = {page.relative_to(ROOT).as_posix(): broken_links(page) for page in documents()}
    assert {page: links for page, links in broken.items() if links} == {}


def test_a_link_out_of_the_repository_or_to_a_missing_heading_is_caught(
        tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "runbook.md").write_text("# Runbook\n\n## Duplicate storms\n")
    page = repo / "docs" / "page.md"
    page.write_text("[a](../../shared/DESIGN.md) [b](runbook.md#no-such-section) "
                    "[c](runbook.md#duplicate-storms) [d](gone.md)\n")

    assert broken_links(page, repo) == ["../../shared/DESIGN.md: outside the repository",
                                        "runbook.md#no-such-section: no such heading",
                                        "gone.md: no such file"]
