"""open_device: one assembler for a device; transports know nothing of VMs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from harness.bench import DeviceSession
from harness.device import Device, open_device
from harness.errors import ConfigError
from harness.platforms.android import AndroidPlatform
from harness.platforms.linux import LinuxPlatform
from harness.profiles import load_profile
from harness.registry import Plugin, registry
from harness.transports import open_transport
from harness.transports.ssh import SshTransport
from tests.support.sshd_board import write_ed25519_key

REPO = Path(__file__).resolve().parents[2]
TARGETS = REPO / "targets"


def test_local_device_is_assembled_and_opens_its_link_on_first_use(local_home: Path) -> None:
    dev = open_device(load_profile("local", TARGETS))
    assert isinstance(dev.platform, LinuxPlatform)
    assert dev.runtime.name == "onnxruntime" and dev.runtime.options["artifact_format"] == "onnx"
    assert dev.sensors.power == "auto" and dev.conditioning.cpus is None
    assert not dev.is_open and not local_home.exists()
    with dev:
        assert dev.transport.run(["true"]).ok
        assert dev.is_open
    assert not dev.is_open


def test_platform_comes_from_the_registry_with_checked_settings() -> None:
    dev = open_device(load_profile("pixel6-emulated", TARGETS))  # no connection is made
    assert isinstance(dev.platform, AndroidPlatform) and not dev.is_open
    assert dev.platform.conditioning.taskset_mask == "c0"
    assert dev.platform.sensor_settings.meminfo_every == 2


def test_bench_session_uses_open_device(local_home: Path) -> None:
    with DeviceSession(load_profile("local", TARGETS)) as s:
        assert isinstance(s.device, Device) and s.platform is s.device.platform
        assert s.transport is s.device.transport
    assert not s.device.is_open


def test_open_transport_refuses_a_machine_and_names_open_device() -> None:
    with pytest.raises(ConfigError, match=r"qemu-pi4.toml: transport = 'qemu' starts a machine "
                                          r"first .*harness.device.open_device"):
        open_transport(load_profile("qemu-pi4", TARGETS))


def test_loading_and_assembling_a_vm_profile_imports_no_vm_code() -> None:
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from harness.device import open_device
        from harness.profiles import load_profile
        dev = open_device(load_profile("qemu-pi4", Path({str(TARGETS)!r})))
        bad = [m for m in ("harness.qemu.transport", "harness.qemu.image", "harness.qemu.vm",
                           "paramiko") if m in sys.modules]
        print(type(dev.profile.transport_settings).__name__, bad)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["VmSettings", "[]"]


@dataclass(frozen=True, kw_only=True)
class FakeVmSettings:
    connect_timeout_s: float = 5.0


MACHINE = '''
from harness.transports.ssh_settings import SshSettings
calls = []
KEY = {key!r}

def attach(profile, s, state_root=None):
    calls.append(("attach", profile.name, state_root))
    return {{"port": 2222}}

def link_settings(vm, s):
    calls.append(("link_settings", vm["port"]))
    return SshSettings(host="127.0.0.1", port=vm["port"], user="root", key_file=KEY,
                       connect_timeout_s=s.connect_timeout_s)

def detach(profile, vm, s):
    calls.append(("detach",))

class Wrapped:
    def __init__(self, inner):
        self.inner = inner
    def close(self):
        calls.append(("close",))
        self.inner.close()

def wrap(profile, vm, link, s):
    calls.append(("wrap", type(link).__name__))
    return Wrapped(link)
'''


@pytest.fixture
def fake_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A registered machine transport whose lifecycle module records its calls."""
    key = tmp_path / "vm_key"
    write_ed25519_key(key)
    (tmp_path / "fake_machine_mod.py").write_text(MACHINE.format(key=str(key)))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_machine_mod", None)
    monkeypatch.setitem(registry._plugins["transport"], "fakevm",
                        Plugin("transport", "fakevm", "a fake VM", settings=FakeVmSettings,
                               options={"machine": "fake_machine_mod", "link": "ssh"}))
    base = load_profile("local", TARGETS)
    profile = replace(base, transport="fakevm",
                      settings={**base.settings, "fakevm": FakeVmSettings(connect_timeout_s=7)})
    import importlib

    return profile, importlib.import_module("fake_machine_mod"), key


def test_machine_is_started_then_its_ssh_link_is_built(fake_machine, tmp_path: Path) -> None:
    profile, mod, _ = fake_machine
    dev = open_device(profile, state_root=tmp_path / "state")
    assert mod.calls == []  # nothing started before the link is needed
    t = dev.transport
    assert [c[0] for c in mod.calls] == ["attach", "link_settings", "wrap"]
    assert mod.calls[0] == ("attach", "local", tmp_path / "state")
    assert mod.calls[2] == ("wrap", "SshTransport")
    assert isinstance(t.inner, SshTransport)
    assert (t.inner.host, t.inner.port, t.inner.user, t.inner.connect_timeout_s) == \
        ("127.0.0.1", 2222, "root", 7.0)
    dev.close()
    assert mod.calls[-1] == ("close",)


def test_machine_is_detached_when_its_link_cannot_be_built(fake_machine) -> None:
    profile, mod, key = fake_machine
    key.chmod(0o644)  # the link refuses a key others can read
    with pytest.raises(ConfigError, match="accessible by others"):
        _ = open_device(profile).transport
    assert [c[0] for c in mod.calls] == ["attach", "link_settings", "detach"]
