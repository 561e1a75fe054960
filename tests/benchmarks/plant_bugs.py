"""Plant the bugs a past review found the test suite blind to, one at a time, and
show that at least one test now fails for each.

    python tests/benchmarks/plant_bugs.py [--only NAME ...] [--list] [--keep]

Each plant patches exactly the spot named below in a temporary copy of this
checkout (the working tree, uncommitted changes included), then runs the test
files that guard that spot, with the copy first on the import path. A plant is
KILLED when those tests fail (pytest exit 1) while the same tests pass on the
unpatched copy; it SURVIVES when they still pass. A plant whose anchor text is
no longer in the source is reported MOVED (the code changed: update the plant),
never silently skipped. Exit status: 0 when every plant is killed, 1 otherwise.

The Mann-Whitney plants are also run with scipy hidden: a scipy cross-check
that skips when scipy is missing must not be the only thing that notices.

Root is needed for the plants guarded by the real sshd board; the ADB plant
uses the ADB protocol peer (adb-shell). Takes 80-160 s on 2 shared cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.worktree import copy_tree  # noqa: E402


@dataclass(frozen=True)
class Plant:
    name: str
    what: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (exact old text, new text), each must occur once
    tests: tuple[str, ...]
    hide_scipy: bool = False
    owner: str = ""  # who writes the tests expected to kill it, when not this suite yet
    env: dict[str, str] = field(default_factory=dict)


PLANTS: tuple[Plant, ...] = (
    Plant("agent-parity-always-passes",
          "the agent reports max-diff 0, top-1 100 % and passed whatever the outputs",
          "firmware/agent/gem_agent.py",
          (("    top1 = agree / total if total else 0.0\n",
            "    top1, max_diff = 1.0, 0.0\n"),
           ('"passed": bool(total) and max_diff <= atol and top1 == 1.0}',
            '"passed": True}')),
          ("tests/unit/test_agent.py", "tests/integration/test_parity_failure.py")),
    Plant("min-direction-wrong-interval-end",
          "a min-direction budget (top1_agreement) judged on the wrong end of its interval",
          "harness/budgets.py",
          (('        if lo >= limit:\n            return "pass", ""\n'
            '        if hi < limit:\n            return "fail", ""\n',
            '        if hi >= limit:\n            return "pass", ""\n'
            '        if lo < limit:\n            return "fail", ""\n'),),
          ("tests/unit/test_budgets.py",)),
    Plant("sequential-without-look-correction",
          "the sequential early-stopping test without its correction across looks",
          "firmware/agent/gem_agent.py",
          (("        budget = alpha * ((spend_at[j - 1] + 1) if spend_at else j) / total + 1e-12",
            "        budget = alpha + 1e-12"),),
          ("tests/unit/test_stats_ci.py",)),
    Plant("mann-whitney-without-continuity",
          "Mann-Whitney U without its continuity correction",
          "harness/regression.py",
          (("    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)",
            "    z = abs(u1 - mu) / math.sqrt(var)"),),
          ("tests/unit/test_regression_compare.py",), hide_scipy=True),
    Plant("mann-whitney-without-tie-correction",
          "Mann-Whitney U without its tie correction",
          "harness/regression.py",
          (("    var = n1 * n2 / 12.0 * ((n + 1) - tie_term)",
            "    var = n1 * n2 / 12.0 * (n + 1)"),),
          ("tests/unit/test_regression_compare.py",), hide_scipy=True),
    Plant("adb-pull-never-compares",
          "a pull (ADB's path) that never compares the device's hash with what arrived",
          "harness/transports/base.py",
          (("            if got != want:\n", "            if False:\n"),),
          ("tests/integration/test_adb_transport.py",)),
    Plant("ssh-pull-without-check",
          "SSH pull with no hash check at all (download straight to the target)",
          "harness/transports/ssh.py",
          (("    def _download(self, remote: str, local_tmp: Path) -> None:\n",
            "    def pull(self, remote: str, local_dir: Path) -> Path:\n"
            "        from harness.transports.base import safe_local_name\n\n"
            "        target = safe_local_name(Path(local_dir), remote)\n"
            "        Path(local_dir).mkdir(parents=True, exist_ok=True)\n"
            "        part = target.with_name(target.name + '.part')\n"
            "        try:\n"
            "            self._download(remote, part)\n"
            "        finally:\n"
            "            if part.exists():\n"
            "                os.replace(part, target)\n"
            "        return target\n\n"
            "    def _download(self, remote: str, local_tmp: Path) -> None:\n"),),
          ("tests/integration/test_ssh_faults.py",)),
    Plant("gate-subcommand-unwired",
          "`gem-hil gate` not wired into the CLI",
          "harness/cli/__init__.py",
          (("    gate.add_gate_parser(sub)\n", ""),),
          ("tests/unit/test_gate_cli.py",)),
    Plant("gate-ignores-profiles",
          "the gate never loading the devices' profiles (gates on stale record limits)",
          "harness/gate.py",
          (("    if not use_profiles:\n        return None, None\n",
            "    if True:\n        return None, None\n"),),
          ("tests/unit/test_gate_cli.py",)),
)


def apply(copy: Path, plant: Plant) -> str | None:
    """Patch the copy; the reason it cannot be patched, or None."""
    path = copy / plant.file
    text = path.read_text()
    for old, new in plant.edits:
        n = text.count(old)
        if n != 1:
            return f"{plant.file}: anchor found {n} times: {old.strip()[:70]!r}"
        text = text.replace(old, new)
    path.write_text(text)
    return None


def run_tests(copy: Path, tests: tuple[str, ...], hide_scipy: bool, log: Path) -> int:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "GEM_HIL_REQUIRE": "1"}
    env.pop("PYTHONPATH", None)
    path = [str(copy)]
    if hide_scipy:
        fake = copy / ".no-scipy"
        (fake / "scipy").mkdir(parents=True, exist_ok=True)
        (fake / "scipy" / "__init__.py").write_text(
            "raise ModuleNotFoundError('scipy hidden by plant_bugs.py', name='scipy')\n")
        path.insert(0, str(fake))
        env["GEM_HIL_REQUIRE"] = ""  # the scipy cross-check may skip here: that is the point
    env["PYTHONPATH"] = os.pathsep.join(path)
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
            "-o", "addopts=", *tests]
    with log.open("w") as out:
        return subprocess.run(argv, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=1800).returncode


def check_import_path(copy: Path) -> None:
    """The copy, not the editable install, must be what the tests import."""
    res = subprocess.run([sys.executable, "-c", "import harness, gem; print(harness.__file__); "
                          "print(gem.__file__)"], cwd=copy, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(copy)}, check=True)
    for line in res.stdout.split():
        if not Path(line).resolve().is_relative_to(copy.resolve()):
            raise SystemExit(f"the copy is not what gets imported: {line}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="plant names (default: all)")
    ap.add_argument("--list", action="store_true", help="list the plants and exit")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies and logs")
    args = ap.parse_args(argv)
    plants = [p for p in PLANTS if not args.only or p.name in args.only]
    if args.list:
        for p in PLANTS:
            print(f"{p.name:38} {p.file:30} {p.what}")
        return 0
    if args.only and len(plants) != len(args.only):
        known = {p.name for p in PLANTS}
        raise SystemExit(f"unknown plant(s): {', '.join(set(args.only) - known)}")
    work = Path(tempfile.mkdtemp(prefix="gem-hil-plant-"))
    t_start = time.monotonic()
    results: list[tuple[Plant, str, str]] = []
    baselines: dict[tuple[tuple[str, ...], bool], int] = {}
    try:
        clean = work / "clean"
        copy_tree(clean)
        check_import_path(clean)
        for p in plants:
            key = (p.tests, p.hide_scipy)
            if key not in baselines:
                baselines[key] = run_tests(clean, p.tests, p.hide_scipy,
                                           work / f"baseline-{len(baselines)}.log")
            if baselines[key] != 0:
                results.append((p, "BASELINE-FAILS", f"the unpatched tests exit "
                                f"{baselines[key]} (see {work}/baseline-*.log)"))
                continue
            copy = work / p.name
            shutil.copytree(clean, copy)
            problem = apply(copy, p)
            if problem:
                results.append((p, "MOVED", problem))
                continue
            t0 = time.monotonic()
            rc = run_tests(copy, p.tests, p.hide_scipy, work / f"{p.name}.log")
            took = time.monotonic() - t0
            log = (work / f"{p.name}.log").read_text()
            failed = [ln.split(" - ")[0] for ln in log.splitlines() if ln.startswith("FAILED ")]
            if rc == 1:
                results.append((p, "KILLED", f"{took:.0f} s; first failing test: "
                                f"{failed[0] if failed else '(see log)'}"))
            elif rc == 0:
                results.append((p, "SURVIVED", f"{took:.0f} s; {' '.join(p.tests)} still pass"
                                + (f"; expected killer: {p.owner}" if p.owner else "")))
            else:
                results.append((p, "ERROR", f"pytest exit {rc} (collection/usage error, "
                                f"not a test failure): see {work}/{p.name}.log"))
            if not args.keep:
                shutil.rmtree(copy, ignore_errors=True)
    finally:
        if not args.keep:
            for log in work.glob("*.log"):
                if any(r[1] == "KILLED" and log.stem == r[0].name for r in results):
                    log.unlink()
            shutil.rmtree(work / "clean", ignore_errors=True)
    killed = sum(1 for r in results if r[1] == "KILLED")
    print(f"{'plant':38} {'result':15} detail")
    for p, word, detail in results:
        scipy = " [scipy hidden]" if p.hide_scipy else ""
        print(f"{p.name:38} {word:15} {detail}{scipy}")
    goal = len(plants)
    print(f"\nplanted bugs killed: {killed}/{goal} (goal: {goal}/{goal}) "
          f"{'PASS' if killed == goal else 'FAIL'}; took {time.monotonic() - t_start:.0f} s; "
          f"logs of the others: {work}" if killed != goal or args.keep else
          f"\nplanted bugs killed: {killed}/{goal} (goal: {goal}/{goal}) PASS; "
          f"took {time.monotonic() - t_start:.0f} s")
    if killed == goal and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if killed == goal else 1


if __name__ == "__main__":
    sys.exit(main())
