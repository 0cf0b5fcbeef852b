"""The benchmark's choices that need no measurement: which targets run, and the hand-off verdict."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import report
from bench.run import QUICK, make_targets, pick
from bench.targets import RedisServer


def names(targets: list) -> list[str]:
    return [t.name for t in targets]


def test_a_baseline_version_adds_its_relay_cluster_beside_ours(tmp_path: Path) -> None:
    targets = make_targets(QUICK, RedisServer(), ("v1", tmp_path))
    assert "relay-2" in names(targets) and "relay-2@v1" in names(targets)
    assert next(t for t in targets if t.name == "relay-2@v1").root == tmp_path


def test_picking_targets_keeps_the_base_of_the_ratios() -> None:
    targets = make_targets(QUICK, RedisServer())
    assert names(pick(targets, ["relay-2"])) == [report.BASE, "relay-2"]
    assert pick(targets, None) == targets


def test_an_unknown_target_name_lists_the_names_there_are() -> None:
    with pytest.raises(ValueError, match=r"no target relay-9; there are: .*relay-2"):
        pick(make_targets(QUICK, RedisServer()), ["relay-2", "relay-9"])


@pytest.mark.parametrize(("ours", "theirs", "met"), [(100, 98, True), (112, 98, True),
                                                     (120, 98, False)])
def test_the_hand_off_verdict_allows_the_noise_of_one_version(ours: float, theirs: float,
                                                              met: bool) -> None:
    medians = {"relay-2": {"hs_master_us": ours}, "relay-2@main": {"hs_master_us": theirs}}
    [verdict] = report.handoff_verdicts(medians, "main")
    assert verdict.met is met
    assert f"{ours} µs, {theirs} µs at main" in verdict.text


def test_the_hand_written_end_of_the_page_is_kept(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    assert report.hand_written(page) == []
    page.write_text("# Benchmarks\n\nmeasured\n\n" + report.HAND_WRITTEN + "\n## Against v1\n\n")
    kept = report.hand_written(page)
    assert kept == [report.HAND_WRITTEN, "## Against v1", ""]
    page.write_text("# Benchmarks\n\nmeasured again\n\n" + "\n".join(kept))
    assert report.hand_written(page) == kept
