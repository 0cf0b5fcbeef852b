"""sticky-cluster's own packages against an app's modules named like them, decided without a
process: which of the app's modules shadow ours, which of its imports reach them, and the
loader's refusal of a target named like ours. (A real master beside such modules:
tests/e2e/test_own_code.py.)"""
from __future__ import annotations

import pytest

from cluster.setup import own
from workers.loader import TargetError, import_target


def test_imports_of_shadows_finds_absolute_imports_only(tmp_path):
    (tmp_path / "workers.py").write_text("")
    (tmp_path / "app.py").write_text("from . import workers\nimport os\nimport workers.jobs as j\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "lib.py").write_text("import workers\n")
    shadowed = own.shadows([str(tmp_path)])
    assert own.imports_of_shadows(shadowed) == [
        (str(tmp_path / "app.py"), 3, "workers", str(tmp_path / "workers.py"))]


def test_shadows_lists_only_modules_found_before_ours(tmp_path):
    (tmp_path / "workers.py").write_text("")
    (tmp_path / "cluster").mkdir()  # a bare directory is no module: ours is still found
    assert own.shadows([str(tmp_path), own.ROOT]) == [("workers", str(tmp_path / "workers.py"))]
    assert own.shadows([own.ROOT, str(tmp_path)]) == []
    (tmp_path / "cluster" / "__init__.py").write_text("")
    assert ("cluster", str(tmp_path / "cluster" / "__init__.py")) in own.shadows([str(tmp_path)])


def test_the_loader_refuses_a_target_named_like_our_packages():
    for target in ("workers:sio", "cluster.app:sio", "cluster.protocol:sio"):
        with pytest.raises(TargetError, match="sticky-cluster's own package"):
            import_target(target)
