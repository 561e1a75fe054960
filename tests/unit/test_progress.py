"""Progress of long steps: plain lines off a terminal or in CI, stderr only, silent on a hit."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import progress

REPO = Path(__file__).resolve().parents[2]


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal (as a person's stderr does)."""

    def isatty(self) -> bool:
        return True


def _qemu_like(stream: io.StringIO) -> list[str]:
    with progress.task("qemu image pi4", stream=stream) as t:
        for i, stage in enumerate(("download", "unpack", "kernel")):
            t.update(stage, done=i, total=3)
            t.log(f"{stage} done in 0.0 s")
        t.update(done=3)
    return stream.getvalue().splitlines()


def _training_like(stream: io.StringIO) -> list[str]:
    with progress.task("build tiny-int8 (onnx)", stream=stream) as t:
        t("train", 0, 40)
        for step in range(1, 41):
            t("train", step, 40)
        t("export to ONNX", 0, None)
    return stream.getvalue().splitlines()


def test_plain_lines_when_the_stream_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert progress.live_allowed(io.StringIO()) is False
    lines = _training_like(io.StringIO())
    # a stage at its start, each quarter and its end: 5 lines for 40 steps, not 41
    assert lines[:-1] == [
        "build tiny-int8 (onnx): train 0/40",
        "build tiny-int8 (onnx): train 10/40",
        "build tiny-int8 (onnx): train 20/40",
        "build tiny-int8 (onnx): train 30/40",
        "build tiny-int8 (onnx): train 40/40",
        "build tiny-int8 (onnx): export to ONNX",
    ]
    assert re.fullmatch(r"build tiny-int8 \(onnx\): done in \d+\.\d s", lines[-1])
    assert not any("\x1b" in line for line in lines)  # no terminal control codes


def test_plain_stage_lines_and_logs_keep_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    lines = _qemu_like(io.StringIO())
    assert lines[:-1] == [
        "qemu image pi4: download 0/3", "qemu image pi4: download done in 0.0 s",
        "qemu image pi4: unpack 1/3", "qemu image pi4: unpack done in 0.0 s",
        "qemu image pi4: kernel 2/3", "qemu image pi4: kernel done in 0.0 s",
        "qemu image pi4: kernel 3/3",
    ]
    assert lines[-1].startswith("qemu image pi4: done in ")


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_ci_gives_plain_lines_even_on_a_terminal(ci: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("TERM", raising=False)
    assert progress.live_allowed(FakeTerminal()) is False
    lines = _training_like(FakeTerminal())
    assert lines[0] == "build tiny-int8 (onnx): train 0/40" and len(lines) == 7
    assert not any("\x1b" in line for line in lines)


def test_a_terminal_outside_ci_gets_a_live_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert progress.live_allowed(FakeTerminal()) is True
    assert progress.live_allowed(FakeTerminal(), {"CI": "false", "TERM": "xterm"}) is True
    assert progress.live_allowed(FakeTerminal(), {"TERM": "dumb"}) is False
    out = FakeTerminal()
    lines = _qemu_like(out)
    text = out.getvalue()
    assert "\x1b[" in text  # rich drew (and cleared) a live bar
    assert any(line.endswith("qemu image pi4: kernel done in 0.0 s") for line in lines)  # kept
    assert "qemu image pi4: done in" in text


def test_nothing_reported_prints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    out = io.StringIO()
    with progress.task("build tiny-int8 (onnx)", stream=out):
        pass  # a cache hit: the builder never calls back
    assert out.getvalue() == ""


def test_a_failure_says_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    out = io.StringIO()
    with pytest.raises(RuntimeError), progress.task("qemu image pi4", stream=out) as t:
        t.update("kernel")
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("qemu image pi4: failed after ")


def test_training_reports_every_step_to_its_callback() -> None:
    pytest.importorskip("torch", reason="training needs torch (pip install torch==2.13.0)")
    from gem.config import get_config
    from gem.data import generate_dataset
    from gem.model import build_model
    from gem.train import TrainOptions, train

    seen: list[tuple[int, int]] = []
    net = build_model(get_config("tiny"), seed=0)
    train(net, generate_dataset(n_per_domain=4, seed=0), TrainOptions(steps=3, batch_size=4),
          on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_artifact_build_progress_goes_to_stderr_never_stdout(tmp_path: Path) -> None:
    """A real build in a child whose stderr is a pipe: plain stage lines there, stdout empty."""
    pytest.importorskip("torch", reason="building GEM tiny needs torch (pip install torch==2.13.0)")
    pytest.importorskip("onnx", reason="building GEM tiny needs onnx")
    from tests.support.corpus import require_corpus

    require_corpus()
    code = ("import sys; from harness.artifacts import build_artifact; "
            f"build_artifact('tiny', 'fp32', cache_dir={str(tmp_path)!r})")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if line.startswith("build tiny-fp32")]
    stages = [line.split(": ", 1)[1] for line in lines]
    assert stages[0].startswith("train 0/") and re.fullmatch(r"train (\d+)/\1", stages[4])
    assert stages[5:] == ["quality on the hold-out", "export to ONNX",
                          "check ONNX against torch", "export prefill + decode graphs",
                          "reference outputs", "manifest", stages[-1]]
    assert stages[-1].startswith("done in ")
    # and a cache hit of the same build prints nothing at all
    again = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == "" and "build tiny" not in again.stderr
