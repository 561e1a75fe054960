"""qemu-user-pi4: the Pi 4 image's arm64 userland on this host via qemu-user.

Needs qemu-aarch64-static (apt-get install qemu-user-static) and the image
(cached, or buildable as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.qemu.image import ImagePaths, build_image, cached_image, missing_build_tools
from tests.support.profiles import with_lenient_validity

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "firmware/qemu/bin/qemu-user-python"
pytestmark = [pytest.mark.qemu, pytest.mark.slow]

RUN_MODEL = """
import json, platform, sys
import numpy as np, onnxruntime as ort
x = (np.arange(24, dtype=np.float32).reshape(3, 8) - 12.0) / 7.0
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(json.dumps({"machine": platform.machine(), "numpy": np.__file__,
                  "y": s.run(None, {"x": x})[0].tolist()}))
"""


@pytest.fixture(scope="module")
def image() -> ImagePaths:
    reason = None
    if shutil.which("qemu-aarch64-static") is None:
        reason = "qemu-aarch64-static is not installed (apt-get install qemu-user-static)"
    elif cached_image() is None and (missing_build_tools() or os.geteuid() != 0):
        reason = ("no cached image and cannot build one here: "
                  + (", ".join(missing_build_tools()) or "building needs root"))
    if reason:
        print(f"\nqemu-user tests skipped: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return build_image("pi4")


def make_model(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["l"]),
         helper.make_node("Softmax", ["l"], ["y"], axis=-1)], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_wrapper_runs_the_guest_runtime_like_the_host(image: ImagePaths, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = tmp_path / "m.onnx"
    make_model(model)
    script = tmp_path / "run.py"
    script.write_text(RUN_MODEL)
    # a host package on PYTHONPATH must not shadow the guest's numpy
    shadow = tmp_path / "shadow" / "numpy"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('host numpy leaked in')\n")
    env = dict(os.environ, PYTHONPATH=str(shadow.parent),
               GEM_HIL_QEMU_USER_ROOT=str(image.root_dir))
    res = subprocess.run([str(WRAPPER), str(script), str(model)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    guest = json.loads(res.stdout)
    assert guest["machine"] == "aarch64"
    assert guest["numpy"].startswith(str(image.root_dir))
    host = subprocess.run([sys.executable, str(script), str(model)], capture_output=True,
                          text=True, check=True, timeout=120)
    np.testing.assert_allclose(np.array(guest["y"]), np.array(json.loads(host.stdout)["y"]),
                               rtol=1e-5, atol=1e-6)


def test_wrapper_without_image_says_how_to_build(tmp_path: Path) -> None:
    env = dict(os.environ, GEM_HIL_QEMU_USER_ROOT=str(tmp_path / "none"))
    res = subprocess.run([str(WRAPPER), "-c", "pass"], capture_output=True, text=True,
                         timeout=30, env=env)
    assert res.returncode == 127
    assert "gem-hil qemu build pi4" in res.stderr


@pytest.mark.parametrize("model", ["tiny", "edge"])
def test_device_suite_under_qemu_user(image: ImagePaths, tmp_path: Path, model: str) -> None:
    """The GEM device suite with the qemu-user-pi4 profile (wrapper path made
    absolute here, as the profile is copied). `edge` guards int8 parity across
    ISAs: the x86-built reference vs aarch64 onnxruntime kernels differ by
    ~1.5e-3 there, which once broke a 1e-3 tolerance."""
    from harness.record import schema_errors

    targets = tmp_path / "targets"
    targets.mkdir()
    text = (REPO / "targets/qemu-user-pi4.toml").read_text()
    text = text.replace('"../firmware/qemu/bin/qemu-user-python"', json.dumps(str(WRAPPER)))
    # emulator noise must not make the functional run invalid, nor a loaded host leave
    # the edge model (~4 s per inference under TCG then) short of min_count
    text = text.replace("max_duration_s = 20.0", "max_duration_s = 240.0")
    (targets / "qemu-user-pi4.toml").write_text(with_lenient_validity(text))
    env = dict(os.environ, GEM_HIL_QEMU_USER_ROOT=str(image.root_dir),
               GEM_HIL_LOCAL_HOME=str(tmp_path / "home"))
    argv = [sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
            "--device=qemu-user-pi4", f"--targets-dir={targets}", f"--gem-model={model}",
            "--report-dir", str(tmp_path / "reports")]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1200,
                         stdin=subprocess.DEVNULL, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "reports").rglob("*.json")]
    assert records
    for rec in records:
        assert schema_errors(rec) == []
        assert rec["device"]["emulated"] is True
        assert rec["environment"]["machine"] == "aarch64"
        assert rec["parity"]["passed"]
        assert rec["artifact"]["model"] == model
