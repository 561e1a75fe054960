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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    }


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and exits 2 on bad input; the contract wants JSON."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact-dir", required=True)
    p.add_argument("--seq-len-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup-count", type=int, default=5)
    p.add_argument("--min-count", type=int, default=50)
    p.add_argument("--min-duration-s", type=float, default=1.0)
    p.add_argument("--max-count", type=int, default=2000)
    p.add_argument("--max-duration-s", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-path", action="append", default=[])
    p.add_argument("--sample-interval-ms", type=float, default=50.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except _UsageError as exc:
        return fail("usage", str(exc), EXIT_USAGE)
    try:
        emit(run_benchmark(args))
        return EXIT_OK
    except AgentFailure as exc:
        return fail(exc.kind, str(exc), exc.exit_code)
    except MemoryError:
        return fail("out_of_memory", "the device ran out of memory", EXIT_RUNTIME)
    except Exception as exc:  # noqa: BLE001 - the contract is one JSON record, whatever happens
        return fail("internal", f"{type(exc).__name__}: {exc}", EXIT_INTERNAL,
                    traceback.format_exc())


if __name__ == "__main__":
    sys.exit(main())
