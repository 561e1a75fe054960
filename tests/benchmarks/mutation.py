"""Mutation testing of the harness's core with cosmic-ray: how many deliberate
small bugs (mutants) do the tests notice?

    pip install -e '.[mutation]'          # cosmic-ray==8.7.0
    python tests/benchmarks/mutation.py [--only TARGET ...] [--list] [--count]
        [--sample N [--seed S]]

Goal: at least 90 % of the mutants killed in each target and overall. Each
target is a set of functions of one module (found by name with ast, so the
ranges follow the code as it moves) and the test files that guard them. The
whole checkout is copied to a temporary folder and mutated there, one mutant at
a time, on disk: that also reaches code the tests run in a subprocess (the
on-device agent is copied and executed by its tests). A mutant is killed when
the tests fail or time out; it survives when they pass. Mutants outside the
named functions are skipped. Prints, per target, killed/total and the score
with PASS/FAIL against the goal, then every surviving mutant (file:line,
operator, the diff) so it can be killed by a new test or shown equivalent.

Why cosmic-ray and not mutmut 3: mutmut 3 swaps functions in-process through
trampolines and maps tests to mutants from in-process hits, so code the tests
execute in a subprocess (the agent's parity and stopping rule, the CLI) is
reported "no tests"; cosmic-ray mutates the file on disk, so every path counts.

Takes long: about 2-4 s per mutant on 2 shared cores (see docs/testing.md for
the last measured run); run --only one target while working on it. A target of
thousands of mutants (stats, regression, validity) can be estimated with
``--sample N``: N of its mutants drawn uniformly at random (``--seed``), the
others skipped, and the score printed with its 95 % Wilson interval and the
word "sampled" — an estimate of the whole target's score, never reported as
the full count.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.worktree import copy_tree  # noqa: E402

GOAL = 0.90


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    functions: tuple[str, ...]  # "f" or "Class.method"; () = every function of the module
    tests: tuple[str, ...]
    timeout_s: float = 120.0


TARGETS: tuple[Target, ...] = (
    Target("budgets", "harness/budgets.py",
           ("check_budget_table", "parse_budget_override", "decide", "evaluate", "overall",
            "record_measurements", "_ci", "unstable_verdict"),
           ("tests/unit/test_budgets.py", "tests/unit/test_budget_measurements.py",
            "tests/unit/test_gate_cli.py")),
    Target("stats", "harness/stats.py", (),
           ("tests/unit/test_stats_ci.py", "tests/unit/test_stats_exact.py")),
    Target("regression", "harness/regression.py", (),
           ("tests/unit/test_regression_compare.py",)),
    Target("validity", "harness/validity.py", (), ("tests/unit/test_validity_run.py",)),
    Target("transfer-verification", "harness/transports/base.py",
           ("safe_local_name", "Transport.pull", "Transport.push", "Transport._commit",
            "parse_sha256sum"),
           ("tests/unit/test_transfer_verification.py", "tests/unit/test_local_transport.py")),
    Target("ssh-host-keys", "harness/transports/ssh.py",
           ("fingerprint", "known_hosts_name", "KnownHostsPolicy.missing_host_key",
            "load_private_key", "_parse_stream_answer", "_final_name"),
           ("tests/unit/test_ssh_host_keys.py", "tests/unit/test_ssh_config.py",
            "tests/integration/test_ssh_faults.py",
            "-k", "host or key or corrupt or pull or config"),
           timeout_s=300.0),
    Target("agent-parity", "firmware/agent/gem_agent.py", ("check_parity",),
           ("tests/unit/test_agent.py",)),
    Target("agent-stopping", "firmware/agent/gem_agent.py",
           ("timed_loop", "sequential_decision", "exceedance_boundaries", "with_period"),
           ("tests/unit/test_stats_ci.py", "tests/unit/test_agent.py",
            "tests/unit/test_agent_stopping.py")),
)


def function_lines(path: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Line ranges (first, last) of the named functions; raises if one is missing."""
    tree = ast.parse(path.read_text())
    found: dict[str, tuple[int, int]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = (node.lineno, node.end_lineno or node.lineno)
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                    found[f"{node.name}.{sub.name}"] = (sub.lineno, sub.end_lineno or sub.lineno)
    if not names:
        return sorted(found.values())
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"{path}: no function {', '.join(missing)}: update TARGETS in "
                         f"{Path(__file__).name}")
    return sorted(found[n] for n in names)


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of every annotation: with ``from __future__ import
    annotations`` they are never evaluated, so a mutant there is equivalent."""
    tree = ast.parse(path.read_text())
    spans = []
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            notes.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            notes.append(node.returns)
        for a in notes:
            spans.append(((a.lineno, a.col_offset),
                          (a.end_lineno or a.lineno, a.end_col_offset or 0)))
    return spans


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % interval of a proportion k/n that stays inside [0, 1] and is honest
    near 100 %, where a sampled mutation score lives (the normal one is not)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def run_target(t: Target, work: Path, count_only: bool = False,
               sample: int | None = None, seed: int = 0) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    copy = work / t.name
    copy_tree(copy)
    ranges = function_lines(copy / t.module, t.functions)
    test_argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                 "-o", "addopts=", *t.tests]
    test_cmd = shlex.join(test_argv)
    cfg = copy / "cosmic-ray.toml"
    cfg.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{t.module}"\n'
        f"timeout = {t.timeout_s}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(test_cmd)}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n')
    session = copy / "session.sqlite"
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    cr = [str(Path(sys.executable).parent / "cosmic-ray")]
    subprocess.run([*cr, "init", str(cfg), str(session)], cwd=copy, env=env, check=True)
    notes = annotation_spans(copy / t.module)
    with use_db(str(session), WorkDB.Mode.open) as db:
        outside, in_notes = [], []
        for w in db.work_items:
            m = w.mutations[0]
            if not any(a <= m.start_pos[0] <= b for a, b in ranges):
                outside.append(w.job_id)
            elif any(lo <= tuple(m.start_pos) < hi for lo, hi in notes):
                in_notes.append(w.job_id)
        db.set_multiple_results(outside, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                    output="outside the target's functions"))
        db.set_multiple_results(in_notes, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                     output="in a type annotation (equivalent)"))
        skip = set(outside + in_notes)
        n_jobs = db.num_work_items - len(skip)
        if sample is not None and sample < n_jobs:
            import random
            # ordered by what the mutant is, not by its job id (a fresh uuid each run):
            # the same --seed then draws the same mutants on every run
            def what(w):  # noqa: ANN001, ANN202 - cosmic-ray's WorkItem
                m = w.mutations[0]
                return (str(m.module_path), tuple(m.start_pos), m.operator_name, m.occurrence)

            items = sorted((w for w in db.work_items if w.job_id not in skip), key=what)
            inside = [w.job_id for w in items]
            drawn = set(random.Random(seed).sample(inside, sample))
            db.set_multiple_results([j for j in inside if j not in drawn],
                                    WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                               output="not in the random sample"))
        else:
            sample = None
    if count_only:
        return {"target": t, "total": n_jobs, "killed": 0, "survivors": [], "incompetent": 0,
                "seconds": 0.0, "jobs": n_jobs, "sampled_from": None}
    base = subprocess.run(test_argv, cwd=copy, env=env, capture_output=True, text=True)
    if base.returncode != 0:
        raise SystemExit(f"{t.name}: the tests fail without any mutant:\n{base.stdout[-2000:]}")
    t0 = time.monotonic()
    # cosmic-ray's local distributor runs one mutant at a time in this folder
    subprocess.run([*cr, "exec", str(cfg), str(session)], cwd=copy, env=env, check=True)
    took = time.monotonic() - t0
    killed, survivors, incompetent = 0, [], 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, res in db.completed_work_items:
            if res.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if res.test_outcome == TestOutcome.INCOMPETENT:
                incompetent += 1
            elif res.test_outcome == TestOutcome.SURVIVED:
                m = item.mutations[0]
                survivors.append((f"{m.module_path}:{m.start_pos[0]}", m.operator_name,
                                  res.diff or ""))
            else:
                killed += 1
    total = killed + len(survivors)
    return {"target": t, "total": total, "killed": killed, "survivors": survivors,
            "incompetent": incompetent, "seconds": took, "jobs": n_jobs,
            "equivalent_annotations": len(in_notes),
            "sampled_from": n_jobs if sample is not None else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="target names (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--count", action="store_true", help="only count the mutants per target")
    ap.add_argument("--sample", type=int, metavar="N",
                    help="run N mutants per target drawn at random: an estimated score")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample's draw")
    args = ap.parse_args(argv)
    try:
        import cosmic_ray  # noqa: F401
    except ImportError:
        raise SystemExit("cosmic-ray is not installed: pip install -e '.[mutation]'") from None
    targets = [t for t in TARGETS if not args.only or t.name in args.only]
    if args.list:
        for t in TARGETS:
            print(f"{t.name:24} {t.module:32} {', '.join(t.functions) or '(all)'}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="gem-hil-mutation-"))
    t_start = time.monotonic()
    results = []
    try:
        for t in targets:
            r = run_target(t, work, args.count, args.sample, args.seed)
            results.append(r)
            if args.count:
                print(f"{t.name}: {r['jobs']} mutants", flush=True)
                continue
            score = r["killed"] / r["total"] if r["total"] else 1.0
            print(f"{t.name}: {r['killed']}/{r['total']} killed ({score:.1%}{sampled(r)}, "
                  f"goal >= {GOAL:.0%}) {'PASS' if score >= GOAL else 'FAIL'} in "
                  f"{r['seconds']:.0f} s", flush=True)
            print_survivors([r])  # now, so a long run stopped later still told something
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.count:
        print(f"total: {sum(r['jobs'] for r in results)} mutants")
        return 0
    print(f"\n{'target':24} {'killed':>7} {'total':>6} {'score':>7}  goal    result  time")
    for r in results:
        score = r["killed"] / r["total"] if r["total"] else 1.0
        print(f"{r['target'].name:24} {r['killed']:7d} {r['total']:6d} {score:7.1%}  >= 90%  "
              f"{'PASS' if score >= GOAL else 'FAIL':6}  {r['seconds']:.0f} s{sampled(r)}")
    killed = sum(r["killed"] for r in results)
    total = sum(r["total"] for r in results)
    score = killed / total if total else 1.0
    ok = score >= GOAL and all((r["killed"] / r["total"] if r["total"] else 1.0) >= GOAL
                               for r in results)
    print(f"{'overall':24} {killed:7d} {total:6d} {score:7.1%}  >= 90%  "
          f"{'PASS' if ok else 'FAIL':6}  {time.monotonic() - t_start:.0f} s")
    for r in results:
        if r["incompetent"]:
            print(f"({r['target'].name}: {r['incompetent']} mutant(s) did not even import: "
                  "not counted)")
    return 0 if ok else 1


def sampled(r: dict) -> str:
    """The note that makes a sampled score read as the estimate it is."""
    if not r.get("sampled_from"):
        return ""
    lo, hi = wilson_interval(r["killed"], r["total"])
    return (f"; sampled {r['total']} of {r['sampled_from']} mutants, 95 % interval "
            f"[{lo:.1%}, {hi:.1%}]")


def print_survivors(results: list[dict]) -> None:
    for r in results:
        print(f"surviving mutants of {r['target'].name}:" if r["survivors"] else
              f"no surviving mutants in {r['target'].name}", flush=True)
        for where, op, diff in r["survivors"]:
            print(f"--- {where} {op}")
            body = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in
                    ("+++", "---")]
            print("\n".join("    " + ln for ln in body), flush=True)


if __name__ == "__main__":
    sys.exit(main())
