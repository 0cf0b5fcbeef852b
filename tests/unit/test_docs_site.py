"""The documentation site builds clean, and the README's links lead into it.

MkDocs builds docs/ (mkdocs.yml) in this process, as ``make docs-build`` does: strict, so a
warning fails it, with validation set so that a broken link or anchor, or a page that the
nav does not list, is a warning. The README is read on GitHub rather than on the site: its
relative links are checked here. The README and the site's first pages share some text (what
sticky-cluster is; installing it and the targets table): it must stay the same in both.
"""
from __future__ import annotations

import logging
import re

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.exceptions import Abort

from tests.support.paths import ROOT
from tests.support.pages import README, page

LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)


def test_the_site_builds_without_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mkdocs")
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path / "site"))
    assert config.strict, "mkdocs.yml must say strict: true"
    for kind, checks in (("nav", ("omitted_files", "not_found", "absolute_links")),
                         ("links", ("not_found", "anchors", "absolute_links",
                                    "unrecognized_links"))):
        for check in checks:
            assert config.validation[kind][check] >= logging.WARNING, (kind, check)
    try:
        build(config)
    except Abort as error:  # strict: the warnings say why
        aborted = [str(error)]
    else:
        aborted = []
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno >= logging.WARNING]
    assert not warnings + aborted, "\n".join(warnings + aborted)
    options = (tmp_path / "site" / "options" / "index.html").read_text(encoding="utf-8")
    assert "<code>--user NAME|UID</code>" in options  # a cell's \| shows | as on GitHub


def slug(heading: str) -> str:
    """The anchor GitHub and MkDocs both give a plain heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def readme_links() -> list[str]:
    """The relative links of README.md (not the web addresses, not those in code blocks)."""
    text = FENCE.sub("", page(README))
    return [link for link in LINK.findall(text) if "://" not in link]


def test_readme_links_lead_to_pages_and_their_headings():
    links = readme_links()
    assert "docs/index.md" in links and "docs/options.md" in links, links
    for link in links:
        path, _hash, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README links to {link}, which is not there"
        if anchor:
            headings = {slug(heading) for heading in HEADING.findall(
                FENCE.sub("", target.read_text(encoding="utf-8")))}
            assert anchor in headings, f"README links to {link}: no such heading"


@pytest.mark.parametrize("start, end, name", [
    ("# sticky-cluster\n", "## Quick start\n", "index"),
    ("In your own project:", "\n## ", "quick-starts"),
])
def test_readme_and_the_site_say_the_same(start, end, name):
    readme = page(README)
    shared = readme[readme.index(start):]
    shared = shared[:shared.index(end, len(start))].strip()
    assert shared in page(name), f"README and docs/{name}.md differ in {start!r}"
