"""A placeholder Core ML artifact folder, for the iOS platform's tests.

It has the layout gem/export/coreml.py writes (docs/gem.md "Core ML (coreml)
artifacts": manifest.json, reference.json, model.mlpackage.zip holding
model.mlpackage/), so the harness side (push, unpack, compile, copy, launch,
collect) runs on it, but the package holds no real ML program: nothing on
Linux can run one, and the fake xcrun (tests/support/fake_xcrun.py) only
checks that the package is there. It needs no coremltools and no torch.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

#: what a real .mlpackage's Manifest.json looks like (coremltools 9 writes these keys)
_PACKAGE_MANIFEST = {
    "fileFormatVersion": "1.0.0",
    "itemInfoEntries": {
        "7C1E0D8A-2B4F-4E6A-9C3D-5F0A1B2C3D4E": {
            "author": "com.apple.CoreML", "description": "CoreML Model Weights",
            "name": "weights", "path": "com.apple.CoreML/weights"},
        "A3B9F1C2-6D7E-4F80-9A1B-2C3D4E5F6A7B": {
            "author": "com.apple.CoreML", "description": "CoreML Model Specification",
            "name": "model.mlmodel", "path": "com.apple.CoreML/model.mlmodel"},
    },
    "rootModelIdentifier": "A3B9F1C2-6D7E-4F80-9A1B-2C3D4E5F6A7B",
}
#: zip entry time: fixed, so the zip (and the artifact's hash) is the same every time
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _zip_package(path: Path, package: str = "model.mlpackage") -> None:
    entries = {
        f"{package}/Manifest.json": json.dumps(_PACKAGE_MANIFEST, indent=2).encode(),
        f"{package}/Data/com.apple.CoreML/model.mlmodel":
            b"gem-hil placeholder: not an ML program (tests only)\n",
        f"{package}/Data/com.apple.CoreML/weights/weight.bin": bytes(range(256)) * 16,
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            z.writestr(info, entries[name])


def make_placeholder_artifact(folder: Path, num_classes: int = 4) -> Path:
    """Write the placeholder artifact into folder; returns folder."""
    from gem.artifacts import describe_files, write_manifest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _zip_package(folder / "model.mlpackage.zip")
    ids = [[1, 72, 101, 108, 108, 111], [1, 87, 111, 114, 108, 100, 33, 10]]
    logits = [[[0.25, -1.5, 0.75, 2.0][:num_classes]], [[1.0, 0.5, -0.25, -2.0][:num_classes]]]
    reference = {"inputs": [{"input_ids": [x]} for x in ids],
                 "outputs": [{"logits": out} for out in logits]}
    (folder / "reference.json").write_text(json.dumps(reference))
    files = describe_files(folder, ["model.mlpackage.zip"])
    manifest = {
        "manifest_version": 1, "model": "fixture", "variant": "int8", "format": "coreml",
        "files": files, "entrypoint": "model.mlpackage.zip",
        "sha256": hashlib.sha256(f"model.mlpackage.zip:{files[0]['sha256']}".encode()
                                 ).hexdigest(),
        "inputs": [{"name": "input_ids", "dtype": "int32", "shape": [1, "seq"]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, num_classes]}],
        "seq_buckets": [16, 32, 64, 128],
        "reference": {"file": "reference.json", "atol": 0.05, "n": len(ids)},
        "num_classes": num_classes, "max_len_tokens": 128, "vocab_size": 260, "pad_id": 0,
        "bos_id": 1,
        "coreml": {"package": "model.mlpackage", "minimum_deployment_target": "iOS17",
                   "placeholder": "tests/support/coreml_artifact.py: no real ML program"},
    }
    write_manifest(folder, manifest)  # the published manifest schema holds for it too
    return folder
