"""A small real ONNX artifact made without torch, for engine tests.

Engine and fault tests need an artifact that loads in onnxruntime and has a
manifest and references, but not GEM's build time; this one is a genuine
embedding-mean-linear classifier written with onnx.helper.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def make_artifact(folder: Path, num_classes: int = 4, seed: int = 0, vocab: int = 260,
                  dim: int = 16) -> Path:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from gem.artifacts import write_manifest

    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((vocab, dim)).astype(np.float32)
    w = rng.standard_normal((dim, num_classes)).astype(np.float32)
    b = rng.standard_normal((num_classes,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "input_ids"], ["h"]),
         helper.make_node("ReduceMean", ["h", "axes"], ["pooled"], keepdims=0),
         helper.make_node("MatMul", ["pooled", "w"], ["mm"]),
         helper.make_node("Add", ["mm", "b"], ["logits"])],
        "tiny_classifier",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        [numpy_helper.from_array(emb, "emb"), numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / "model.onnx"
    onnx.save(model, str(model_path))
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inputs, outputs = [], []
    for n in (8, 16, 32):
        ids = rng.integers(4, 260, size=(1, n), dtype=np.int64)
        inputs.append({"input_ids": ids.tolist()})
        outputs.append({"logits": sess.run(["logits"], {"input_ids": ids})[0].tolist()})
    (folder / "reference.json").write_text(json.dumps({"inputs": inputs, "outputs": outputs}))
    data = model_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    files = [{"name": "model.onnx", "sha256": sha, "size_bytes": len(data)}]
    manifest = {
        "manifest_version": 1, "model": "fixture", "variant": "fp32", "format": "onnx",
        "files": files, "entrypoint": "model.onnx",
        "sha256": hashlib.sha256(f"model.onnx:{sha}".encode()).hexdigest(),
        "opset": 18,
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", num_classes]}],
        "checked_with": {"onnxruntime": ort.__version__},
        "reference": {"file": "reference.json", "atol": 1e-5},
        "params_total": int(emb.size + w.size + b.size), "params_active_per_token": dim,
        "num_classes": num_classes, "max_len_tokens": 512, "vocab_size": vocab, "pad_id": 0,
    }
    write_manifest(folder, manifest)  # the published schema holds for test artifacts too
    return folder


def perturb_reference(src: Path, dest: Path, how: str, delta: float = 0.01) -> dict:
    """A copy of artifact src whose reference outputs no longer match its model.

    The copy is self-consistent (the manifest still verifies), so only the
    device's parity check can notice. how="offset": +delta on the winning logit
    of reference row 1 (argmax kept, max |diff| = delta); how="flip": the winner
    of row 0 becomes the loser (argmax changed). Returns what parity must report.
    """
    import shutil

    shutil.copytree(src, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    ref_path = dest / manifest["reference"]["file"]
    ref = json.loads(ref_path.read_text())
    rows = [np.asarray(o["logits"], dtype=np.float64) for o in ref["outputs"]]
    n_rows = sum(int(np.prod(r.shape[:-1])) for r in rows)
    if how == "offset":
        r = rows[1]
        r[0, int(r[0].argmax())] += delta
        expect = {"max_abs_diff": delta, "top1_agreement": 1.0}
    elif how == "flip":
        r = rows[0]
        old = r[0].copy()
        r[0, int(old.argmax())] = float(old.min()) - 1.0
        expect = {"max_abs_diff": float(old.max() - old.min() + 1.0),
                  "top1_agreement": (n_rows - 1) / n_rows}
    else:
        raise ValueError(how)
    ref["outputs"] = [{"logits": r.tolist()} for r in rows]
    ref_path.write_text(json.dumps(ref))
    if "sha256" in manifest["reference"]:  # keep the manifest true to the new file
        from gem.artifacts import write_manifest
        from gem.files import sha256_file

        manifest["reference"]["sha256"] = sha256_file(ref_path)
        manifest["reference"]["size_bytes"] = ref_path.stat().st_size
        write_manifest(dest, manifest)
    return {**expect, "n_reference": len(rows), "passed": False}
