"""MkDocs hooks (mkdocs.yml, ``hooks:``). The pages are GitHub's Markdown, read on GitHub as they
are and built into the site by MkDocs; this evens out where the two read them differently.

A ``|`` in a table cell, even inside a code span, is written ``\\|`` for GitHub, which shows
``|``; Python-Markdown shows the backslash too (it needs no escape: it keeps a code span's
pipes in its cell). The generated options table (docs/options.md) has such cells
(``--user NAME\\|UID``).
"""
from __future__ import annotations

import re

CELL = re.compile(r"<td>.*?</td>", re.S)


def on_page_content(html: str, **_context: object) -> str:
    """The page's HTML with each table cell's ``\\|`` shown as ``|``, as GitHub shows it."""
    return CELL.sub(lambda cell: cell[0].replace("\\|", "|"), html)
