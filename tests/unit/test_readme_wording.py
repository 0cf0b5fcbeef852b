"""The README and the docs speak to a user: the README states where the project runs, and no
page holds wording of the project's own history (issue numbers, "before … now", what a session
of work did)."""
from __future__ import annotations

import configparser
import re

import pytest

from tests.support.paths import ROOT
from tests.support.pages import README, page, page_names

TEXT = "\n".join(page(name) for name in page_names() if not name.endswith("benchmarks"))
"""README and every page of the docs but the benchmark's reports, which ``bench.run`` writes
(their verdicts say "met" and "not met" of the benchmark's targets)."""


@pytest.mark.parametrize("internal", [
    r"\bissue \d+", r"#\d{1,4}\b", r"\bused to be\b", r"\bbefore the change\b",
    r"\bbefore, [\d.]+ ?\w+ now\b", r"\b[\d.]+ ?\w+ before\b", r"\blast session\b",
    r"\bthis session\b", r"\ban older one\b", r"\bearlier version\b", r"\bnot met\b",
])
def test_readme_has_no_internal_wording(internal):
    found = [line for line in TEXT.splitlines() if re.search(internal, line, re.I)]
    assert not found, found


def test_readme_states_linux_only_and_the_python_versions():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    oldest = setup["options"]["python_requires"].removeprefix(">=")
    intro = page(README).split("## Quick start")[0]
    assert "Linux only" in intro
    assert f"Python {oldest} or newer" in intro
