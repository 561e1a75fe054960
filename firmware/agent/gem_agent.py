#!/usr/bin/env python3
"""gem-hil on-device agent: runs one benchmark of one artifact, prints one JSON record.

It is copied to the device next to the artifact and must run there alone:
it imports nothing from the project, only the standard library, numpy and the
runtime. Whatever happens it prints exactly one JSON object on stdout — a
record, or an error record with the reason — so the harness never has to
guess from a bare traceback.

Timing follows MLPerf LoadGen / TFLite benchmark_model: warmup, then timed runs
until BOTH a minimum count and a minimum duration are met, capped by a maximum
count and duration. perf_counter_ns wraps the runtime call only, so input
preparation and bookkeeping never leak into the samples.

Run by the harness, the agent must not outlive it (a Ctrl-C'd or SIGKILLed
harness, a dropped SSH link). Two opt-in flags, which the harness always passes
and a hand run does not need:

* ``--watchdog-stdin``: the harness holds the agent's stdin open (a pipe it never
  writes to, or the SSH exec channel). EOF on it means the harness is gone, and
  the agent exits at once (exit code 6). It also exits when its parent process
  changes, polled every WATCHDOG_PERIOD_S seconds (2 s). So an orphaned agent
  stops within WATCHDOG_PERIOD_S of its harness dying. A stdin that is not a
  pipe or socket (a terminal, /dev/null) is not watched, only the parent.
* ``--pid-file PATH``: a lease naming this process (PID, its kernel start time,
  boot id). ``--stop-stale --pid-file PATH`` ends the agent a lease names, after
  checking that the process really is that agent (same start time and boot,
  ``gem_agent.py`` and the lease path in /proc/PID/cmdline), never another one
  that got the same PID. The harness runs it before it starts a new agent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import stat
import sys
import threading
import time
import traceback

AGENT_VERSION = 1

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_ARTIFACT = 4
EXIT_INTERNAL = 5
EXIT_HARNESS_GONE = 6

#: Longest time an agent run with --watchdog-stdin outlives its harness (seconds).
WATCHDOG_PERIOD_S = 2.0
#: How long --stop-stale waits between SIGTERM and SIGKILL of a stale agent.
STALE_GRACE_S = 2.0


class AgentFailure(Exception):
    def __init__(self, kind: str, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.exit_code = exit_code


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def fail(kind: str, message: str, exit_code: int, tb: str = "") -> int:
    emit({"ok": False, "agent_version": AGENT_VERSION,
          "error": {"kind": kind, "message": message, "traceback_tail": tb[-2000:]},
          "exit_code": exit_code})
    return exit_code


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def peak_rss_kb() -> int | None:
    """VmHWM from /proc (kB): the peak resident set, what an OOM killer sees."""
    status = read_text("/proc/self/status")
    if status:
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss / 1024) if sys.platform == "darwin" else int(rss)
    except (ImportError, OSError):
        return None


#: ARM Ltd (implementer 0x41) CPU part numbers, so a record says "Cortex-A72"
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
             "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3"}


def host_facts() -> dict:
    fields: dict[str, str] = {}
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # first core's values
    cpu_part = fields.get("CPU part", "").lower() or None
    # x86 names its CPU; ARM gives an implementer + part number to look up
    cpu_model = fields.get("model name", "")
    if not cpu_model and fields.get("CPU implementer", "").lower() == "0x41":
        cpu_model = ARM_PARTS.get(cpu_part or "", "")
    cpu_model = cpu_model or fields.get("Hardware", "")
    board = fields.get("Model") or (read_text("/proc/device-tree/model") or "").strip("\x00\n")
    os_name = platform.system()
    osrel = read_text("/etc/os-release") or ""
    for line in osrel.splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip().strip('"')
    governor = read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "os": os_name,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model or platform.processor() or "unknown",
        "cpu_part": cpu_part,
        "board": board or None,
        "cpu_count": os.cpu_count() or 0,
        "python": platform.python_version(),
        "governor": governor.strip() if governor else None,
    }


#: Shortest sensor sampling period: a faster in-process sampler raised p99 ~1.8x.
MIN_SAMPLE_INTERVAL_MS = 50.0


def sample_files(paths: list[str], samples: dict[str, list]) -> None:
    now = time.monotonic_ns()
    for p in paths:
        text = read_text(p)
        samples[p].append([now, text.strip() if text is not None else None])


def run_sampler(paths: list[str], interval_s: float) -> int:
    """The sampler process (``--sampler``): read the files every interval until stdin closes.

    Raw text is kept with its timestamp; turning it into watts or degrees is the
    harness's job, where the parsers are tested. It runs as a process of its
    own, not a thread of the agent: a thread waking up every few ms shares the
    interpreter lock with the timed loop and lands in the samples. It stops
    when the agent closes its stdin (or dies), then prints what it read.
    """
    samples: dict[str, list] = {p: [] for p in paths}
    sample_files(paths, samples)
    sys.stdout.write("\n")  # ready: the agent starts its timed window after this line
    sys.stdout.flush()
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], interval_s)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break
        sample_files(paths, samples)
    sample_files(paths, samples)
    emit(samples)
    return EXIT_OK


class SysfsSampler:
    """Starts and stops the sampler process around the timed window."""

    def __init__(self, paths: list[str], interval_ms: float) -> None:
        import subprocess

        self.interval_ms = max(MIN_SAMPLE_INTERVAL_MS, interval_ms)
        argv = [sys.executable, os.path.abspath(__file__), "--sampler",
                "--sample-interval-ms", str(self.interval_ms)]
        for path in paths:
            argv += ["--sample-path", path]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.samples: dict[str, list] = {p: [] for p in paths}
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # its first reading is taken before the window opens

    def stop(self) -> None:
        out, _ = self.proc.communicate(timeout=10)
        if self.proc.returncode == 0 and out:
            self.samples = json.loads(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- supervision: never outlive the harness -------------------------------------


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the process name ([] when there is no
    such process): [0] is the state letter (R, S, Z, ...), [19] the start time."""
    text = read_text(f"/proc/{pid}/stat")
    return text.rsplit(")", 1)[-1].split() if text else []  # the name may hold spaces


def proc_start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot. With the boot id it
    names one process for good, whatever PIDs are reused."""
    fields = proc_stat(pid)
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def proc_state(pid: int) -> str | None:
    """The process's state letter, None when there is no such process."""
    fields = proc_stat(pid)
    return fields[0] if fields else None


def boot_id() -> str | None:
    text = read_text("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


class HarnessWatchdog(threading.Thread):
    """Ends this process when the harness that started it is gone.

    Waits on stdin (EOF = the harness's end of the pipe or channel closed) with
    a timeout of WATCHDOG_PERIOD_S, and checks the parent PID on each wake-up.
    os._exit, not an exception: the main thread is inside the runtime and
    nobody is left to read a record.
    """

    def __init__(self, on_gone, ppid: int, period_s: float = WATCHDOG_PERIOD_S) -> None:
        super().__init__(daemon=True, name="gem-agent-watchdog")
        self.on_gone = on_gone
        self.period_s = period_s
        self.ppid = ppid
        try:
            mode = os.fstat(0).st_mode
            self.watch_stdin = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        except OSError:
            self.watch_stdin = False

    def check_once(self) -> str | None:
        """Why the harness is gone, or None; blocks up to period_s."""
        if self.watch_stdin:
            ready, _, _ = select.select([0], [], [], self.period_s)
            if ready and not os.read(0, 4096):
                return "its stdin closed"
        else:
            time.sleep(self.period_s)
        if os.getppid() != self.ppid:
            return f"its parent process {self.ppid} exited"
        return None

    def run(self) -> None:
        while True:
            why = self.check_once()
            if why:
                self.on_gone(why)
                return


class Lease:
    """The --pid-file of a running agent: who it is, so a later run can end it safely."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.pid = os.getpid()

    def write(self) -> None:
        info = {"pid": self.pid, "start_ticks": proc_start_ticks(self.pid),
                "boot_id": boot_id(), "pid_file": self.path,
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "agent_version": AGENT_VERSION}
        tmp = f"{self.path}.{self.pid}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(info) + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise AgentFailure("usage", f"cannot write the lease --pid-file {self.path}: "
                               f"{exc.strerror or exc}", EXIT_USAGE) from None

    def remove(self) -> None:
        """Remove the lease if it is still ours (a later agent may have taken it)."""
        info = read_lease(self.path)
        if info is not None and info.get("pid") == self.pid:
            _unlink(self.path)


def read_lease(path: str) -> dict | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def is_our_agent(info: dict, lease_path: str) -> tuple[bool, str]:
    """Whether the lease's PID is still the agent that wrote it, and why (not)."""
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False, f"the lease names no usable PID ({pid!r})"
    if pid == os.getpid():
        return False, "the lease names this very process"
    state = proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False, f"process {pid} is gone"
    if info.get("boot_id") != boot_id():
        return False, f"the lease is from another boot; PID {pid} is someone else now"
    if info.get("start_ticks") is None or proc_start_ticks(pid) != info.get("start_ticks"):
        return False, f"PID {pid} was reused by a process that started later"
    raw = read_text(f"/proc/{pid}/cmdline") or ""
    args = raw.split("\x00")
    if not any(a.endswith("gem_agent.py") for a in args):
        return False, f"process {pid} is not gem_agent.py"
    if "--pid-file" not in args:
        return False, f"process {pid} was not started with --pid-file"
    given = args[args.index("--pid-file") + 1] if args.index("--pid-file") + 1 < len(args) \
        else ""
    cwd = os.path.realpath(f"/proc/{pid}/cwd")
    if os.path.realpath(os.path.join(cwd, given)) != os.path.realpath(lease_path):
        return False, f"process {pid} holds another lease ({given!r})"
    return True, "ok"


def stop_stale(lease_path: str, grace_s: float = STALE_GRACE_S) -> dict:
    """End the agent a lease names if it still runs; the lease goes either way."""
    lease_path = os.path.abspath(lease_path)
    info = read_lease(lease_path)
    result: dict = {"ok": True, "agent_version": AGENT_VERSION, "mode": "stop_stale",
                    "lease": lease_path, "ended": [], "notes": []}
    if info is None:
        if os.path.exists(lease_path):
            result["notes"].append("the lease file was unreadable; removed it")
            _unlink(lease_path)
        return result
    ours, why = is_our_agent(info, lease_path)
    if not ours:
        result["notes"].append(f"lease of PID {info.get('pid')} left no agent running "
                               f"({why}); removed it")
        _unlink(lease_path)
        return result
    pid = int(info["pid"])
    try:
        pgid = os.getpgid(pid)
    except OSError:
        pgid = None
    # its own group (a session of its own under sshd or the local transport),
    # never ours: that would end this process and whoever started it
    group = pgid if pgid and pgid > 1 and pgid != os.getpgrp() else None
    sent = []
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        try:
            if group is not None:
                os.killpg(group, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError as exc:
            result["ok"] = False
            result["notes"].append(f"not allowed to signal stale agent {pid}: {exc}")
            return result
        sent.append(signal.Signals(sig).name)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and is_our_agent(info, lease_path)[0]:
            time.sleep(0.05)
        if not is_our_agent(info, lease_path)[0]:
            break
    gone = not is_our_agent(info, lease_path)[0]
    result["ended"].append({"pid": pid, "process_group": group, "signals": sent,
                            "started_utc": info.get("started_utc"), "gone": gone})
    if gone:
        _unlink(lease_path)
    else:
        result["ok"] = False
        result["notes"].append(f"stale agent {pid} still runs after SIGKILL")
    return result


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _Stopped(BaseException):
    """SIGTERM/SIGINT under supervision: unwind (the lease goes), say so, exit 128+N.

    A BaseException, so the runtime adapters' ``except Exception`` cannot turn it
    into a model error."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame) -> None:
    raise _Stopped(signum)


def harness_gone(lease: Lease | None):
    """What the watchdog does once the harness is gone: tidy the lease, exit now."""
    def on_gone(why: str) -> None:
        try:
            if lease is not None:
                lease.remove()
            # most likely nobody reads this any more: the write may fail (EPIPE)
            sys.stderr.write(f"gem_agent: the harness is gone ({why}); stopping\n")
            sys.stderr.flush()
        finally:  # whatever failed above, nothing may keep this process alive
            os._exit(EXIT_HARNESS_GONE)
    return on_gone


# -- dependence and sequential stopping -----------------------------------------
#
# These few functions are also the harness's (harness/stats.py loads them from
# this file), so the device's decision to stop and the record's intervals use
# one estimate of dependence and one set of boundaries; the agent itself still
# imports nothing from the project.

#: Highest lag-1 autocorrelation the inflation estimate admits (IF = 99).
MAX_AUTOCORRELATION = 0.98


def variance_inflation(np, samples, period: int = 1) -> dict:
    """How much autocorrelation widens every interval, from the lag-1 rank autocorrelation.

    Latency series are autocorrelated (caches, clocks, thermal state): n
    samples carry the information of n / IF independent ones. The estimate is
    an AR(1) fit on ranks (rank-based, so a heavy tail cannot fake or hide
    dependence): the lag-1 Spearman coefficient is turned into the Gaussian
    correlation (2 sin(pi r / 6)), corrected for its small-sample bias
    (+(1 + 4 rho) / n) and clipped to [0, MAX_AUTOCORRELATION]; IF = (1 + rho)
    / (1 - rho). For a quantile's indicator IF is at most this (the indicator
    of a Gaussian AR(1) is less correlated than the series), so intervals
    widened by it keep their coverage; negative correlation is never used to
    narrow them.

    period: the timed loop cycles through a pool of inputs, and each input has
    a latency of its own. That pattern is the workload, not dependence, so
    each sample's input effect (the median log latency of its pool slot) is
    removed before the fit; otherwise the cycle itself would read as
    autocorrelation.
    """
    x = np.asarray(samples, dtype=float)
    n = int(x.size)
    if period > 1 and n >= 4 * period and np.all(x > 0):
        lx = np.log(x)
        slot = np.arange(n) % period
        effect = np.array([np.median(lx[slot == k]) for k in range(period)])
        x = lx - effect[slot]
    if n < 8:
        return {"factor": 1.0, "lag1_autocorrelation": None, "effective_sample_size": float(n),
                "method": "too few samples to estimate (< 8): taken as independent"}
    ranks = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)
    ranks -= ranks.mean()
    den = float(np.dot(ranks, ranks))
    r_s = float(np.dot(ranks[:-1], ranks[1:]) / den) if den > 0 else 0.0
    rho = 2.0 * np.sin(np.pi * r_s / 6.0)
    rho_adj = min(MAX_AUTOCORRELATION, max(0.0, float(rho + (1.0 + 4.0 * rho) / n)))
    factor = (1.0 + rho_adj) / (1.0 - rho_adj)
    return {"factor": factor, "lag1_autocorrelation": float(rho),
            "effective_sample_size": n / factor,
            "method": "AR(1) on ranks, bias-corrected: IF = (1 + rho) / (1 - rho)"}


def binom_pmf(np, n: int, p: float, lo: int = 0, hi: int | None = None):
    """P(B = k) for k = lo..hi (default 0..n), B ~ Binomial(n, p), computed in logs."""
    hi = n if hi is None else hi
    k = np.arange(lo, hi + 1)
    lgam = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))))
    logpmf = lgam[n] - lgam[k] - lgam[n - k] + k * np.log(p) + (n - k) * np.log1p(-p)
    return np.exp(logpmf)


#: the count distribution is kept within this many sd of its mean (mass lost < 1e-30)
SUPPORT_SDS = 12.0


def _support(n: int, p: float) -> tuple[int, int]:
    mean, sd = n * p, (n * p * (1.0 - p)) ** 0.5
    return (max(0, int(mean - SUPPORT_SDS * sd) - 5), min(n, int(mean + SUPPORT_SDS * sd) + 5))


def exceedance_boundaries(np, looks: list[int], pi0: float, alpha: float,
                          total: int | None = None, spend_at: list[int] | None = None
                          ) -> tuple[list[int], list[int]]:
    """Exact group-sequential boundaries on the count of samples beyond a limit.

    A budget "p95 <= L" holds exactly when P(sample > L) <= pi0 = 0.05, so the
    number K of samples over L after n samples is the statistic (MLPerf
    LoadGen's early-stopping idea). At look j (after looks[j] samples) the
    run may stop with "pass" when K <= a_j and with "fail" when K >= b_j. The
    boundaries are computed exactly at the limit (pi = pi0, the worst case for
    both errors) by propagating the distribution of K over the paths still
    running from look to look, spending alpha evenly over the looks (Pocock-
    style: cumulative error <= alpha * j / J), so each wrong verdict has
    probability at most alpha over the whole run, not per look. The
    distribution is kept on its support (SUPPORT_SDS around the mean), so the
    cost does not grow with the square of max_count. a_j = -1 / b_j =
    looks[j] + 1 mean "impossible at this look". total: the number of looks
    the run has when `looks` is only its first few (the boundaries of a look
    depend only on the looks before it). spend_at: the planned index of each
    look in `looks` (default 0, 1, 2, ...): the error spent by a look is
    alpha * (spend_at + 1) / total.
    """
    if not 0.0 < pi0 < 1.0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need 0 < pi0 < 1 and 0 < alpha < 1 (got {pi0}, {alpha})")
    dist = np.array([1.0])  # dist[i] = P(K = offset + i, still running)
    offset = 0
    prev = 0
    spent_pass = spent_fail = 0.0
    passes: list[int] = []
    fails: list[int] = []
    total = len(looks) if total is None else total
    for j, m in enumerate(looks, 1):
        if m < prev:
            raise ValueError(f"looks must not decrease: {looks}")
        if m > prev:
            lo, hi = _support(m - prev, pi0)
            dist = np.convolve(dist, binom_pmf(np, m - prev, pi0, lo, hi))
            offset += lo
            keep_lo, keep_hi = _support(m, pi0)  # drop the far tails of the sum
            a0, a1 = max(0, keep_lo - offset), min(dist.size, keep_hi - offset + 1)
            dist, offset = dist[a0:a1], offset + a0
        prev = m
        budget = alpha * ((spend_at[j - 1] + 1) if spend_at else j) / total + 1e-12
        below = np.cumsum(dist)  # P(K <= offset + i, still running)
        ok = np.nonzero(spent_pass + below <= budget)[0]
        a = int(ok[-1]) + offset if ok.size else -1
        above = np.cumsum(dist[::-1])[::-1]  # P(K >= offset + i, still running)
        ok = np.nonzero(spent_fail + above <= budget)[0]
        b = int(ok[0]) + offset if ok.size else m + 1
        if a >= 0:
            spent_pass += float(below[a - offset])
            dist[:a - offset + 1] = 0.0
        if b <= m:
            spent_fail += float(above[b - offset])
            dist[b - offset:] = 0.0
        passes.append(a)
        fails.append(b)
    return passes, fails


def sequential_decision(np, samples_ms, rule: dict, look_index: int,
                        taken: list[tuple[int, int]] | None = None) -> dict:
    """Every gated budget's verdict at one look, or why sampling must go on.

    rule: {"looks": [n1, ...], "alpha": a, "budgets": [{"metric", "quantile",
    "limit_ms"}, ...]} (made by harness/stats.py stop_rule()). taken: the
    (sample count, planned look index) of the looks taken before this one.
    A look is taken at the first sample where its planned count AND the run's
    minimums are met, so on a slow start several planned looks become one,
    at a later count; the boundaries are computed for the counts really
    looked at (chosen by the clock, not by the data, so the errors hold),
    spending alpha up to the planned index reached. Dependence is allowed
    for on the effective scale: with inflation IF the counts become n / IF
    and the count over the limit K / IF.
    """
    x = np.asarray(samples_ms, dtype=float)
    infl = variance_inflation(np, x, int(rule.get("period", 1)))
    f = infl["factor"]
    history = list(taken or []) + [(int(x.size), look_index)]
    eff_looks = [max(1, int(n / f)) for n, _ in history]
    spend = [j for _, j in history]
    verdicts = {}
    for b in rule["budgets"]:
        pi0 = 1.0 - float(b["quantile"])
        passes, fails = exceedance_boundaries(np, eff_looks, pi0, float(rule["alpha"]),
                                              len(rule["looks"]), spend)
        k = int(np.count_nonzero(x > float(b["limit_ms"])))
        k_eff = k / f
        a, z = passes[-1], fails[-1]
        verdict = "pass" if k_eff <= a else "fail" if k_eff >= z else None
        verdicts[b["metric"]] = {"verdict": verdict, "over_limit_count": k,
                                 "pass_if_at_most": a * f if a >= 0 else None,
                                 "fail_if_at_least": z * f if z <= eff_looks[-1] else None}
    decided = all(v["verdict"] is not None for v in verdicts.values())
    return {"count": int(x.size), "look": look_index, "decided": decided,
            "variance_inflation": f, "budgets": verdicts}


def load_manifest(artifact_dir: str) -> dict:
    path = os.path.join(artifact_dir, "manifest.json")
    text = read_text(path)
    if text is None:
        raise AgentFailure("artifact", f"no manifest at {path}", EXIT_ARTIFACT)
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise AgentFailure("artifact", f"{path} is not JSON: {exc}", EXIT_ARTIFACT) from None
    for key in ("format", "entrypoint", "inputs", "reference"):
        if key not in manifest:
            raise AgentFailure("artifact", f"{path}: missing key {key!r}", EXIT_ARTIFACT)
    return manifest


def bench_input(np, manifest: dict, seq_len: int, seed: int):
    """A deterministic byte-token sequence: the same input on every device for a seed."""
    vocab = int(manifest.get("vocab_size", 260))
    max_len = int(manifest.get("max_len_tokens", seq_len))
    if seq_len > max_len:
        raise AgentFailure("usage", f"seq_len_tokens {seq_len} exceeds the model's "
                           f"max_len_tokens {max_len}", EXIT_USAGE)
    rng = np.random.default_rng(seed)
    # byte tokens 0..255 after a leading bos, as the byte tokenizer produces them
    ids = rng.integers(0, min(vocab, 256), size=(1, seq_len), dtype=np.int64)
    bos = manifest.get("bos_id")
    if bos is not None and seq_len > 1:
        ids[0, 0] = int(bos)
    name = manifest["inputs"][0]["name"]
    return {name: ids}


def input_pool(np, manifest: dict, seq_len: int, seed: int, size: int) -> list[dict]:
    """size different inputs (seeds seed, seed+1, ...), cycled through the timed loop.

    One fixed input routes the same tokens to the same experts every time, so
    their weights stay cache-hot and the latency is optimistic; a pool of
    varied inputs exercises the routing a real workload sees.
    """
    return [bench_input(np, manifest, seq_len, seed + i) for i in range(max(1, size))]


class OnnxRuntimeAdapter:
    """onnxruntime on the CPU; other runtimes plug in beside it with the same methods."""

    name = "onnxruntime"

    def __init__(self, model_path: str, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise AgentFailure("runtime_missing", f"onnxruntime is not importable on the device "
                               f"({exc}); install it: pip install onnxruntime", EXIT_RUNTIME) \
                from None
        self.ort = ort
        self.version = ort.__version__
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model_path, sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes
            raise AgentFailure("model_load", f"onnxruntime could not load {model_path}: {exc}",
                               EXIT_ARTIFACT) from None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict):
        return self.session.run(self.output_names, feeds)

    def prepare(self, feeds: dict) -> dict:
        return feeds

    def describe(self) -> dict:
        return {"api": "InferenceSession", "providers": self.session.get_providers()}

    def op_placement(self) -> dict:
        providers = self.session.get_providers()
        accel = [p for p in providers if p != "CPUExecutionProvider"]
        return placement_record(accelerator=accel[0] if accel else None, delegate=None,
                                partitions=0, ops_total=None, ops_accelerator=0,
                                fallback=[] if not accel else None,
                                note="CPUExecutionProvider only: every node runs on the CPU"
                                if not accel else "per-node placement is not exposed")

    def bind(self, np, feeds: dict, outs: list):
        """A no-argument call that runs one input through I/O binding.

        Inputs are bound once and outputs go to buffers allocated once (shaped
        like `outs`, one earlier run's outputs), so the timed call is the
        inference, not the Python binding converting arrays (about 8 us a
        call, 8 % of a 0.1 ms model).
        """
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name, value in zip(self.output_names, outs, strict=True):
            buf = self.ort.OrtValue.ortvalue_from_numpy(np.empty_like(value))
            binding.bind_ortvalue_output(name, buf)
        run = self.session.run_with_iobinding

        def call() -> None:
            run(binding)
        return call


def output_dequantization(runner, names: list[str]) -> dict:
    """Per output name, the (scale, zero) of an integer output (a full-integer int8
    model) or None for a float one: read once per signature when its runner is made,
    so the timed calls only apply it."""
    np = _numpy()
    details = runner.get_output_details()
    return {n: None if np.dtype(details[n]["dtype"]) == np.float32
            else tuple(details[n]["quantization"]) for n in names}


def _float_output(value, dequant):
    """An int8 output as float32, (q - zero) * scale, so it compares with the float
    reference outputs; a float output (dequant None) passes unchanged."""
    if dequant is None:
        return value
    scale, zero = dequant
    np = _numpy()
    return ((value.astype(np.float32) - zero) * scale).astype(np.float32)


def placement_record(accelerator, delegate, partitions, ops_total, ops_accelerator,
                     fallback, note) -> dict:
    """Where the work ran, the same keys for every runtime. ``fallback`` lists the
    ops that were meant for the accelerator and ran on the CPU ([] = none, None
    = the runtime does not say); with no accelerator nothing can fall back."""
    ops_cpu = None if ops_total is None or ops_accelerator is None else \
        ops_total - ops_accelerator
    return {"accelerator": accelerator, "delegate": delegate, "delegated_partitions": partitions,
            "ops_total": ops_total, "ops_accelerator": ops_accelerator, "ops_cpu": ops_cpu,
            "cpu_fallback_ops": len(fallback) if fallback is not None else None,
            "fallback_op_names": sorted(set(fallback)) if fallback is not None else None,
            "note": note}


class _LiteRTFeeds(dict):
    """Feeds already padded to a bucket and cast to int32 (prepare()), so the timed
    loop's run() does no input preparation."""

    bucket = 0
    tokens = 0  # the real (unpadded) length asked for
    buffers = None  # CompiledModel: input buffers written once


def padded_feeds(feeds: dict, name: str, bucket_for, pad_id: int, dtype: str) -> _LiteRTFeeds:
    """The request right-padded with pad_id to its bucket (bucket_for(tokens)),
    for runtimes with one fixed-shape graph per bucket (LiteRT, RKNN)."""
    np = _numpy()
    ids = np.asarray(feeds[name])
    tokens = int(ids.shape[-1])
    bucket = bucket_for(tokens)
    x = np.full((ids.shape[0], bucket), pad_id, dtype=dtype)
    x[:, :tokens] = ids
    out = _LiteRTFeeds({name: x})
    out.bucket, out.tokens = bucket, tokens
    return out


class LiteRTAdapter:
    """LiteRT (ai-edge-litert) on a multi-signature .tflite: one signature per
    sequence bucket (manifest ``seq_buckets``). A request of L tokens runs in the
    smallest bucket >= L, right-padded with ``pad_id``; describe() says which ran.

    ``api``: "interpreter" (the classic Interpreter: XNNPACK on the CPU, or an
    external delegate named by path) or "compiled_model" (the CompiledModel API,
    with hardware accelerator cpu, gpu or npu).
    """

    name = "litert"

    def __init__(self, model_path: str, threads: int, manifest: dict, api: str = "interpreter",
                 delegate: str | None = None, delegate_options: dict | None = None,
                 accelerator: str = "cpu") -> None:
        try:
            import ai_edge_litert
            from ai_edge_litert import interpreter as tfl
            self.version = getattr(ai_edge_litert, "__version__", None) or _dist_version(
                "ai-edge-litert")
            self.package = "ai-edge-litert"
        except ImportError as exc:
            # vendor BSPs (NXP i.MX, ...) ship the older tflite_runtime with their
            # delegates built against it: same Interpreter API, classic API only
            try:
                from tflite_runtime import interpreter as tfl
            except ImportError:
                raise AgentFailure("runtime_missing", f"ai_edge_litert is not importable on "
                                   f"the device ({exc}); install it: pip install "
                                   "ai-edge-litert", EXIT_RUNTIME) from None
            if api == "compiled_model":
                raise AgentFailure("runtime_missing", "the CompiledModel API needs "
                                   "ai-edge-litert; this device has only tflite_runtime",
                                   EXIT_RUNTIME) from None
            self.version = _dist_version("tflite-runtime") or _dist_version("tflite_runtime")
            self.package = "tflite_runtime"
        self.model_path = model_path
        self.api = api
        self.delegate = delegate
        self.accelerator = accelerator if api == "compiled_model" else None
        self.buckets = sorted(int(b) for b in manifest.get("seq_buckets") or [])
        if not self.buckets:
            raise AgentFailure("artifact", "tflite manifest lists no seq_buckets", EXIT_ARTIFACT)
        self.pad_id = int(manifest.get("pad_id", 0))
        self.input_name = manifest["inputs"][0]["name"]
        self.output_names = [o["name"] for o in manifest["outputs"]]
        self.last_bucket: int | None = None
        self.last_tokens: int | None = None
        self._runners: dict = {}
        self._dequant: dict = {}  # signature -> output_dequantization()
        try:
            if api == "compiled_model":
                self._open_compiled(accelerator)
            else:
                delegates = []
                if delegate:
                    if not os.path.isfile(delegate):
                        raise AgentFailure("delegate_missing", f"delegate library {delegate} "
                                           "does not exist on the device; fix [litert] "
                                           "delegate_path in the profile", EXIT_RUNTIME)
                    delegates = [tfl.load_delegate(delegate, delegate_options or {})]
                self.interp = tfl.Interpreter(model_path=model_path, num_threads=threads,
                                              experimental_delegates=delegates or None)
        except AgentFailure:
            raise
        except Exception as exc:  # the runtime raises ValueError/RuntimeError
            raise AgentFailure("model_load", f"ai-edge-litert ({api}) could not load "
                               f"{model_path}: {exc}", EXIT_ARTIFACT) from None

    def _open_compiled(self, accelerator: str) -> None:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator

        accel = {"cpu": HardwareAccelerator.CPU, "gpu": HardwareAccelerator.GPU,
                 "npu": HardwareAccelerator.NPU}[accelerator]
        self.cm = CompiledModel.from_file(self.model_path, hardware_accel=accel)

    def bucket_for(self, tokens: int) -> int:
        for b in self.buckets:
            if b >= tokens:
                return b
        raise AgentFailure("usage", f"{tokens} tokens exceed the largest sequence bucket "
                           f"{self.buckets[-1]} of this artifact", EXIT_USAGE)

    def prepare(self, feeds: dict) -> _LiteRTFeeds:
        if isinstance(feeds, _LiteRTFeeds):  # prepared before: this is the bucket that runs
            self.last_bucket, self.last_tokens = feeds.bucket, feeds.tokens
            return feeds
        out = padded_feeds(feeds, self.input_name, self.bucket_for, self.pad_id, "int32")
        bucket, tokens, x = out.bucket, out.tokens, out[self.input_name]
        key = f"seq_{bucket}"
        if self.api == "compiled_model":
            index = self.cm.get_signature_index(key)
            inputs = self.cm.create_input_buffers(index)
            inputs[0].write(x)
            out.buffers = (index, inputs, self.cm.create_output_buffers(index))
        elif key not in self._runners:
            runner = self.interp.get_signature_runner(key)
            self._runners[key] = runner
            self._dequant[key] = output_dequantization(runner, self.output_names)
        self.last_bucket, self.last_tokens = bucket, tokens
        return out

    def run(self, feeds: dict):
        if not isinstance(feeds, _LiteRTFeeds):
            feeds = self.prepare(feeds)
        if feeds.buffers is not None:
            index, inputs, outputs = feeds.buffers
            self.cm.run_by_index(index, inputs, outputs)
            n = int(_numpy().prod(self.cm.get_output_tensor_details(
                f"seq_{feeds.bucket}")[self.output_names[0]]["shape"]))
            return [outputs[0].read(n, _numpy().float32).reshape(1, -1)]
        key = f"seq_{feeds.bucket}"
        result = self._runners[key](**feeds)
        dequant = self._dequant[key]
        return [_float_output(result[name], dequant[name]) for name in self.output_names]

    def describe(self) -> dict:
        info = {"api": self.api, "package": self.package, "seq_buckets": self.buckets}
        if self.last_bucket is not None:
            info["bucket"] = {"seq_len_tokens": self.last_bucket,
                              "signature": f"seq_{self.last_bucket}",
                              "requested_tokens": self.last_tokens,
                              "padded_tokens": self.last_bucket - (self.last_tokens or 0)}
        if self.api == "compiled_model":
            info["accelerator"] = self.accelerator
        if self.delegate:
            info["delegate"] = self.delegate
        return info

    def op_placement(self) -> dict:
        bucket = self.last_bucket or self.buckets[0]
        ops = tflite_ops(self.model_path, f"seq_{bucket}")
        total = len(ops) if ops is not None else None
        if self.api == "compiled_model":
            full = bool(self.cm.is_fully_accelerated())
            if self.accelerator == "cpu":
                return placement_record(None, "CompiledModel CPU (XNNPACK)", 0, total, 0, [],
                                        "CPU accelerator requested: every op runs on the CPU")
            return placement_record(self.accelerator, f"CompiledModel {self.accelerator}", None,
                                    total, total if full else None, [] if full else None,
                                    "fully accelerated" if full else
                                    "not fully accelerated; ai-edge-litert does not name the "
                                    "ops that fell back")
        if not self.delegate:
            return placement_record(None, None, 0, total, 0, [],
                                    "no accelerator delegate: every op runs on the CPU "
                                    "(XNNPACK and builtin kernels)")
        names = [self.interp._get_op_details(i)["op_name"]  # noqa: SLF001 - only API there is
                 for i in range(self.interp._interpreter.NumNodes())]
        return placement_record(os.path.basename(self.delegate), self.delegate,
                                sum(1 for n in names if n == "DELEGATE"), total, None, None,
                                "delegated partitions counted in the first signature's graph; "
                                "the Interpreter API does not say which ops each holds")


class RKNNLiteAdapter:
    """Rockchip's RKNN runtime through rknn-toolkit-lite2 (``rknnlite.api.RKNNLite``)
    on an RK3588: one .rknn per sequence bucket (manifest ``rknn_buckets``; an
    .rknn has static shapes), loaded on first use, run on the NPU cores of
    ``core_mask``. A request of L tokens runs in the smallest bucket >= L,
    right-padded with ``pad_id``.

    Op placement comes from the artifact: the .rknn fixes each op's target
    (NPU or CPU) when rknn-toolkit2 builds it, and the build recorded the
    toolkit's per-op table in the manifest; RKNNLite has no query for it.
    """

    name = "rknn"
    CORE_MASKS = {"auto": "NPU_CORE_AUTO", "0": "NPU_CORE_0", "1": "NPU_CORE_1",
                  "2": "NPU_CORE_2", "0_1": "NPU_CORE_0_1", "0_1_2": "NPU_CORE_0_1_2",
                  "all": "NPU_CORE_ALL"}

    def __init__(self, model_path: str, manifest: dict, core_mask: str = "0_1_2",
                 library: str = "/usr/lib/librknnrt.so",
                 runtime_version: str | None = None) -> None:
        if core_mask not in self.CORE_MASKS:
            raise AgentFailure("usage", f"--rknn-core-mask {core_mask!r}: expected one of "
                               f"{', '.join(self.CORE_MASKS)}", EXIT_USAGE)
        try:
            from rknnlite.api import RKNNLite
        except ImportError as exc:
            raise AgentFailure("runtime_missing", f"rknnlite is not importable on the device "
                               f"({exc}); install rknn-toolkit-lite2 (pip install "
                               "rknn-toolkit-lite2)", EXIT_RUNTIME) from None
        if not os.path.isfile(library):
            raise AgentFailure("runtime_missing", f"librknnrt {library} does not exist on the "
                               "device; install Rockchip's librknnrt.so there or fix [rknn] "
                               "library_path in the profile", EXIT_RUNTIME)
        self.RKNNLite = RKNNLite
        self.core_mask = core_mask
        self.library = library
        self.expected_version = runtime_version
        self.version = _dist_version("rknn-toolkit-lite2")
        self.sdk_version: str | None = None
        self.pad_id = int(manifest.get("pad_id", 0))
        self.input_name = manifest["inputs"][0]["name"]
        self.output_names = [o["name"] for o in manifest["outputs"]]
        folder = os.path.dirname(model_path)
        self.buckets = {int(b["seq_len_tokens"]): b for b in manifest.get("rknn_buckets") or []}
        if not self.buckets:
            raise AgentFailure("artifact", "rknn manifest lists no rknn_buckets", EXIT_ARTIFACT)
        self.files = {b: os.path.join(folder, e["file"]) for b, e in self.buckets.items()}
        missing = [p for p in self.files.values() if not os.path.isfile(p)]
        if missing:
            raise AgentFailure("artifact", f"rknn model file(s) missing on the device: "
                               f"{', '.join(sorted(missing))}; push the whole artifact folder",
                               EXIT_ARTIFACT)
        self._models: dict = {}
        self.last_bucket: int | None = None
        self.last_tokens: int | None = None
        self._open(max(self.buckets))  # fail at load, not in the timed loop

    def _open(self, bucket: int):
        if bucket in self._models:
            return self._models[bucket]
        path = self.files[bucket]
        rk = self.RKNNLite(verbose=False)
        ret = rk.load_rknn(path)
        if ret != 0:
            raise AgentFailure("model_load", f"RKNNLite.load_rknn({path}) returned {ret}",
                               EXIT_ARTIFACT)
        ret = rk.init_runtime(core_mask=getattr(self.RKNNLite, self.CORE_MASKS[self.core_mask]))
        if ret != 0:
            raise AgentFailure("model_load", f"RKNNLite.init_runtime(core_mask="
                               f"{self.core_mask}) returned {ret} for {path} (is this an "
                               f"RK3588 with the rknpu driver loaded, and {self.library} "
                               "the board's librknnrt?)", EXIT_RUNTIME)
        if self.sdk_version is None:
            self.sdk_version = str(rk.get_sdk_version())
            want = self.expected_version
            if want and want not in self.sdk_version:
                rk.release()
                raise AgentFailure("runtime_mismatch", f"the board's RKNN runtime reports "
                                   f"{self.sdk_version!r}, the profile's [rknn] "
                                   f"runtime_version is {want!r}; install that librknnrt or "
                                   "fix runtime_version", EXIT_RUNTIME)
        self._models[bucket] = rk
        return rk

    def bucket_for(self, tokens: int) -> int:
        for b in sorted(self.buckets):
            if b >= tokens:
                return b
        raise AgentFailure("usage", f"{tokens} tokens exceed the largest sequence bucket "
                           f"{max(self.buckets)} of this rknn artifact", EXIT_USAGE)

    def prepare(self, feeds: dict) -> _LiteRTFeeds:
        if isinstance(feeds, _LiteRTFeeds):
            self.last_bucket, self.last_tokens = feeds.bucket, feeds.tokens
            return feeds
        out = padded_feeds(feeds, self.input_name, self.bucket_for, self.pad_id, "int64")
        self._open(out.bucket)
        self.last_bucket, self.last_tokens = out.bucket, out.tokens
        return out

    def run(self, feeds: dict):
        if not isinstance(feeds, _LiteRTFeeds):
            feeds = self.prepare(feeds)
        outs = self._models[feeds.bucket].inference(inputs=[feeds[self.input_name]])
        if not outs:
            raise AgentFailure("runtime", f"RKNNLite.inference returned {outs!r} (bucket "
                               f"{feeds.bucket})", EXIT_RUNTIME)
        return [_numpy().asarray(o, dtype="float32").reshape(1, -1) for o in outs]

    def describe(self) -> dict:
        info = {"api": "RKNNLite", "core_mask": self.core_mask, "library": self.library,
                "sdk_version": self.sdk_version, "seq_buckets": sorted(self.buckets)}
        if self.last_bucket is not None:
            info["bucket"] = {"seq_len_tokens": self.last_bucket,
                              "file": os.path.basename(self.files[self.last_bucket]),
                              "requested_tokens": self.last_tokens,
                              "padded_tokens": self.last_bucket - (self.last_tokens or 0)}
        return info

    def op_placement(self) -> dict:
        entry = self.buckets[self.last_bucket or min(self.buckets)]
        if "ops_total" not in entry or "ops_npu" not in entry:
            return placement_record("RKNPU2", "librknnrt", None, None, None, None,
                                    "the manifest records no op table for this bucket")
        return placement_record("RKNPU2", "librknnrt", None, int(entry["ops_total"]),
                                int(entry["ops_npu"]), list(entry.get("cpu_ops") or []),
                                f"NPU cores {self.core_mask}; per-op targets from "
                                "rknn-toolkit2's layer table when the .rknn was built (the "
                                "file fixes them): the ops on the CPU are the fallback")


def _numpy():
    import numpy

    return numpy


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - metadata may be missing on a device
        return None


def tflite_ops(model_path: str, signature: str) -> list[str] | None:
    """Builtin op names of one signature's graph, read from the flatbuffer with the
    schema ai-edge-litert ships (None when it is not there)."""
    try:
        from ai_edge_litert import schema_py_generated as fb
    except ImportError:
        return None
    with open(model_path, "rb") as f:
        model = fb.Model.GetRootAsModel(f.read(), 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        if sig.SignatureKey().decode() != signature:
            continue
        sg = model.Subgraphs(sig.SubgraphIndex())
        out = []
        for j in range(sg.OperatorsLength()):
            code = model.OperatorCodes(sg.Operators(j).OpcodeIndex())
            out.append(names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
        return out
    return None


#: artifact format -> the adapter that runs it
ADAPTERS = {"onnx": OnnxRuntimeAdapter, "tflite": LiteRTAdapter, "rknn": RKNNLiteAdapter}


def open_runtime(manifest: dict, model_path: str, args: argparse.Namespace):
    """The adapter for the artifact's format, with the runtime options given."""
    fmt = manifest["format"]
    if fmt not in ADAPTERS:
        raise AgentFailure("usage", f"format {fmt!r} has no runtime adapter in this agent "
                           f"(supported: {', '.join(sorted(ADAPTERS))})", EXIT_USAGE)
    if fmt == "tflite":
        options = dict(o.split("=", 1) for o in args.delegate_option)
        return LiteRTAdapter(model_path, args.threads, manifest, api=args.runtime_api,
                             delegate=args.delegate, delegate_options=options,
                             accelerator=args.accelerator)
    if fmt == "rknn":
        return RKNNLiteAdapter(model_path, manifest, core_mask=args.rknn_core_mask,
                               library=args.rknn_library,
                               runtime_version=args.rknn_runtime_version)
    return OnnxRuntimeAdapter(model_path, args.threads)


#: calls of each path timed to record what the binding saves (few: a slow device pays each)
BINDING_PROBE_CALLS = 3


def bound_calls(np, runtime, pool: list[dict]) -> tuple[list, dict]:
    """One timed call per pool input, through I/O binding where the runtime has it.

    Returns the calls and what the record says about them: whether binding was
    used and the measured per-call cost of the plain run() path beside it
    (median of BINDING_PROBE_CALLS each), so the binding's effect is a recorded
    number.
    """
    bind = getattr(runtime, "bind", None)
    if bind is None:
        return [lambda f=f: runtime.run(f) for f in pool], {"io_binding": False}
    outs = runtime.run(pool[0])  # every pool input has the same shapes
    calls = [bind(np, f, outs) for f in pool]
    plain, bound = [], []
    for _ in range(BINDING_PROBE_CALLS):
        a = time.perf_counter_ns()
        runtime.run(pool[0])
        b = time.perf_counter_ns()
        calls[0]()
        c = time.perf_counter_ns()
        plain.append(b - a)
        bound.append(c - b)
    plain.sort()
    bound.sort()
    mid = BINDING_PROBE_CALLS // 2
    return calls, {"io_binding": True, "plain_call_median_ns": plain[mid],
                   "bound_call_median_ns": bound[mid]}



def check_parity(np, runtime, manifest: dict, artifact_dir: str) -> dict:
    """Run every reference input and compare with the host's reference outputs.

    Fails closed: an output the reference lacks (or the other way round), a shape
    that differs, or a NaN/inf on either side is a parity failure, never a
    silently skipped comparison (max() would drop a NaN difference).
    """
    ref = manifest["reference"]
    text = read_text(os.path.join(artifact_dir, ref["file"]))
    if text is None:
        raise AgentFailure("artifact", f"reference file {ref['file']} missing", EXIT_ARTIFACT)
    try:
        data = json.loads(text)
        pairs = list(zip(data["inputs"], data["outputs"], strict=True))
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentFailure("artifact", f"reference file {ref['file']}: expected "
                           f"{{\"inputs\": [...], \"outputs\": [...]}} of equal length ({exc})",
                           EXIT_ARTIFACT) from None
    atol = float(ref.get("atol", 1e-4))
    max_diff = 0.0
    agree = total = 0
    for i, (inputs, outputs) in enumerate(pairs):
        feeds = {}
        for spec in manifest["inputs"]:
            feeds[spec["name"]] = np.asarray(inputs[spec["name"]], dtype=spec.get("dtype",
                                                                                   "int64"))
        got = runtime.run(feeds)
        if set(outputs) != set(runtime.output_names):
            raise AgentFailure("parity", f"reference {i}: outputs {sorted(outputs)} != the "
                               f"model's {sorted(runtime.output_names)}", EXIT_ARTIFACT)
        for name, out in zip(runtime.output_names, got, strict=True):
            want = np.asarray(outputs[name], dtype=np.float32)
            out = np.asarray(out, dtype=np.float32)
            if out.shape != want.shape:
                raise AgentFailure("parity", f"output {name} shape {out.shape} != reference "
                                   f"{want.shape}", EXIT_ARTIFACT)
            for side, arr in (("device", out), ("reference", want)):
                bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
                if bad:
                    raise AgentFailure("parity", f"reference {i}: {side} output {name} has "
                                       f"{bad} NaN/inf value(s)", EXIT_ARTIFACT)
            max_diff = max(max_diff, float(np.max(np.abs(out - want))) if out.size else 0.0)
            agree += int(np.sum(out.argmax(axis=-1) == want.argmax(axis=-1)))
            total += int(np.prod(want.shape[:-1]))
    top1 = agree / total if total else 0.0
    return {"max_abs_diff": max_diff, "top1_agreement": top1, "atol": atol,
            "n_reference": len(pairs), "passed": bool(total) and max_diff <= atol and top1 == 1.0}


def cpu_busy_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat's first line."""
    line = (read_text("/proc/stat") or "").partition("\n")[0].split()
    if not line or line[0] != "cpu":
        return None
    ticks = [int(v) for v in line[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return sum(ticks[:8]) - idle, sum(ticks[:8])


def own_cpu_ticks() -> int | None:
    """This process's user + system clock ticks (/proc/self/stat fields 14 and 15)."""
    fields = proc_stat(os.getpid())
    return int(fields[11]) + int(fields[12]) if len(fields) > 12 else None


def involuntary_switches() -> int | None:
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)
    except (ImportError, OSError):
        return None


def contention(before: dict, after: dict) -> dict:
    """What else the device did during the timed window.

    background_cpu_cores: CPU time spent by everything but this agent, in
    cores (2.0 = two other cores busy all along). A contended device gives a
    latency about the contention; the harness reports the run unstable.
    """
    out: dict = {"background_cpu_cores": None, "involuntary_context_switches": None,
                 "window_s": (after["t"] - before["t"]) / 1e9}
    if before["cpu"] and after["cpu"] and before["own"] is not None and after["own"] is not None:
        busy = after["cpu"][0] - before["cpu"][0]
        total = after["cpu"][1] - before["cpu"][1]
        own = after["own"] - before["own"]
        ncpu = os.cpu_count() or 1
        if total > 0:
            out["background_cpu_cores"] = max(0.0, (busy - own) / total * ncpu)
    if before["nivcsw"] is not None and after["nivcsw"] is not None:
        out["involuntary_context_switches"] = after["nivcsw"] - before["nivcsw"]
    return out


def _snapshot() -> dict:
    return {"t": time.monotonic_ns(), "cpu": cpu_busy_ticks(), "own": own_cpu_ticks(),
            "nivcsw": involuntary_switches()}


def raise_priority(priority: int | None) -> dict:
    """Run the calling thread (the one that times inference) under SCHED_FIFO.

    On a shared Linux host every normal-priority neighbour preempts the timed
    loop, and its p95 then measures the neighbours; at a real-time priority the
    loop keeps its core and the other cores serve the rest (the kernel's RT
    throttling still leaves them 5 % of this one). Best effort: without
    CAP_SYS_NICE or an rtprio limit it is not applied, and the record says so.
    Only the calling thread changes (the sensor sampler is its own process).
    """
    out = {"policy": "SCHED_FIFO", "priority": priority, "applied": False, "reason": None}
    if priority is None:
        return {**out, "policy": None, "reason": "not requested"}
    if not hasattr(os, "sched_setscheduler"):
        return {**out, "reason": "this OS has no sched_setscheduler"}
    if (os.cpu_count() or 1) < 2:
        return {**out, "reason": "one CPU: a real-time agent would starve the sensor sampler"}
    try:
        out["previous_policy"] = os.sched_getscheduler(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, ValueError) as exc:
        return {**out, "reason": f"refused ({exc}); needs CAP_SYS_NICE or `ulimit -r`"}
    out["applied"] = True
    return out


def restore_priority(sched: dict) -> None:
    """Back to the policy the agent had (normal) once the measurements are done."""
    if sched.get("applied"):
        try:
            os.sched_setscheduler(0, sched.get("previous_policy", os.SCHED_OTHER),
                                  os.sched_param(0))
        except OSError:
            pass


def run_benchmark(args: argparse.Namespace) -> dict:

    import numpy as np

    manifest = load_manifest(args.artifact_dir)
    stop_rule = parse_stop_rule(args.stop_rule) if args.stop_rule else None
    model_path = os.path.join(args.artifact_dir, manifest["entrypoint"])
    pool = input_pool(np, manifest, args.seq_len_tokens, args.seed, args.input_pool_size)

    t0 = time.perf_counter_ns()
    runtime = open_runtime(manifest, model_path, args)
    pool = [runtime.prepare(f) for f in pool]  # padding to a bucket is set-up, not inference
    t1 = time.perf_counter_ns()
    runtime.run(pool[0])
    t2 = time.perf_counter_ns()
    cold = {"session_create_ms": (t1 - t0) / 1e6, "first_inference_ms": (t2 - t1) / 1e6}

    parity = check_parity(np, runtime, manifest, args.artifact_dir)
    # padding to a bucket is set-up, not inference (parity ran other buckets)
    pool = [runtime.prepare(f) for f in pool]
    calls, call_info = bound_calls(np, runtime, pool)

    sched = raise_priority(getattr(args, "realtime_priority", None))
    try:
        measured = _measure(np, args, manifest, calls, stop_rule)
    finally:
        restore_priority(sched)
    timed, warm, ab, generation = measured
    described, placement = runtime.describe(), runtime.op_placement()  # the timed bucket's
    evaluation = run_eval(np, runtime, args, manifest)  # after every timed part
    return {
        "ab": ab,
        "ok": True,
        "agent_version": AGENT_VERSION,
        "runtime": {"name": runtime.name, "version": runtime.version, **described,
                    **call_info},
        "op_placement": placement,
        "latency_samples_ns": timed["samples"],
        "warmup_samples_ns": warm,
        "cold_start": cold,
        "peak_rss_kb": peak_rss_kb(),
        "parity": parity,
        "run": timed["run"],
        "stopping": timed["stopping"],
        "contention": timed["contention"],
        "scheduling": {k: v for k, v in sched.items() if k != "previous_policy"},
        "window_monotonic_ns": timed["window"],
        "host": {**host_facts(), "boot_id": boot_id()},
        "sysfs_samples": timed["sampler"].samples if timed["sampler"] else {},
        "sample_interval_ms": timed["sampler"].interval_ms if timed["sampler"] else None,
        "generation": generation,
        "eval": evaluation,
    }


def _measure(np, args: argparse.Namespace, manifest: dict, calls: list, stop_rule):
    """Warm-up, the timed window and the generation runs: everything that runs
    at the raised priority when one was asked."""
    warm = []
    for i in range(args.warmup_count):
        call = calls[i % len(calls)]
        a = time.perf_counter_ns()
        call()
        warm.append(time.perf_counter_ns() - a)

    arms = [calls]
    ab = None
    if args.ab_artifact_dir:
        ab = load_ab_arm(np, args, manifest)
        arms.append(ab.pop("calls"))
        stop_rule = None  # the A/B comparison needs both arms to the minimums
    sampler = SysfsSampler(args.sample_path, args.sample_interval_ms) \
        if args.sample_path else None
    timed = timed_loop(np, arms, args, with_period(stop_rule, len(calls)), sampler)
    if ab is not None:
        ab["baseline_samples_ns"] = timed["arm_samples"][1]
        ab["order"] = "pairs, arm order drawn at random per pair (seeded)"
    generation = run_generation(np, args, manifest)  # after the forward window; own timing
    timed["sampler"] = sampler
    return timed, warm, ab, generation


def parse_stop_rule(text: str) -> dict:
    """--stop-rule JSON (harness/stats.py stop_rule() writes it), checked before any timing."""
    try:
        rule = json.loads(text)
        looks = [int(n) for n in rule["looks"]]
        alpha = float(rule["alpha"])
        budgets = [{"metric": str(b["metric"]), "quantile": float(b["quantile"]),
                    "limit_ms": float(b["limit_ms"])} for b in rule["budgets"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentFailure("usage", f"--stop-rule is not a valid rule ({exc!r}): expected "
                           '{"looks": [...], "alpha": a, "budgets": [{"metric", "quantile", '
                           '"limit_ms"}]}', EXIT_USAGE) from None
    if not looks or looks != sorted(looks) or not budgets or not 0 < alpha < 0.5:
        raise AgentFailure("usage", f"--stop-rule: looks must rise, budgets must not be empty "
                           f"and 0 < alpha < 0.5 (got {text})", EXIT_USAGE)
    return {"looks": looks, "alpha": alpha, "budgets": budgets}


def with_period(rule: dict | None, period: int) -> dict | None:
    return None if rule is None else {**rule, "period": period}


def load_ab_arm(np, args: argparse.Namespace, manifest: dict) -> dict:
    """The baseline arm of an interleaved A/B run (--ab-artifact-dir): its runtime, its
    parity, and one bound call per input of the same pool as the candidate's."""
    base_manifest = load_manifest(args.ab_artifact_dir)
    if base_manifest["format"] != manifest["format"]:
        raise AgentFailure("usage", f"--ab-artifact-dir holds a {base_manifest['format']!r} "
                           f"artifact, the candidate a {manifest['format']!r} one: an A/B "
                           "run compares one format", EXIT_USAGE)
    runtime = open_runtime(base_manifest, os.path.join(args.ab_artifact_dir,
                                                       base_manifest["entrypoint"]), args)
    pool = [runtime.prepare(f) for f in
            input_pool(np, base_manifest, args.seq_len_tokens, args.seed, args.input_pool_size)]
    runtime.run(pool[0])
    calls, info = bound_calls(np, runtime, pool)
    return {"calls": calls, "runtime": {"name": runtime.name, "version": runtime.version,
                                        **runtime.describe(), **info},
            "baseline_parity": check_parity(np, runtime, base_manifest, args.ab_artifact_dir),
            "baseline_model": base_manifest.get("model"),
            "baseline_variant": base_manifest.get("variant")}


def timed_loop(np, arms: list[list], args: argparse.Namespace, stop_rule: dict | None,
               sampler: SysfsSampler | None) -> dict:
    """The timed window: until the minimums are met, or with a stop rule until every
    gated budget is decided at a look, capped by max_count / max_duration_s.

    perf_counter_ns wraps the call alone. The garbage collector is frozen and
    off for the window (a collection inside one sample is a pause the model
    did not cause); inputs cycle through the pool. With two arms (an A/B run)
    each step times one call of each, in an order drawn at random per pair,
    so the pair shares the device's state and neither arm always goes first.
    """
    import gc
    import random

    calls = arms[0]
    order = random.Random(args.seed)
    arm_samples: list[list[int]] = [[] for _ in arms]
    samples = arm_samples[0]
    min_dur_ns = int(args.min_duration_s * 1e9)
    max_dur_ns = int(args.max_duration_s * 1e9)
    looks = stop_rule["looks"] if stop_rule else []
    next_look = 0
    taken: list[tuple[int, int]] = []
    decisions: list[dict] = []
    pool_size = len(calls)
    perf = time.perf_counter_ns
    gc.collect()
    gc.freeze()
    gc.disable()
    before = _snapshot()
    w0 = time.monotonic_ns()
    start = perf()
    stopped_by = "min_reached"
    try:
        while True:
            i = len(samples) % pool_size
            if len(arms) == 1:
                call = calls[i]
                a = perf()
                call()
                b = perf()
                samples.append(b - a)
            else:
                for k in order.sample(range(len(arms)), len(arms)):
                    call = arms[k][i]
                    a = perf()
                    call()
                    b = perf()
                    arm_samples[k].append(b - a)
            n = len(samples)
            elapsed = b - start
            minimums = n >= args.min_count and elapsed >= min_dur_ns
            if stop_rule is None:
                if minimums:
                    break
            elif minimums and next_look < len(looks) and n >= looks[next_look]:
                # planned looks passed while the minimums were not met become one look
                while next_look + 1 < len(looks) and n >= looks[next_look + 1]:
                    next_look += 1
                d = sequential_decision(np, [s / 1e6 for s in samples], stop_rule,
                                        next_look, taken)
                d["elapsed_s"] = elapsed / 1e9
                decisions.append(d)
                taken.append((n, next_look))
                next_look += 1
                if d["decided"]:
                    stopped_by = "decided"
                    break
            if n >= args.max_count:
                stopped_by = "max_count"
                break
            if elapsed >= max_dur_ns:
                stopped_by = "max_duration"
                break
    finally:
        duration_ns = perf() - start
        w1 = time.monotonic_ns()
        after = _snapshot()
        gc.enable()
        gc.unfreeze()
        if sampler:
            sampler.stop()
    reason = {"min_reached": "stopped once min_count and min_duration_s were met",
              "decided": f"every gated budget was decided at look {next_look - 1} "
                         f"({len(samples)} samples)",
              "max_count": "reached max_count" + (" before every budget was decided"
                                                  if stop_rule else ""),
              "max_duration": "reached max_duration_s" + (" before every budget was decided"
                                                          if stop_rule else "")}[stopped_by]
    return {
        "samples": samples,
        "arm_samples": arm_samples,
        "run": {"count": len(samples), "duration_s": duration_ns / 1e9,
                "min_count_met": len(samples) >= args.min_count,
                "min_duration_met": duration_ns >= min_dur_ns, "stopped_by": stopped_by,
                "input_pool_size": pool_size, "gc_disabled": True},
        "stopping": {"rule": stop_rule, "stopped_by": stopped_by, "reason": reason,
                     "looks": decisions},
        "contention": contention(before, after),
        "window": [w0, w1],
    }


# ------------------------------------------------------------- generation
#
# Generative benchmarks of an artifact that ships prefill + decode graphs
# (manifest "generation"): named as llama-bench names them, ppN = prefill of an
# N-token prompt (time to first token), tgM = M new tokens decoded one at a
# time with the KV cache. Tokens are the model's tokens (GEM: bytes).


def _gen_sessions(manifest: dict, artifact_dir: str, threads: int):
    gen = manifest["generation"]
    pre = OnnxRuntimeAdapter(os.path.join(artifact_dir, gen["prefill"]), threads)
    dec = OnnxRuntimeAdapter(os.path.join(artifact_dir, gen["decode"]), threads)
    return gen, pre, dec


def _greedy(np, pre, dec, prompt, new_tokens: int, perf=time.perf_counter_ns):
    """Greedy decoding; returns (tokens, ttft_ns, per-token decode ns, cache bytes).

    TTFT = prefill run + argmax of the first token; each decode sample = one
    decode-step run + its argmax (what a user waits for per token)."""
    a = perf()
    logits, k, v, r = pre.run({"input_ids": prompt})
    nxt = int(np.argmax(logits[0]))
    ttft = perf() - a
    tokens, steps = [nxt], []
    for _ in range(new_tokens - 1):
        a = perf()
        logits, k, v, r = dec.run({"input_ids": np.asarray([[nxt]], dtype=np.int64),
                                   "past_k": k, "past_v": v, "past_route_sum": r})
        nxt = int(np.argmax(logits[0]))
        steps.append(perf() - a)
        tokens.append(nxt)
    return tokens, ttft, steps, int(k.nbytes + v.nbytes + r.nbytes)


def check_generation(np, pre, dec, gen: dict, artifact_dir: str) -> dict:
    """Greedy tokens on the reference prompts vs the host's torch greedy tokens."""
    text = read_text(os.path.join(artifact_dir, gen["reference_file"]))
    if text is None:
        raise AgentFailure("artifact", f"generation reference {gen['reference_file']} missing",
                           EXIT_ARTIFACT)
    data = json.loads(text)
    same = total = 0
    for p in data["prompts"]:
        want = [int(t) for t in p["expected_tokens"]]
        got, _, _, _ = _greedy(np, pre, dec, np.asarray([p["input_ids"]], dtype=np.int64),
                               len(want))
        same += sum(int(a == b) for a, b in zip(got, want, strict=True))
        total += len(want)
    return {"prompts": len(data["prompts"]), "token_agreement": same / total if total else 0.0,
            "passed": same == total}


#: untimed full generation runs before the timed ones
GEN_WARMUP_RUNS = 3


def run_generation(np, args: argparse.Namespace, manifest: dict) -> dict | None:
    """pp/tg benchmarks: ``gen_runs`` timed runs after one warm-up run, each a
    prefill of ``prefill_tokens`` then ``decode_tokens`` greedy steps."""
    if "generation" not in manifest or args.gen_runs <= 0:
        return None
    gen, pre, dec = _gen_sessions(manifest, args.artifact_dir, args.threads)
    parity = check_generation(np, pre, dec, gen, args.artifact_dir)
    n, m = args.prefill_tokens, args.decode_tokens
    max_len = int(gen.get("max_len_tokens", manifest.get("max_len_tokens", n + m)))
    if n < 1 or m < 1 or n + m > max_len:
        raise AgentFailure("usage", f"prefill {n} + decode {m} tokens must be >= 1 each and "
                           f"fit the context of {max_len} tokens", EXIT_USAGE)
    prompt = bench_input(np, manifest, n, args.seed)[manifest["inputs"][0]["name"]]
    for _ in range(GEN_WARMUP_RUNS):  # the first runs are slower (caches, allocator)
        _greedy(np, pre, dec, prompt, m)
    ttft, steps, per_s = [], [], []
    cache_bytes = 0
    for _ in range(args.gen_runs):
        _, _, s, cache_bytes = _greedy(np, pre, dec, prompt, m)
        steps.extend(s)
        per_s.append(len(s) / (sum(s) / 1e9) if s else 0.0)
    # TTFT from prefill-only runs of its own, all alike: a p95 needs >= 72
    # independent samples before its upper end is bounded at 95 %
    for _ in range(args.prefill_runs):
        ttft.append(_greedy(np, pre, dec, prompt, 1)[1])
    return {
        "tokens": gen.get("tokens", "tokens"),
        "parity": parity,
        "prefill": {"run": f"pp{n}", "prompt_tokens": n, "ttft_samples_ns": ttft},
        "decode": {"run": f"tg{m}", "prompt_tokens": n, "new_tokens": m,
                   "token_samples_ns": steps, "tokens_per_s_samples": per_s},
        "kv_cache_bytes": cache_bytes,
        "runs": args.gen_runs,
        "prefill_runs": len(ttft),
    }


# -- eval: the evaluation set through the artifact, scored on the host ------------
# The harness pushes a JSON eval set {"format": "gem-eval-set/1", "examples":
# [{"id", "input_ids", "label"}]}; the agent returns, per example in order, the
# predicted class (argmax of the artifact's logits) and, where the artifact has
# the generation graphs, the summed next-token NLL (nats) with its target count:
# prefill of the first token, then one decode step per further token (the KV
# cache reproduces the full forward pass), so every position's logits are real
# device outputs. The host scores (harness/quality.py); the agent never sees
# a metric, and the labels it was given are not echoed back.


def _log_softmax_at(np, logits, target: int) -> float:
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    m = float(z.max())
    return float(z[target] - m - np.log(np.exp(z - m).sum()))


def _sequence_nll(np, pre, dec, ids: list[int]) -> tuple[float, int]:
    """Summed next-token NLL of ids[1:] given the prefix, through the graphs."""
    logits, k, v, r = pre.run({"input_ids": np.asarray([ids[:1]], dtype=np.int64)})
    nll = 0.0
    for t in range(1, len(ids)):
        nll -= _log_softmax_at(np, logits[0], int(ids[t]))
        if t + 1 < len(ids):
            logits, k, v, r = dec.run({"input_ids": np.asarray([[ids[t]]], dtype=np.int64),
                                       "past_k": k, "past_v": v, "past_route_sum": r})
    return nll, len(ids) - 1


def load_eval_set(path: str) -> list[dict]:
    text = read_text(path)
    if text is None:
        raise AgentFailure("usage", f"eval set {path} does not exist on the device", EXIT_USAGE)
    try:
        data = json.loads(text)
        examples = data["examples"]
        for e in examples:
            e["input_ids"] = [int(x) for x in e["input_ids"]]
            if not e["input_ids"]:
                raise ValueError(f"example {e.get('id')} has no input_ids")
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentFailure("usage", f"eval set {path}: expected {{\"examples\": [{{\"id\", "
                           f"\"input_ids\", \"label\"}}]}} ({exc})", EXIT_USAGE) from None
    return examples


def run_eval(np, runtime, args: argparse.Namespace, manifest: dict) -> dict | None:
    """Predictions (and per-example NLL) of the eval set on this device."""
    if not args.eval_file:
        return None
    examples = load_eval_set(args.eval_file)
    name = manifest["inputs"][0]["name"]
    dtype = manifest["inputs"][0].get("dtype", "int64")
    limit = getattr(runtime, "buckets", None)
    limit = limit[-1] if limit else int(manifest.get("max_len_tokens", 1 << 30))
    preds, truncated = [], 0
    t0 = time.perf_counter_ns()
    for e in examples:
        ids = e["input_ids"]
        if len(ids) > limit:  # LiteRT: the largest bucket is the longest input
            ids, truncated = ids[:limit], truncated + 1
        out = runtime.run(runtime.prepare({name: np.asarray([ids], dtype=dtype)}))
        preds.append(int(np.argmax(np.asarray(out[0]).reshape(-1))))
    t1 = time.perf_counter_ns()
    nll, lm_source = None, "not measured: the artifact ships no generation graphs"
    if "generation" in manifest and manifest["format"] == "onnx":
        _, pre, dec = _gen_sessions(manifest, args.artifact_dir, args.threads)
        nll = [list(_sequence_nll(np, pre, dec, e["input_ids"])) for e in examples]
        lm_source = "prefill (first token) + decode steps with the KV cache, onnxruntime"
    t2 = time.perf_counter_ns()
    return {"ids": [e.get("id") for e in examples], "preds": preds, "nll": nll,
            "lm_source": lm_source, "truncated_examples": truncated,
            "classify_s": (t1 - t0) / 1e9, "lm_s": (t2 - t1) / 1e9}


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and exits 2 on bad input; the contract wants JSON."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact-dir", default=None, help="required, except with --stop-stale")
    p.add_argument("--seq-len-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup-count", type=int, default=5)
    p.add_argument("--min-count", type=int, default=50)
    p.add_argument("--min-duration-s", type=float, default=1.0)
    p.add_argument("--max-count", type=int, default=2000)
    p.add_argument("--max-duration-s", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prefill-tokens", type=int, default=128, help="ppN: prompt length")
    p.add_argument("--decode-tokens", type=int, default=64, help="tgM: new tokens")
    p.add_argument("--gen-runs", type=int, default=30,
                   help="timed decode runs (tgM; 0: no generation benchmark); the tokens/s "
                        "median needs >= 6 effective runs for a bounded interval")
    p.add_argument("--prefill-runs", type=int, default=500,
                   help="timed prefill-only runs (ppN, TTFT): a p95 needs >= 72 effective "
                        "samples for a bounded upper end")
    p.add_argument("--eval-file", default=None,
                   help="eval benchmark: run this JSON eval set through the artifact and "
                        "return per-example predictions (and NLL) for the host to score")
    p.add_argument("--sample-path", action="append", default=[])
    p.add_argument("--sample-interval-ms", type=float, default=MIN_SAMPLE_INTERVAL_MS,
                   help=f"sensor sampling period, at least {MIN_SAMPLE_INTERVAL_MS:g} ms")
    p.add_argument("--realtime-priority", type=int, default=None, metavar="1-99",
                   help="time under SCHED_FIFO at this priority (best effort, recorded)")
    p.add_argument("--input-pool-size", type=int, default=8,
                   help="different inputs cycled through the timed loop")
    p.add_argument("--stop-rule", default=None,
                   help="JSON: gated budgets and look schedule for sequential stopping")
    p.add_argument("--ab-artifact-dir", default=None,
                   help="interleaved A/B: the baseline artifact, timed alternately with "
                        "--artifact-dir (the candidate) in one session")
    p.add_argument("--sampler", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--runtime-api", choices=("interpreter", "compiled_model"),
                   default="interpreter", help="LiteRT API (tflite artifacts)")
    p.add_argument("--delegate", default=None, help="LiteRT external delegate library path")
    p.add_argument("--delegate-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option passed to the external delegate (repeatable)")
    p.add_argument("--accelerator", choices=("cpu", "gpu", "npu"), default="cpu",
                   help="CompiledModel hardware accelerator")
    p.add_argument("--rknn-core-mask", default="0_1_2",
                   choices=tuple(RKNNLiteAdapter.CORE_MASKS),
                   help="RK3588 NPU cores (rknn artifacts): RKNNLite.NPU_CORE_<mask>")
    p.add_argument("--rknn-library", default="/usr/lib/librknnrt.so",
                   help="librknnrt on the device (rknn artifacts)")
    p.add_argument("--rknn-runtime-version", default=None,
                   help="librknnrt version the device must report (rknn artifacts)")
    p.add_argument("--watchdog-stdin", action="store_true",
                   help="exit when stdin reaches EOF or the parent changes (the harness is "
                        f"gone); checked at least every {WATCHDOG_PERIOD_S:g} s")
    p.add_argument("--pid-file", default=None,
                   help="write a lease naming this process here (removed at exit)")
    p.add_argument("--stop-stale", action="store_true",
                   help="end the agent the --pid-file lease names, if it still runs; "
                        "run no benchmark")
    args = p.parse_args(argv)
    if args.sampler:
        return args
    if args.stop_stale and not args.pid_file:
        raise _UsageError("--stop-stale needs --pid-file")
    if not args.stop_stale and not args.artifact_dir:
        raise _UsageError("the following arguments are required: --artifact-dir")
    return args


def main(argv: list[str] | None = None) -> int:
    ppid = os.getppid()  # first thing: the parent that started us, for the watchdog
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except _UsageError as exc:
        return fail("usage", str(exc), EXIT_USAGE)
    if args.sampler:
        return run_sampler(args.sample_path, args.sample_interval_ms / 1000.0)
    if args.stop_stale:
        result = stop_stale(args.pid_file)
        emit(result)
        return EXIT_OK if result["ok"] else EXIT_INTERNAL
    lease = Lease(args.pid_file) if args.pid_file else None
    try:
        if lease is not None or args.watchdog_stdin:  # supervised: a stop leaves no lease
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, _raise_stopped)
        if lease is not None:
            lease.write()
        if args.watchdog_stdin:
            HarnessWatchdog(harness_gone(lease), ppid).start()
        emit(run_benchmark(args))
        return EXIT_OK
    except AgentFailure as exc:
        return fail(exc.kind, str(exc), exc.exit_code)
    except _Stopped as exc:
        name = signal.Signals(exc.signum).name
        return fail("interrupted", f"stopped by {name}", 128 + exc.signum)
    except MemoryError:
        return fail("out_of_memory", "the device ran out of memory", EXIT_RUNTIME)
    except Exception as exc:  # noqa: BLE001 - the contract is one JSON record, whatever happens
        return fail("internal", f"{type(exc).__name__}: {exc}", EXIT_INTERNAL,
                    traceback.format_exc())
    finally:
        if lease is not None:
            lease.remove()


if __name__ == "__main__":
    sys.exit(main())
