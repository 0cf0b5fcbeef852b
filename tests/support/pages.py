"""Where the tests find the text a user reads: README.md, and the pages of the documentation
site (docs/*.md, which mkdocs.yml lists). A test that runs what the docs show reads it here,
by page name, so that a section moved from one page to another is one change in one place."""
from __future__ import annotations

from tests.support.paths import ROOT

README = "README"
"""The name of README.md among the pages."""
DOCS = ROOT / "docs"


def page(name: str) -> str:
    """The text of README.md (``README``) or of the docs page ``name`` (``"routing"`` is
    docs/routing.md, ``"handoff/benchmarks"`` docs/handoff/benchmarks.md)."""
    path = ROOT / "README.md" if name == README else DOCS / f"{name}.md"
    return path.read_text(encoding="utf-8")


def page_names() -> list[str]:
    """README, then every page of docs/, sub-folders included, by name."""
    return [README, *sorted(path.relative_to(DOCS).with_suffix("").as_posix()
                            for path in DOCS.rglob("*.md"))]


def every_page() -> str:
    """The text of every page, one after the other (README first)."""
    return "\n".join(page(name) for name in page_names())
