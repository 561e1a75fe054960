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


class SysfsSampler(threading.Thread):
    """Reads given files every interval during the timed window.

    Raw text is kept with its timestamp; turning it into watts or degrees is the
    harness's job, where the parsers are tested.
    """

    def __init__(self, paths: list[str], interval_s: float) -> None:
        super().__init__(daemon=True)
        self.paths = paths
        self.interval_s = interval_s
        self.samples: dict[str, list] = {p: [] for p in paths}
        self._stop_event = threading.Event()

    def sample_once(self) -> None:
        now = time.monotonic_ns()
        for p in self.paths:
            text = read_text(p)
            self.samples[p].append([now, text.strip() if text is not None else None])

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample_once()
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.sample_once()


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
    """A deterministic byte-token sequence: same input on every device."""
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


class OnnxRuntimeAdapter:
    """The only runtime this agent speaks today; others plug in beside it."""

    name = "onnxruntime"

    def __init__(self, model_path: str, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise AgentFailure("runtime_missing", f"onnxruntime is not importable on the device "
                               f"({exc}); install it: pip install onnxruntime", EXIT_RUNTIME) \
                from None
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


def check_parity(np, runtime, manifest: dict, artifact_dir: str) -> dict:
    ref = manifest["reference"]
    text = read_text(os.path.join(artifact_dir, ref["file"]))
    if text is None:
        raise AgentFailure("artifact", f"reference file {ref['file']} missing", EXIT_ARTIFACT)
    data = json.loads(text)
    atol = float(ref.get("atol", 1e-4))
    max_diff = 0.0
    agree = total = 0
    for inputs, outputs in zip(data["inputs"], data["outputs"], strict=True):
        feeds = {}
        for spec in manifest["inputs"]:
            feeds[spec["name"]] = np.asarray(inputs[spec["name"]], dtype=spec.get("dtype",
                                                                                   "int64"))
        got = runtime.run(feeds)
        for name, out in zip(runtime.output_names, got, strict=True):
            want = np.asarray(outputs[name], dtype=np.float32)
            out = np.asarray(out, dtype=np.float32)
            if out.shape != want.shape:
                raise AgentFailure("parity", f"output {name} shape {out.shape} != reference "
                                   f"{want.shape}", EXIT_ARTIFACT)
            max_diff = max(max_diff, float(np.max(np.abs(out - want))))
            agree += int(np.sum(out.argmax(axis=-1) == want.argmax(axis=-1)))
            total += int(np.prod(want.shape[:-1]))
    top1 = agree / total if total else 0.0
    return {"max_abs_diff": max_diff, "top1_agreement": top1, "atol": atol,
            "n_reference": len(data["inputs"]), "passed": max_diff <= atol and top1 == 1.0}


def run_benchmark(args: argparse.Namespace) -> dict:
    import numpy as np

    manifest = load_manifest(args.artifact_dir)
    if manifest["format"] != "onnx":
        raise AgentFailure("usage", f"format {manifest['format']!r} has no runtime adapter in "
                           "this agent (supported: onnx)", EXIT_USAGE)
    model_path = os.path.join(args.artifact_dir, manifest["entrypoint"])
    feeds = bench_input(np, manifest, args.seq_len_tokens, args.seed)

    t0 = time.perf_counter_ns()
    runtime = OnnxRuntimeAdapter(model_path, args.threads)
    t1 = time.perf_counter_ns()
    runtime.run(feeds)
    t2 = time.perf_counter_ns()
    cold = {"session_create_ms": (t1 - t0) / 1e6, "first_inference_ms": (t2 - t1) / 1e6}

    parity = check_parity(np, runtime, manifest, args.artifact_dir)

    warm = []
    for _ in range(args.warmup_count):
        a = time.perf_counter_ns()
        runtime.run(feeds)
        warm.append(time.perf_counter_ns() - a)

    sampler = SysfsSampler(args.sample_path, args.sample_interval_ms / 1000.0) \
        if args.sample_path else None
    samples: list[int] = []
    min_dur_ns = int(args.min_duration_s * 1e9)
    max_dur_ns = int(args.max_duration_s * 1e9)
    if sampler:
        sampler.sample_once()
        sampler.start()
    w0 = time.monotonic_ns()
    start = time.perf_counter_ns()
    stopped_by = "min_reached"
    run_fn = runtime.run
    perf = time.perf_counter_ns
    while True:
        a = perf()
        run_fn(feeds)
        b = perf()
        samples.append(b - a)
        elapsed = b - start
        if len(samples) >= args.min_count and elapsed >= min_dur_ns:
            break
        if len(samples) >= args.max_count:
            stopped_by = "max_count"
            break
        if elapsed >= max_dur_ns:
            stopped_by = "max_duration"
            break
    duration_ns = perf() - start
    w1 = time.monotonic_ns()
    if sampler:
        sampler.stop()
    generation = run_generation(np, args, manifest)  # after the forward window; own timing
    return {
        "ok": True,
        "agent_version": AGENT_VERSION,
        "runtime": {"name": runtime.name, "version": runtime.version},
        "latency_samples_ns": samples,
        "warmup_samples_ns": warm,
        "cold_start": cold,
        "peak_rss_kb": peak_rss_kb(),
        "parity": parity,
        "run": {"count": len(samples), "duration_s": duration_ns / 1e9,
                "min_count_met": len(samples) >= args.min_count,
                "min_duration_met": duration_ns >= min_dur_ns, "stopped_by": stopped_by},
        "window_monotonic_ns": [w0, w1],
        "host": host_facts(),
        "sysfs_samples": sampler.samples if sampler else {},
        "generation": generation,
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
    _greedy(np, pre, dec, prompt, m)  # warm-up
    ttft, steps, per_s = [], [], []
    cache_bytes = 0
    for _ in range(args.gen_runs):
        _, t, s, cache_bytes = _greedy(np, pre, dec, prompt, m)
        ttft.append(t)
        steps.extend(s)
        per_s.append(len(s) / (sum(s) / 1e9) if s else 0.0)
    return {
        "tokens": gen.get("tokens", "tokens"),
        "parity": parity,
        "prefill": {"run": f"pp{n}", "prompt_tokens": n, "ttft_samples_ns": ttft},
        "decode": {"run": f"tg{m}", "prompt_tokens": n, "new_tokens": m,
                   "token_samples_ns": steps, "tokens_per_s_samples": per_s},
        "kv_cache_bytes": cache_bytes,
        "runs": args.gen_runs,
    }


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
    p.add_argument("--gen-runs", type=int, default=5,
                   help="timed generation runs (0: no generation benchmark)")
    p.add_argument("--sample-path", action="append", default=[])
    p.add_argument("--sample-interval-ms", type=float, default=50.0)
    p.add_argument("--watchdog-stdin", action="store_true",
                   help="exit when stdin reaches EOF or the parent changes (the harness is "
                        f"gone); checked at least every {WATCHDOG_PERIOD_S:g} s")
    p.add_argument("--pid-file", default=None,
                   help="write a lease naming this process here (removed at exit)")
    p.add_argument("--stop-stale", action="store_true",
                   help="end the agent the --pid-file lease names, if it still runs; "
                        "run no benchmark")
    args = p.parse_args(argv)
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
