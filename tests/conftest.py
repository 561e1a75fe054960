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


@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private login directory for the `local` device in this test."""
    home = tmp_path / "device-home"
    monkeypatch.setenv("GEM_HIL_LOCAL_HOME", str(home))
    return home
