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


#: one test of each kind that needs root: the real sshd board, a network
#: namespace (ADB loss), building the QEMU image, POSIX ACLs of root's files
ROOT_ONLY = [
    "tests/integration/test_ssh_transport.py::test_pull_round_trip",
    "tests/integration/test_adb_loss.py::test_50mb_push_survives_5_percent_loss",
    "tests/integration/test_qemu_vm.py::test_guest_is_an_aarch64_cortex_a72_with_4_cpus",
    "tests/unit/test_sshd_board_cleanup.py::test_revoke_restores_a_directory_that_had_no_acl",
]


def _unprivileged_prefix() -> list[str]:
    """How root runs a command as an ordinary user here: in a user namespace as uid
    1000 (its files stay readable wherever the checkout lives, even under /root),
    else as nobody (the checkout and interpreter must then be world-readable)."""
    userns = ["unshare", "--user", "--map-user=1000", "--map-group=1000", "--"]
    try:
        probe = subprocess.run([*userns, "id", "-u"], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        probe = None
    if probe is not None and probe.returncode == 0 and probe.stdout.strip() == "1000":
        return userns
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def _run_unprivileged(require: str) -> subprocess.CompletedProcess:
    """The project's real root-needing tests, run by an unprivileged user (see
    _unprivileged_prefix when we are root, else ourselves) with an empty cache,
    as a CI runner without root would run them."""
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="gem-hil-unpriv-"))
    try:
        work.chmod(0o777)  # nobody writes its basetemp and cache here
        env = {**os.environ, "GEM_HIL_REQUIRE": require, "PYTHONDONTWRITEBYTECODE": "1",
               "GEM_HIL_CACHE": str(work / "cache"), "HOME": str(work),
               "GEM_HIL_LOCAL_HOME": str(work / "home")}
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = _unprivileged_prefix()
        return subprocess.run([*prefix, sys.executable, "-m", "pytest", "-q", "-rs",
                               "-p", "no:cacheprovider", "--basetemp", str(work / "bt"),
                               *ROOT_ONLY], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_without_root_the_integration_tests_fail_loudly_under_require():
    """The real-device tests need root; a CI run without it must not stay green
    with them skipped: each one fails, naming what it needed."""
    res = _run_unprivileged("1")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    import re

    last = out.strip().splitlines()[-1]  # e.g. "4 errors in 0.6s": a skip at setup errors
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (failed|errors?|passed|skipped)", last)}
    assert counts.get("failed", 0) + counts.get("errors", counts.get("error", 0)) \
        == len(ROOT_ONLY), last
    assert "skipped" not in counts and "passed" not in counts, last
    assert out.count("skipped under GEM_HIL_REQUIRE=1") >= len(ROOT_ONLY), out[-3000:]
    for reason in ("the sshd board needs root", "network namespace unavailable",
                   "building one needs root", "needs root to set ACLs"):
        assert reason in out, (reason, out[-3000:])


def test_without_root_and_without_require_they_skip_with_reasons():
    """A developer's machine: the same tests skip (exit 0) and say why."""
    res = _run_unprivileged("")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert f"{len(ROOT_ONLY)} skipped" in out, out[-3000:]
    assert "the sshd board needs root" in out
