"""A small real LiteRT artifact, for agent and engine tests.

A genuine embedding-masked-mean-linear classifier converted by litert-torch
with one signature per bucket (16, 32), like GEM's tflite artifacts but
without GEM's training: seconds instead of minutes. Its references come from
ai-edge-litert, so parity on the host must be exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BUCKETS = (16, 32)
PAD_ID = 256


def make_tflite_artifact(folder: Path, num_classes: int = 4, seed: int = 0) -> Path:
    import litert_torch
    import torch

    from gem.artifacts import describe_files, files_digest, write_manifest
    from gem.export.tflite import (
        INPUT_NAME,
        OUTPUT_NAME,
        make_interpreter,
        op_inventory,
        quiet,
        run_tflite,
        signature_name,
    )

    torch.manual_seed(seed)

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(PAD_ID + 4, 16)
            self.head = torch.nn.Linear(16, num_classes)

        def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
            mask = (input_ids != PAD_ID).to(torch.float32).unsqueeze(-1)
            pooled = (self.emb(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return {OUTPUT_NAME: self.head(pooled)}

    net = Classifier().eval()
    conv = litert_torch.Converter()
    for b in BUCKETS:
        conv.signature(signature_name(b), net,
                       sample_kwargs={INPUT_NAME: torch.ones(1, b, dtype=torch.long)})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.tflite"
    with quiet(), torch.no_grad():
        conv.convert().export(str(path))
    interp = make_interpreter(path)
    rng = np.random.default_rng(seed)
    inputs, outputs = [], []
    for b in BUCKETS:
        ids = rng.integers(0, 256, size=(1, b)).astype(np.int32)
        inputs.append({INPUT_NAME: ids.tolist()})
        outputs.append({OUTPUT_NAME: run_tflite(interp, ids).tolist()})
    (folder / "reference.json").write_text(json.dumps({"inputs": inputs, "outputs": outputs}))
    files = describe_files(folder, ["model.tflite"])
    (ref,) = describe_files(folder, ["reference.json"])
    inventory = op_inventory(path)
    write_manifest(folder, {
        "manifest_version": 1, "model": "fixture", "variant": "fp32", "format": "tflite",
        "files": files, "entrypoint": "model.tflite", "sha256": files_digest(files),
        "inputs": [{"name": INPUT_NAME, "dtype": "int32", "shape": [1, "seq"]}],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": [1, num_classes]}],
        "seq_buckets": list(BUCKETS),
        "signatures": [{"name": signature_name(b), "seq_len_tokens": b,
                        "ops_total": inventory[signature_name(b)]["ops_total"]}
                       for b in BUCKETS],
        "reference": {"file": "reference.json", "sha256": ref["sha256"],
                      "size_bytes": ref["size_bytes"], "atol": 1e-5, "n": len(BUCKETS)},
        "vocab_size": PAD_ID + 4, "max_len_tokens": BUCKETS[-1], "pad_id": PAD_ID,
        "num_classes": num_classes,
    })
    return folder
