"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.artifacts import LocalArtifact, load_artifact


@pytest.fixture(scope="session")
def fixture_artifact(tmp_path_factory: pytest.TempPathFactory) -> LocalArtifact:
    """A real (tiny, torch-free) ONNX classifier artifact with references."""
    pytest.importorskip("onnx", reason="onnx is needed to write the fixture artifact")
    from tests.support.onnx_artifact import make_artifact

    return load_artifact(make_artifact(tmp_path_factory.mktemp("artifact")))


@pytest.fixture(scope="session")
def tflite_artifact(tmp_path_factory: pytest.TempPathFactory) -> LocalArtifact:
    """A real two-bucket LiteRT classifier artifact (litert-torch, no GEM training)."""
    pytest.importorskip("litert_torch", reason="litert-torch (the litert extra) is needed to "
                                               "write the LiteRT fixture artifact")
    from tests.support.tflite_artifact import make_tflite_artifact

    return load_artifact(make_tflite_artifact(tmp_path_factory.mktemp("tflite-artifact")))


@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private login directory for the `local` device in this test."""
    home = tmp_path / "device-home"
    monkeypatch.setenv("GEM_HIL_LOCAL_HOME", str(home))
    return home


# -- no silent skips in CI ------------------------------------------------------
#
# A test that needs sshd, QEMU, adb, nftables, root or an optional package skips
# with its reason on a developer's machine. In CI those are installed on
# purpose, so a skip there means an integration test silently did not run:
# with GEM_HIL_REQUIRE=1 (.ci/run sets it) every skip becomes a failure that
# names the reason. Tests that deselect themselves by a marker are unaffected.


def _required() -> bool:
    import os

    return os.environ.get("GEM_HIL_REQUIRE", "").strip() not in ("", "0")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if _required() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (f"skipped under GEM_HIL_REQUIRE=1 (CI installs what this test "
                           f"needs, so it must run): {_skip_reason(report)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if _required() and report.skipped:
        report.outcome = "failed"
        report.longrepr = (f"module skipped under GEM_HIL_REQUIRE=1: "
                           f"{_skip_reason(report)}")
