"""Every relative link of README.md, CONTRIBUTING.md and docs/*.md points to a file that exists
and, when it names a `#section`, to a heading of that file (GitHub's anchor rule: lower case,
punctuation dropped, spaces to hyphens, `-1`, `-2`… for repeats). Links inside code are not
links; absolute URLs (`https:`, `mailto:`) are not checked here."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    return FENCE.sub("", text)


def links(text: str) -> list[str]:
    return LINK.findall(CODE_SPAN.sub("", prose(text)))


def slug(heading: str) -> str:
    heading = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found: set[str] = set()
    for heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def test_the_rules() -> None:
    assert slug("The `rdev` command line") == "the-rdev-command-line"
    assert slug("/docs offline") == "docs-offline"
    assert slug("Listing, configuration, keys, audit") == "listing-configuration-keys-audit"
    text = '[a](x.md) `[b](y.md)`\n```\n[c](z.md)\n# not a heading\n```\n[d](<w.md#s> "t")'
    assert links(text) == ["x.md", "w.md#s"]
    assert prose("# A\n```sh\n# b\n```\n## A\n") == "# A\n\n## A\n"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, broken


def test_the_pages_have_links() -> None:
    assert len(PAGES) > 15
    assert sum(len(links(page.read_text())) for page in PAGES) > 40
