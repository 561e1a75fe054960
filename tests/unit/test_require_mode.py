"""GEM_HIL_REQUIRE=1 (CI) turns a skip into a failure that names its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SKIPPING = '''
import pytest

def test_needs_a_thing():
    pytest.skip("needs /usr/sbin/nosuchd")
'''
MODULE_SKIP = '''
import pytest
pytest.importorskip("nosuchmodule_gemhil", reason="needs nosuchmodule_gemhil")

def test_x():
    pass
'''


def _run(tmp_path: Path, require: str, text: str = SKIPPING) -> subprocess.CompletedProcess:
    """pytest on a probe file in tmp_path with the project's conftest loaded as a plugin."""
    test = tmp_path / "test_probe.py"
    test.write_text(text)
    env = {**os.environ, "GEM_HIL_REQUIRE": require, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "tests.conftest", "--rootdir", str(tmp_path), str(test)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)


def test_skip_is_a_failure_under_require(tmp_path):
    res = _run(tmp_path, "1")
    assert res.returncode == 1, res.stdout
    assert "skipped under GEM_HIL_REQUIRE=1" in res.stdout
    assert "needs /usr/sbin/nosuchd" in res.stdout


def test_skip_stays_a_skip_on_a_developer_machine(tmp_path):
    res = _run(tmp_path, "")
    assert res.returncode == 0, res.stdout
    assert "1 skipped" in res.stdout


def test_module_level_skip_is_a_failure_under_require(tmp_path):
    res = _run(tmp_path, "1", MODULE_SKIP)
    assert res.returncode != 0, res.stdout
    assert "module skipped under GEM_HIL_REQUIRE=1" in res.stdout
