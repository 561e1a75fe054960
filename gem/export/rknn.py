"""Rockchip RKNN (.rknn for the RK3588 NPU): the host side of the conversion.

rknn-toolkit2 2.5.0 cannot live in the project's environment (numpy<=1.26.4,
onnx<=1.18, protobuf<=4.25.4), so it has its own, ``.venv-rknn``
(scripts/setup-rknn.sh), and the conversion runs there as a subprocess from an
argv list: ``[<venv python>, gem/export/rknn_convert.py, job.json]``. Nothing
of the toolkit is imported here; this module writes the job, runs it with a
timeout, keeps the toolkit's log and reads the result and the per-op NPU/CPU
table (the toolkit's "Network Layer Information Table") out of it.

Static shapes: an .rknn has fixed input shapes, so the artifact holds one
.rknn per sequence bucket (``model_seq_<L>.rknn``, each exported from a static
[1, L] ONNX graph), and the agent picks the smallest bucket that fits and pads
with ``<pad>``, as for LiteRT. Why not one file at the largest bucket: GEM's
DTR capacity and SCAR TopK depend on the length, so a 16-token request padded
to 128 pays 8x the work; why not the toolkit's ``dynamic_input``: its shapes
must all be listed anyway and the simulator and RKNNLite treat them as separate
graphs, so separate files cost little and each is checked on its own. Buckets
stop at RKNN_MAX_BUCKET to keep the conversion (about 10 s a bucket for tiny
here) bounded; longer requests are refused by the agent with the largest
bucket named.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gem.errors import BuildError

TARGET_PLATFORM = "rk3588"
RKNN_MAX_BUCKET = 128
CONVERTER = Path(__file__).with_name("rknn_convert.py")
_REPO = Path(__file__).resolve().parents[2]
SETUP_HINT = "create it with: bash scripts/setup-rknn.sh (or set GEM_HIL_RKNN_PYTHON)"
#: a row of the toolkit's "Network Layer Information Table": id, op, dtype, target
_OP_ROW = re.compile(r"^D RKNN: \[[^\]]*\]\s+(\d+)\s+(\S+)\s+(\S+)\s+(NPU|CPU)\s")
_BUCKET_MARK = re.compile(r"^=== gem-hil: bucket (\d+) ===")


def rknn_buckets(max_len: int) -> tuple[int, ...]:
    """LiteRT's buckets (powers of two from 16), up to min(max_len, RKNN_MAX_BUCKET)."""
    from gem.export.tflite import seq_buckets

    return seq_buckets(min(max_len, RKNN_MAX_BUCKET))


def rknn_file(bucket: int) -> str:
    return f"model_seq_{bucket}.rknn"


def converter_python() -> Path:
    """The converter environment's python: $GEM_HIL_RKNN_PYTHON, else
    <repo>/.venv-rknn/bin/python. A BuildError saying how to create it when absent."""
    env = os.environ.get("GEM_HIL_RKNN_PYTHON")
    path = Path(env) if env else _REPO / ".venv-rknn" / "bin" / "python"
    if not path.is_file():
        where = "GEM_HIL_RKNN_PYTHON" if env else "the rknn converter environment"
        raise BuildError(f"an rknn artifact needs rknn-toolkit2, but {where} {path} does not "
                         f"exist; {SETUP_HINT}")
    return path


def toolkit_version() -> str:
    """rknn-toolkit2's version in the converter environment, read from its
    dist-info without starting it (the cache key pays this on every lookup);
    "missing" when the environment or the toolkit is not there."""
    try:
        python = converter_python()
    except BuildError:
        return "missing"
    venv = python.parent.parent
    found = sorted(venv.glob("lib/python*/site-packages/rknn_toolkit2-*.dist-info"))
    if not found:
        return "missing"
    return found[-1].name.removeprefix("rknn_toolkit2-").removesuffix(".dist-info")


@dataclass
class Conversion:
    """What the converter did: per bucket its timings and op placement."""

    toolkit_version: str
    buckets: list[dict[str, Any]]
    log: Path


def parse_op_tables(log_text: str) -> dict[int, list[dict[str, str]]]:
    """The per-op table of each bucket's build: {bucket: [{"op", "dtype", "target"}]}.

    The toolkit prints it once per build (verbose); rows are matched by their
    id / op / dtype / target columns, so wrapped continuation lines are skipped.
    """
    tables: dict[int, list[dict[str, str]]] = {}
    current: int | None = None
    seen: set[str] = set()
    for line in log_text.splitlines():
        mark = _BUCKET_MARK.match(line)
        if mark:
            current = int(mark.group(1))
            tables[current], seen = [], set()
            continue
        row = _OP_ROW.match(line)
        if row and current is not None and row.group(1) not in seen:
            seen.add(row.group(1))
            tables[current].append({"op": row.group(2), "dtype": row.group(3),
                                    "target": row.group(4)})
    return tables


def placement_summary(ops: list[dict[str, str]]) -> dict[str, Any]:
    """Ops on the NPU vs the CPU in one bucket's graph, and which ran on the CPU."""
    cpu = [o["op"] for o in ops if o["target"] == "CPU" and o["op"] != "InputOperator"
           and o["op"] != "OutputOperator"]
    counted = [o for o in ops if o["op"] not in ("InputOperator", "OutputOperator")]
    by_target: dict[str, dict[str, int]] = {}
    by_dtype: dict[str, int] = {}
    for o in counted:
        by_dtype[o["dtype"]] = by_dtype.get(o["dtype"], 0) + 1
        by_target.setdefault(o["target"], {}).setdefault(o["op"], 0)
        by_target[o["target"]][o["op"]] += 1
    return {"ops_total": len(counted), "ops_npu": len(counted) - len(cpu),
            "ops_cpu": len(cpu), "cpu_ops": cpu, "cpu_op_names": sorted(set(cpu)),
            "ops_by_target": by_target, "ops_by_dtype": by_dtype}


def run_converter(job: dict[str, Any], work: Path, timeout_s: float = 1800.0) -> Conversion:
    """Run rknn_convert.py on ``job`` in the converter environment; the toolkit's
    log is kept in work/rknn-toolkit.log. BuildError on any failure, with the
    log's last lines."""
    python = converter_python()
    work.mkdir(parents=True, exist_ok=True)
    job = {**job, "result": str(work / "rknn-result.json")}
    job_file, log = work / "rknn-job.json", work / "rknn-toolkit.log"
    job_file.write_text(json.dumps(job, indent=1), encoding="utf-8")
    # -I: the script's folder (gem/export, which holds this rknn.py) must not
    # shadow the toolkit's package ``rknn``, nor may the caller's PYTHON* env leak in
    argv = [str(python), "-I", str(CONVERTER), str(job_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        with log.open("w", encoding="utf-8") as out:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.
                                  DEVNULL, cwd=work, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise BuildError(f"rknn-toolkit2 did not finish within {timeout_s:.0f} s "
                         f"(log: {log})") from None
    text = log.read_text(encoding="utf-8", errors="replace")
    tail = "\n".join(text.splitlines()[-15:])
    if proc.returncode != 0 or not Path(job["result"]).is_file():
        raise BuildError(f"the rknn converter ({' '.join(argv)}) exited with "
                         f"{proc.returncode}; last lines of {log}:\n{tail}")
    result = json.loads(Path(job["result"]).read_text(encoding="utf-8"))
    tables = parse_op_tables(text)
    for got in result["buckets"]:
        for key in ("error", "simulator_error"):
            if key in got:
                raise BuildError(f"rknn-toolkit2 {result['toolkit_version']}, bucket "
                                 f"{got['seq_len_tokens']}: {got[key]}; last lines of {log}:\n"
                                 f"{tail}")
        ops = tables.get(int(got["seq_len_tokens"]), [])
        if not ops:
            raise BuildError(f"bucket {got['seq_len_tokens']}: no op table in the toolkit's "
                             f"log {log} (did its verbose output change?)")
        got["placement"] = placement_summary(ops)
    return Conversion(result["toolkit_version"], result["buckets"], log)
