"""The gem-hil pytest plugin: options, fixtures, markers, summary table.

Registered through the `pytest11` entry point, so `pytest --device=pi4` works
in any checkout that has gem-hil installed. This plugin owns every
command-line option (pytest-embedded style); other modules receive values.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import interrupts
from harness.artifacts import LocalArtifact
from harness.bench import BenchOutcome, DeviceSession
from harness.errors import HarnessError
from harness.plan import OPTIONS, RunPlan, add_pytest_options, make_plan
from harness.profiles import DeviceProfile
from harness.report import summary_lines

MARKERS = {
    "device": "runs on the device chosen with --device (the GEM device suite)",
    "qemu": "needs qemu-system-aarch64 and the emulated Pi 4 image",
    "adb": "talks the ADB protocol (adb-shell) to a device or the test peer",
    "ssh": "needs a real OpenSSH sshd (started by the fixture)",
    "slow": "takes more than a few seconds",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """The shared run options (harness.plan.OPTIONS), in one "gem-hil" group."""
    add_pytest_options(parser.getgroup("gem-hil", "gem-hil device harness"))


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    state = GemState(config)
    config.stash[STATE_KEY] = state
    # SIGTERM (how CI cancels a job) unwinds like Ctrl-C: the running benchmark
    # stops the agent on the device and writes its "interrupted" record, then
    # pytest ends the session as for a KeyboardInterrupt
    state.signals.enter_context(interrupts.signals_as_exceptions())
    values = {o.dest: config.getoption(o.dest) for o in OPTIONS}
    try:
        # a wrong --device, a broken profile or a bad --budget is a usage error
        # before any test runs (and before anything is built or pushed)
        state.plan = make_plan(values, base_dir=Path(config.rootpath))
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


@dataclass
class GemState:
    """What the plugin knows across one pytest session."""

    config: pytest.Config
    plan: RunPlan | None = None
    #: benchmark name -> its outcome, or the error it failed with: a benchmark
    #: runs once per session, whatever happened
    benchmarks: dict[str, BenchOutcome | HarnessError] = field(default_factory=dict)
    gate_exit_code: int | None = None
    gate_error: str | None = None
    signals: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


STATE_KEY = pytest.StashKey[GemState]()


def _plan(config: pytest.Config) -> RunPlan:
    plan = config.stash[STATE_KEY].plan
    assert plan is not None
    return plan


@pytest.fixture(scope="session")
def gem_plan(pytestconfig: pytest.Config) -> RunPlan:
    """The session's run plan (device, artifact choice, report folder, overrides)."""
    return _plan(pytestconfig)


@pytest.fixture(scope="session")
def gem_profile(gem_plan: RunPlan) -> DeviceProfile:
    """The profile named by --device (loaded and checked when pytest starts)."""
    return gem_plan.profile


@pytest.fixture(scope="session")
def gem_device(gem_plan: RunPlan) -> Iterator[DeviceSession]:
    """The opened device (transport + platform), one per session."""
    session = gem_plan.open_device()
    yield session
    session.close()


@pytest.fixture(scope="session")
def gem_artifact(gem_plan: RunPlan) -> LocalArtifact:
    """The GEM artifact for this device, from the content-hash cache or built now.

    A failed build writes one failure record; pytest keeps a session fixture's
    error, so every test that needs the artifact reports that same failure."""
    return gem_plan.build_artifact()


@pytest.fixture(scope="session")
def gem_bench(gem_device: DeviceSession, gem_artifact: LocalArtifact,
              pytestconfig: pytest.Config) -> Callable[..., BenchOutcome]:
    """run(name="latency") -> BenchOutcome.

    Each benchmark runs ONCE per session and its record is written as soon as
    it ends. A failed benchmark is not run again by the next test that asks
    for it: that test fails with the same error and the same record, so one
    failure is one failure record and the gate sees the session as it was."""
    state = pytestconfig.stash[STATE_KEY]
    plan = _plan(pytestconfig)
    ab = plan.build_artifact(plan.ab_variant) if plan.ab_variant else None

    def run(name: str = "latency") -> BenchOutcome:
        if name not in state.benchmarks:
            try:
                outcome = gem_device.run_benchmark(
                    gem_artifact, name=name, budget_overrides=plan.budget_overrides,
                    report_dir=plan.report_dir, run_id=plan.run_id, ab_baseline=ab)
            except HarnessError as exc:
                state.benchmarks[name] = exc
                raise
            state.benchmarks[name] = outcome
        done = state.benchmarks[name]
        if isinstance(done, HarnessError):
            pytest.fail(f"benchmark {name!r} already failed in this session (not re-run): "
                        f"{done}", pytrace=False)
        return done

    return run


@pytest.fixture
def gem_record(gem_bench: Callable[..., BenchOutcome], request: pytest.FixtureRequest
               ) -> dict[str, Any]:
    """The latency benchmark's record, attached to the test as JUnit properties."""
    outcome = gem_bench("latency")
    rec = outcome.record
    request.node.user_properties.extend([
        ("gem_record_path", str(outcome.path)),
        ("gem_device", rec["device"]["name"]),
        ("gem_artifact_sha256", rec["artifact"]["sha256"]),
        ("gem_overall_verdict", rec["overall_verdict"]),
        ("gem_verdicts", json.dumps([{k: v[k] for k in ("metric", "measured", "limit",
                                                        "verdict")} for v in rec["verdicts"]])),
    ])
    return rec


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None:
        state.signals.close()  # the signal handlers pytest had before


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Judge this session's records exactly as `gem-hil gate` judges them.

    The gate reads the session's report folder (failure records included) with
    the same profile search path, so the summary line and `gem-hil gate
    --results <folder>` cannot disagree. pytest's exit status then follows the
    gate: 1 when a budget failed or a run failed, 2 when only inconclusive or
    invalid results stand in the way of a pass. A failure outside the device
    suite keeps pytest's own 1."""
    state = session.config.stash.get(STATE_KEY, None)
    if not state or state.plan is None or not state.plan.report_dir.is_dir():
        return
    from harness.gate import run_gate

    try:
        report = run_gate(state.plan.report_dir, None, state.plan.targets_dir)
    except HarnessError as exc:
        state.gate_error = str(exc)
        return
    state.gate_exit_code = report.exit_code
    if exitstatus in (0, 1) and report.exit_code in (1, 2) \
            and not _failures_outside_device_suite(session):
        session.exitstatus = report.exit_code


def _failures_outside_device_suite(session: pytest.Session) -> bool:
    """True when a test failed that is not part of the GEM device suite (whose
    failures are the gate's verdicts seen test by test)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    failed = reporter.stats.get("failed", []) + reporter.stats.get("error", []) \
        if reporter else []
    if session.testsfailed > len(failed):
        return True
    return any("device" not in r.keywords for r in failed)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    state = config.stash.get(STATE_KEY, None)
    if not state or state.plan is None or not state.plan.report_dir.is_dir():
        return
    from harness.gate import load_records

    records = [rec for _, rec in load_records(state.plan.report_dir, "--report-dir")]
    terminalreporter.section("gem-hil budgets")
    for line in summary_lines(records):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"records: {state.plan.report_dir}")
    if state.gate_error:
        terminalreporter.write_line(f"gate: could not be computed: {state.gate_error}")
    elif state.gate_exit_code is not None:
        word = {0: "PASS", 1: "FAIL", 2: "INCONCLUSIVE"}.get(state.gate_exit_code, "?")
        terminalreporter.write_line(f"gate: {word} (exit code {state.gate_exit_code}, as "
                                    f"`{shlex.join(state.plan.gate_argv())}` gives)")
