"""ONNX -> .rknn conversion with rknn-toolkit2, run as a script in .venv-rknn.

This file is NOT imported by the project: gem/export/rknn.py runs it with the
converter environment's python (``.venv-rknn/bin/python rknn_convert.py
job.json``) because rknn-toolkit2 2.5.0 needs numpy<=1.26.4 / onnx<=1.18 /
protobuf<=4.25.4, which the project's environment cannot have. So it imports
only the standard library, numpy and the toolkit, and talks through files: a
job JSON in, a result JSON out (the toolkit's own log goes to stdout, which the
caller keeps and parses for the op placement table).

Job keys: ``target`` (rk3588), ``quantize`` (bool), ``buckets`` (a list of
{"seq_len_tokens", "onnx", "rknn", "dataset", "inputs", "outputs"}) where
``dataset`` is the toolkit's calibration list (one .npy per line; int8 only),
``inputs`` a .npy of [N, L] int64 rows to run in the simulator afterwards and
``outputs`` the .npy the simulator's [N, C] float32 outputs are written to.
"""

from __future__ import annotations

import json
import os
import sys
import time


def toolkit_version() -> str:
    import rknn

    with open(os.path.join(rknn.__path__[0], "VERSION"), encoding="utf-8") as f:
        return f.read().strip()


def convert_bucket(job: dict, bucket: dict) -> dict:
    import numpy as np
    from rknn.api import RKNN

    out: dict = {"seq_len_tokens": bucket["seq_len_tokens"]}
    rk = RKNN(verbose=True)  # verbose: the build prints the per-op NPU/CPU table
    try:
        rk.config(target_platform=job["target"], optimization_level=3)
        t0 = time.perf_counter()
        steps = [
            ("load_onnx", lambda: rk.load_onnx(model=bucket["onnx"])),
            ("build", lambda: rk.build(do_quantization=job["quantize"],
                                       dataset=bucket.get("dataset"))),
            ("export_rknn", lambda: rk.export_rknn(bucket["rknn"])),
        ]
        for name, step in steps:
            ret = step()
            if ret != 0:
                out["error"] = f"rknn-toolkit2 {name} returned {ret}"
                return out
        out["convert_seconds"] = round(time.perf_counter() - t0, 3)
        print(f"=== gem-hil: converted bucket {bucket['seq_len_tokens']} ===", flush=True)
        if bucket.get("inputs"):
            ret = rk.init_runtime()  # no target: the toolkit's x86 simulator
            if ret != 0:
                out["simulator_error"] = f"init_runtime() with no target returned {ret}"
                return out
            rows = np.load(bucket["inputs"])
            t1 = time.perf_counter()
            ys = []
            for row in rows:
                y = rk.inference(inputs=[row[None, :].astype(np.int64)])
                if not y:
                    out["simulator_error"] = "inference() returned no output"
                    return out
                ys.append(np.asarray(y[0], dtype=np.float32).reshape(-1))
            np.save(bucket["outputs"], np.stack(ys))
            out["simulator_seconds"] = round(time.perf_counter() - t1, 3)
            out["simulator_rows"] = int(rows.shape[0])
    finally:
        rk.release()
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: rknn_convert.py JOB.json (writes JOB.json's 'result' path)", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        job = json.load(f)
    result: dict = {"toolkit_version": toolkit_version(), "buckets": []}
    for bucket in job["buckets"]:
        print(f"=== gem-hil: bucket {bucket['seq_len_tokens']} ===", flush=True)
        got = convert_bucket(job, bucket)
        result["buckets"].append(got)
        if "error" in got or "simulator_error" in got:
            break
    with open(job["result"], "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
