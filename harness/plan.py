"""The run plan: what one run does, whichever front door asked for it.

`gem-hil bench`, `pytest --device=...` and the device farm all turn their
options into the same RunPlan, so overrides, the model/variant choice, the
artifact build, the run id and the report folder are decided in one place and
cannot drift between them. The options themselves are declared once (OPTIONS):
the pytest plugin registers them (it owns pytest's command line) and the CLI
adds the same definitions to its sub-commands.
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError, HarnessError
from harness.profiles import VARIANTS, DeviceProfile, load_profile

if TYPE_CHECKING:
    from harness.artifacts import LocalArtifact
    from harness.bench import DeviceSession



@dataclass(frozen=True)
class Option:
    """One command-line option, shared by the CLI and the pytest plugin."""

    flag: str
    help: str
    default: Any = None
    metavar: str | None = None
    action: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"help": self.help, "dest": self.dest}
        if self.action:
            kw["action"] = self.action
        kw["default"] = list(self.default) if isinstance(self.default, list | tuple) \
            else self.default
        if self.action != "store_true":
            kw["metavar"] = self.metavar
        if self.choices:
            kw["choices"] = self.choices
        return kw


OPTIONS: tuple[Option, ...] = (
    Option("--device", "device profile to run on (default: local = this host)",
           "local", "NAME"),
    Option("--targets-dir", "a folder of your own device profiles, searched before "
           "$GEM_HIL_TARGETS, ~/.config/gem-hil/targets and the shipped profiles",
           None, "DIR"),
    Option("--report-dir", "where result records are written; each run gets "
           "<report-dir>/<run id>_<device>/ (default: reports)", "reports", "DIR"),
    Option("--budget", "override a budget for this run, e.g. --budget latency_p95_ms=40 "
           "(repeatable)", [], "METRIC=VALUE", action="append"),
    Option("--gem-model", "GEM config to benchmark (default: the profile's [run] model)",
           None, "NAME"),
    Option("--gem-variant", "artifact variant (default: the profile's [run] variant)",
           None, "VARIANT", choices=VARIANTS),
    Option("--ab-variant", "interleaved A/B: also build this variant of the same model as "
           "the baseline and time both alternately in one session; a regression of the "
           "candidate's median fails the run (docs/statistics.md)", None, "VARIANT",
           choices=VARIANTS),
    Option("--gem-format", "artifact format, e.g. tflite (default: the one the profile's "
           "runtime consumes); the run uses the runtime registered for that format",
           None, "FORMAT"),
    Option("--artifact-cache", "artifact cache folder (default: $GEM_HIL_CACHE or "
           "~/.cache/gem-hil)", None, "DIR"),
    Option("--accept-new-host-key", "trust an SSH host key seen for the first time and "
           "record it in known_hosts (a changed key is always refused)", False,
           action="store_true"),
)

OPTION_BY_FLAG = {o.flag: o for o in OPTIONS}


def add_argparse_options(parser: argparse.ArgumentParser, flags: Sequence[str]) -> None:
    """Add the named shared options to a CLI sub-command."""
    for flag in flags:
        opt = OPTION_BY_FLAG[flag]
        parser.add_argument(opt.flag, **opt.kwargs())


def add_pytest_options(group: Any) -> None:
    """Add every shared option to the plugin's pytest option group."""
    for opt in OPTIONS:
        group.addoption(opt.flag, **opt.kwargs())


def new_run_id() -> str:
    """Sortable by time, unique even for two runs started in the same second."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class RunPlan:
    """Everything decided before a device is touched."""

    profile: DeviceProfile
    model: str
    variant: str
    fmt: str
    run_id: str
    report_root: Path
    targets_dir: Path | None = None
    artifact_cache: Path | None = None
    accept_new_host_key: bool = False
    budget_overrides: Mapping[str, float] = field(default_factory=dict)
    ab_variant: str | None = None
    #: the report folder's name under report_root (default <run id>_<device>); the
    #: farm uses <campaign>/<device>
    report_subdir: str | None = None

    @property
    def report_dir(self) -> Path:
        return self.report_root / (self.report_subdir or f"{self.run_id}_{self.profile.name}")

    @property
    def label(self) -> str:
        return f"{self.model}-{self.variant}"

    def build_artifact(self, variant: str | None = None) -> LocalArtifact:
        """The artifact (or, with variant, another variant of the same model) from the
        content-hash cache, or built now.

        A failed build is a run that failed: its failure record is written to the
        report folder (so the gate counts it) before the error is raised.
        """
        from harness.artifacts import build_artifact

        t0 = time.perf_counter()
        try:
            return build_artifact(self.model, variant or self.variant, self.fmt,
                                  self.artifact_cache)
        except HarnessError as exc:
            path = self.record_failure("build", exc, time.perf_counter() - t0)
            exc.args = (f"{exc} (record: {path})",)
            raise

    def open_device(self) -> DeviceSession:
        from harness.bench import DeviceSession

        return DeviceSession(self.profile, accept_new_host_key=self.accept_new_host_key)

    def record_failure(self, stage: str, exc: BaseException, wall_s: float = 0.0) -> Path:
        """Write a failure record for a run that never reached the device."""
        from harness import __version__
        from harness.bench import failed_run_fields, record_head
        from harness.record import harness_git_state, write_record

        p = self.profile
        commit, dirty = harness_git_state()
        record = record_head(p, p.run, "latency", self.run_id, {
            "model": self.model, "variant": self.variant, "format": self.fmt, "sha256": None,
            "size_bytes": None, "opset": None, "params_total": None,
            "params_active_per_token": None})
        record.update(failed_run_fields(f"the {stage} failed"))
        record.update({
            "energy": {"energy_per_inference_mj": None, "sensor": None,
                       "status": "no_sensor", "note": f"the run stopped at the {stage} stage"},
            "thermal": None,
            # nothing ran on the device, so nothing is known of it: null, not a guess
            "environment": {"device": p.name, "os": None, "kernel": None, "machine": None,
                            "cpu_model": None, "cpu_count": None, "runtime": p.runtime,
                            "runtime_version": None, "threads": p.run.threads, "governor": None,
                            "harness_version": __version__, "harness_commit": commit,
                            "harness_dirty": dirty},
            "harness": {"wall_s": wall_s, "agent_wall_s": None, "overhead_ms": None,
                        "push_s": 0.0, "push_skipped": False},
            "error": {"kind": stage, "message": str(exc), "exit_code": None,
                      "stderr_tail": ""},
        })
        return write_record(record, self.report_dir)

    def gate_argv(self) -> list[str]:
        """The `gem-hil gate` command that judges this run's records the same way."""
        argv = ["gem-hil", "gate", "--results", str(self.report_dir)]
        if self.targets_dir is not None:
            argv += ["--targets-dir", str(self.targets_dir)]
        return argv


def make_plan(values: Mapping[str, Any], base_dir: Path | None = None,
              run_id: str | None = None, report_subdir: str | None = None) -> RunPlan:
    """A RunPlan from option values (keyed by Option.dest).

    Every check that can fail does so here, before anything is built or pushed:
    an unknown device, a broken profile, a malformed --budget.
    """
    from harness.artifacts import format_for_runtime
    from harness.budgets import parse_budget_override

    def get(flag: str) -> Any:
        opt = OPTION_BY_FLAG[flag]
        return values.get(opt.dest, opt.default)

    targets = Path(get("--targets-dir")) if get("--targets-dir") else None
    if targets is not None and not targets.is_dir():
        raise ConfigError(f"--targets-dir {targets}: not a folder; give a folder of "
                          "<device>.toml profiles")
    profile = load_profile(get("--device"), targets)
    overrides = dict(parse_budget_override(b) for b in get("--budget") or [])
    model = get("--gem-model") or profile.run.model
    variant = get("--gem-variant") or profile.run.variant
    from gem.config import config_names  # pure Python: no torch

    if model not in config_names():
        where = "--gem-model" if get("--gem-model") else f"{profile.path}: [run] model"
        raise ConfigError(f"{where}: unknown GEM model {model!r}; known: "
                          f"{', '.join(config_names())}")
    if variant not in VARIANTS:  # the profile's is checked at load: a caller's value
        raise ConfigError(f"--gem-variant: {variant!r}: expected one of {', '.join(VARIANTS)}")
    report_root = Path(get("--report-dir"))
    if not report_root.is_absolute() and base_dir is not None:
        report_root = base_dir / report_root
    cache = get("--artifact-cache")
    fmt = format_for_runtime(profile.runtime)
    from gem.export import FORMATS  # a plain table: no torch

    if get("--gem-format") and get("--gem-format") not in FORMATS:
        raise ConfigError(f"--gem-format {get('--gem-format')!r}: unknown artifact format; "
                          f"known: {', '.join(sorted(FORMATS))}")
    if get("--gem-format") and get("--gem-format") != fmt:
        # the device runs the artifact with the runtime that consumes it: the record
        # names that runtime, not the profile's (whose format was overridden)
        from harness.runtimes import runtime_for_format

        fmt = get("--gem-format")
        profile = replace(profile, runtime=runtime_for_format(fmt))
    if variant not in FORMATS[fmt]:
        where = "--gem-variant" if get("--gem-variant") else f"{profile.path}: [run] variant"
        raise ConfigError(f"{where}: variant {variant!r} does not exist for format {fmt}; "
                          f"{fmt} has {', '.join(FORMATS[fmt])}")
    return RunPlan(profile=profile, model=model, variant=variant,
                   fmt=fmt, run_id=run_id or new_run_id(),
                   report_root=report_root, targets_dir=targets,
                   artifact_cache=Path(cache) if cache else None,
                   accept_new_host_key=bool(get("--accept-new-host-key")),
                   budget_overrides=overrides, ab_variant=get("--ab-variant"),
                   report_subdir=report_subdir)
