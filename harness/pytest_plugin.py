"""The gem-hil pytest plugin: options, fixtures, markers, summary table.

Registered through the `pytest11` entry point, so `pytest --device=pi4` works
in any checkout that has gem-hil installed. This plugin owns every
command-line option (pytest-embedded style); other modules receive values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.artifacts import LocalArtifact, build_artifact, format_for_runtime
from harness.bench import BenchOutcome, DeviceSession
from harness.budgets import parse_budget_override
from harness.errors import HarnessError
from harness.profiles import DeviceProfile, load_profile
from harness.report import summary_lines

MARKERS = {
    "device": "runs on the device chosen with --device (the GEM device suite)",
    "qemu": "needs qemu-system-aarch64 and the emulated Pi 4 image",
    "adb": "talks the ADB protocol (adb-shell) to a device or the test peer",
    "ssh": "needs a real OpenSSH sshd (started by the fixture)",
    "slow": "takes more than a few seconds",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gem-hil", "gem-hil device harness")
    group.addoption("--device", default="local", metavar="NAME",
                    help="device profile from the targets dir to run the GEM suite on "
                         "(default: local = this host)")
    group.addoption("--targets-dir", default=None, metavar="DIR",
                    help="folder of device profiles (default: targets/ of the checkout)")
    group.addoption("--report-dir", default="reports", metavar="DIR",
                    help="where result records are written (default: reports/)")
    group.addoption("--budget", action="append", default=[], metavar="METRIC=VALUE",
                    help="override a budget for this run, e.g. --budget latency_p95_ms=40 "
                         "(repeatable)")
    group.addoption("--gem-model", default=None, metavar="NAME",
                    help="GEM config to benchmark (default: the profile's [run] model)")
    group.addoption("--gem-variant", default=None, metavar="VARIANT",
                    help="artifact variant, fp32 or int8 (default: the profile's)")
    group.addoption("--artifact-cache", default=None, metavar="DIR",
                    help="artifact cache folder (default: $GEM_HIL_CACHE or ~/.cache/gem-hil)")
    group.addoption("--accept-new-host-key", action="store_true", default=False,
                    help="trust an SSH host key seen for the first time and record it in "
                         "known_hosts (a changed key is always refused)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    state = GemState(config)
    config.stash[STATE_KEY] = state
    try:
        state.budget_overrides = dict(parse_budget_override(b) for b in
                                      config.getoption("--budget"))
        # a wrong --device or a broken profile is a usage error before any test runs
        state.profile = load_profile(config.getoption("--device"), _targets_dir(config))
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


@dataclass
class GemState:
    config: pytest.Config
    budget_overrides: dict[str, float] = field(default_factory=dict)
    outcomes: list[BenchOutcome] = field(default_factory=list)
    profile: DeviceProfile | None = None
    gate_exit_code: int | None = None
    run_id: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))

    def report_dir(self, device: str) -> Path:
        base = Path(self.config.getoption("--report-dir"))
        if not base.is_absolute():
            base = Path(self.config.rootpath) / base
        return base / f"{self.run_id}_{device}"


STATE_KEY = pytest.StashKey[GemState]()


def _targets_dir(config: pytest.Config) -> Path | None:
    value = config.getoption("--targets-dir")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def gem_profile(pytestconfig: pytest.Config) -> DeviceProfile:
    """The profile named by --device (loaded and checked when pytest starts)."""
    profile = pytestconfig.stash[STATE_KEY].profile
    assert profile is not None
    return profile


@pytest.fixture(scope="session")
def gem_device(gem_profile: DeviceProfile, pytestconfig: pytest.Config) -> Iterator[DeviceSession]:
    """The opened device (transport + platform), one per session."""
    session = DeviceSession(gem_profile,
                            accept_new_host_key=pytestconfig.getoption("--accept-new-host-key"))
    yield session
    session.close()


@pytest.fixture(scope="session")
def gem_artifact(gem_profile: DeviceProfile, pytestconfig: pytest.Config) -> LocalArtifact:
    """The GEM artifact for this device, from the content-hash cache or built now."""
    model = pytestconfig.getoption("--gem-model") or gem_profile.run.model
    variant = pytestconfig.getoption("--gem-variant") or gem_profile.run.variant
    cache = pytestconfig.getoption("--artifact-cache")
    return build_artifact(model, variant, format_for_runtime(gem_profile.runtime),
                          Path(cache) if cache else None)


@pytest.fixture(scope="session")
def gem_bench(gem_device: DeviceSession, gem_artifact: LocalArtifact,
              pytestconfig: pytest.Config) -> Callable[..., BenchOutcome]:
    """run(name="latency") -> BenchOutcome; each benchmark runs once per session
    and its record is written as soon as it ends."""
    state = pytestconfig.stash[STATE_KEY]
    done: dict[str, BenchOutcome] = {}

    def run(name: str = "latency") -> BenchOutcome:
        if name not in done:
            outcome = gem_device.run_benchmark(
                gem_artifact, name=name, budget_overrides=state.budget_overrides,
                report_dir=state.report_dir(gem_device.profile.name), run_id=state.run_id)
            state.outcomes.append(outcome)
            done[name] = outcome
        return done[name]

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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Make pytest's exit status agree with `gem-hil gate` on the same records:
    1 when a budget failed, 2 when only inconclusive or invalid results stand in
    the way of a pass. A failure outside the device suite keeps pytest's own 1."""
    state = session.config.stash.get(STATE_KEY, None)
    if not state or not state.outcomes or exitstatus not in (0, 1):
        return
    from harness.gate import gate_records

    report = gate_records([(o.path or Path("-"), o.record) for o in state.outcomes])
    state.gate_exit_code = report.exit_code
    if report.exit_code in (1, 2) and not _failures_outside_device_suite(session):
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
    if not state or not state.outcomes:
        return
    terminalreporter.section("gem-hil budgets")
    for line in summary_lines([o.record for o in state.outcomes]):
        terminalreporter.write_line(line)
    for o in state.outcomes:
        if o.path:
            terminalreporter.write_line(f"record: {o.path}")
    if state.gate_exit_code is not None:
        word = {0: "PASS", 1: "FAIL", 2: "INCONCLUSIVE"}.get(state.gate_exit_code, "?")
        terminalreporter.write_line(f"gate: {word} (exit code {state.gate_exit_code}, "
                                    "as `gem-hil gate` gives on these records)")
