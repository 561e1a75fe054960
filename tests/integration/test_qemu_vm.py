"""The emulated Pi 4 for real: build (or cached) image, boot, SSH into the VM.

Needs qemu-system-aarch64, and either a cached image or what building one
takes (debootstrap, dpkg-deb, mke2fs, root). Otherwise every test here is
skipped with the reason printed. Each VM runs with its own state folder under
tmp, so a developer's `gem-hil qemu up` VM is neither reused nor stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.device import open_vm_link as open_vm_transport
from harness.errors import HostKeyError
from harness.profiles import load_profile
from harness.qemu.image import ImagePaths, build_image, cached_image, missing_build_tools
from harness.qemu.initramfs import CpioWriter
from harness.qemu.transport import VmTransport, acquire_vm
from harness.qemu.vm import QemuBootError, VmDiedError, boot_vm, find_vm
from harness.transports.ssh import SshTransport

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.qemu, pytest.mark.slow]


def unavailable_reason() -> str | None:
    if shutil.which("qemu-system-aarch64") is None:
        return "qemu-system-aarch64 is not installed (apt-get install qemu-system-arm)"
    if cached_image() is None:
        missing = missing_build_tools()
        if missing:
            return "no cached image and cannot build one: missing " + ", ".join(missing)
        if os.geteuid() != 0:
            return "no cached image, and building one needs root (sudo gem-hil qemu build pi4)"
    return None


@pytest.fixture(scope="session")
def qemu_image() -> ImagePaths:
    reason = unavailable_reason()
    if reason:
        print(f"\nqemu tests skipped: {reason}", file=sys.stderr)
        pytest.skip(reason)
    t0 = time.monotonic()
    img = build_image("pi4")
    print(f"\nqemu image {img.dir.name}: ready in {time.monotonic() - t0:.1f} s "
          f"(build timings: {img.manifest['timings_s']})", file=sys.stderr)
    return img


@pytest.fixture(scope="module")
def vm(qemu_image: ImagePaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmTransport]:
    state = tmp_path_factory.mktemp("qemu-state")
    t0 = time.monotonic()
    t = open_vm_transport(load_profile("qemu-pi4"), state_root=state)
    print(f"\nqemu-pi4 booted to SSH in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    try:
        yield t
    finally:
        t0 = time.monotonic()
        t.close()
        print(f"\nqemu-pi4 stopped in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    assert not t.vm.alive(), "close() must stop a VM it booted"
    assert find_vm("qemu-pi4", state) is None


def sh(t: VmTransport, script: str, timeout_s: float = 120) -> str:
    res = t.run(["sh", "-c", script], timeout_s=timeout_s)
    assert res.ok, f"rc={res.rc} stderr={res.stderr}"
    return res.stdout


def make_model(path: Path) -> None:
    """A small MLP (MatMul, Add, Relu, Softmax) with fixed random weights."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["y"], axis=-1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])], [w1, b1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


#: runs the model on a fixed input; prints the runtime version and the output
RUN_MODEL = """
import json, sys
import numpy as np, onnxruntime as ort
x = (np.arange(24, dtype=np.float32).reshape(3, 8) - 12.0) / 7.0
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(json.dumps({"version": ort.__version__, "y": s.run(None, {"x": x})[0].tolist()}))
"""


def wheel_pin(name: str) -> str:
    text = (REPO / "firmware/qemu/wheels.txt").read_text()
    return re.search(rf"^{name}==(\S+)", text, re.M).group(1)  # type: ignore[union-attr]


def test_guest_is_an_aarch64_cortex_a72_with_4_cpus(vm: VmTransport) -> None:
    assert sh(vm, "uname -m").strip() == "aarch64"
    assert sh(vm, "nproc").strip() == "4"
    parts = set(re.findall(r"CPU part\s*:\s*(\S+)", sh(vm, "cat /proc/cpuinfo")))
    assert parts == {"0xd08"}, f"expected Cortex-A72 (0xd08) cores, got {parts}"
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", sh(vm, "cat /proc/meminfo")).group(1))
    assert 1500_000 < mem_kb <= 2048 * 1024  # [qemu] memory_mb = 2048


def test_guest_onnxruntime_runs_a_model_like_the_host(vm: VmTransport, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = tmp_path / "tiny.onnx"
    make_model(model)
    script = tmp_path / "run_model.py"
    script.write_text(RUN_MODEL)
    vm.push(model, "gem-hil-test/tiny.onnx")
    vm.push(script, "gem-hil-test/run_model.py")
    res = vm.run(["python3", "gem-hil-test/run_model.py", "gem-hil-test/tiny.onnx"],
                 timeout_s=300)
    assert res.ok, res.stderr
    guest = json.loads(res.stdout)
    assert guest["version"] == wheel_pin("onnxruntime")
    host = subprocess.run([sys.executable, str(script), str(model)], capture_output=True,
                          text=True, check=True, timeout=120)
    y_host = np.array(json.loads(host.stdout)["y"])
    y_guest = np.array(guest["y"])
    assert y_guest.shape == (3, 4)
    np.testing.assert_allclose(y_guest, y_host, rtol=1e-5, atol=1e-6)
    assert ort.__version__  # host runtime present (the reference side)


def test_host_key_is_verified_never_trusted_blindly(vm: VmTransport, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong.write_text(f"[127.0.0.1]:{vm.vm.port} {other.with_suffix('.pub').read_text()}")
    for known in (wrong, tmp_path / "empty_known_hosts"):
        t = SshTransport("qemu-pi4", host="127.0.0.1", port=vm.vm.port, user="root",
                         key_file=vm.vm.client_key, known_hosts=known)
        with pytest.raises(HostKeyError):
            t.run(["true"])
        t.close()
    assert oct(vm.vm.client_key.stat().st_mode & 0o777) == "0o600"


def test_second_open_reuses_the_vm_and_does_not_stop_it(vm: VmTransport) -> None:
    again = open_vm_transport(load_profile("qemu-pi4"), state_root=vm.vm.state_dir.parent)
    try:
        assert again.vm.pid == vm.vm.pid
        assert again.run(["true"]).ok
    finally:
        again.close()
    assert vm.vm.alive() and vm.run(["true"]).ok


def test_kernel_panic_fails_fast_with_the_serial_log(qemu_image: ImagePaths,
                                                     tmp_path: Path) -> None:
    """An initramfs without /init: the kernel cannot mount a root and panics."""
    broken = tmp_path / "pi4-broken"
    broken.mkdir()
    for name in ("vmlinuz", "rootfs.ext4", "id_ed25519", "ssh_host_ed25519_key.pub", "root"):
        (broken / name).symlink_to(qemu_image.dir / name)
    import gzip

    (broken / "initrd.img").write_bytes(gzip.compress(CpioWriter().finish()))
    img = ImagePaths.in_dir(broken, "broken")
    t0 = time.monotonic()
    with pytest.raises(QemuBootError) as exc:
        boot_vm(load_profile("qemu-pi4"), img, state_root=tmp_path / "run")
    took = time.monotonic() - t0
    msg = str(exc.value)
    assert "panicked" in msg or "QEMU exited" in msg
    assert "Kernel panic" in msg and "serial log tail" in msg
    assert took < 120, f"a panic must be reported at once, not at the timeout ({took:.0f} s)"
    assert find_vm("qemu-pi4", tmp_path / "run") is None


def test_stale_vm_is_replaced_and_a_dying_vm_is_reported(qemu_image: ImagePaths,
                                                        tmp_path: Path) -> None:
    """A VM left by a crashed session is stopped (by its pid file) before a new
    boot; then the new VM is killed mid-command and the transport says so."""
    profile = load_profile("qemu-pi4")
    state = tmp_path / "run"
    old, started = acquire_vm(profile, state_root=state)
    assert started
    record = state / "qemu-pi4" / "vm.json"
    info = json.loads(record.read_text())
    dead = subprocess.Popen(["true"])
    dead.wait()
    info["owner_pid"] = dead.pid  # as if the session that booted it had crashed
    record.write_text(json.dumps(info))

    t = open_vm_transport(profile, state_root=state)
    try:
        assert t.vm.pid != old.pid
        assert old.proc is not None and old.proc.wait(timeout=30) is not None
        assert t.run(["true"]).ok

        errors: list[BaseException] = []

        def long_command() -> None:
            try:
                t.run(["sleep", "120"], timeout_s=200)
            except BaseException as exc:  # noqa: BLE001 - inspected below
                errors.append(exc)

        th = threading.Thread(target=long_command)
        th.start()
        time.sleep(2)
        os.kill(t.vm.pid, signal.SIGKILL)  # the VM dies mid-run
        th.join(timeout=60)
        assert not th.is_alive(), "a dead VM must not leave the command hanging"
        assert len(errors) == 1 and isinstance(errors[0], VmDiedError), errors
        assert "is gone while running" in str(errors[0])
        with pytest.raises(VmDiedError):
            t.run(["true"])
    finally:
        t.close()
    assert find_vm("qemu-pi4", state) is None


def test_device_suite_on_the_vm_records_an_emulated_a72(qemu_image: ImagePaths,
                                                         tmp_path: Path) -> None:
    """`pytest --device=qemu-pi4` end to end: the record says aarch64, 4 CPUs,
    the guest's onnxruntime, parity passed, and latency only recorded."""
    from harness.record import schema_errors

    env = dict(os.environ, GEM_HIL_QEMU_STATE=str(tmp_path / "run"))
    argv = [sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider",
            "--device=qemu-pi4", "--report-dir", str(tmp_path / "reports")]
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1800,
                         stdin=subprocess.DEVNULL, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "reports").rglob("*.json")]
    assert records, "the suite wrote no result record"
    for rec in records:
        assert schema_errors(rec) == []
        assert rec["device"]["emulated"] is True and rec["device"]["transport"] == "qemu"
        env_ = rec["environment"]
        assert env_["machine"] == "aarch64" and env_["cpu_count"] == 4
        assert env_["cpu_model"] == "Cortex-A72" and env_["host"]["cpu_part"] == "0xd08"
        assert env_["runtime_version"] == wheel_pin("onnxruntime")
        assert rec["parity"]["passed"]
        timing = [v for v in rec["verdicts"] if v["metric"].startswith("latency")]
        assert timing and all(v["verdict"] == "recorded" for v in timing)
    assert find_vm("qemu-pi4", tmp_path / "run") is None, "the suite left its VM running"
