"""Profiles: every shipped file loads; bad files say file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError, UnknownDeviceError
from harness.profiles import available_devices, load_all, load_profile, parse_profile

REPO = Path(__file__).resolve().parents[2]
TARGETS = REPO / "targets"

HEAD = 'name = "b"\ntransport = "local"\nplatform = "linux"\nruntime = "onnxruntime"\n'


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


def test_every_shipped_profile_loads():
    names = {p.name for p in load_all(TARGETS)}
    assert {"local", "pi4", "iphone13", "rk3588-npu"} <= names
    pi4 = load_profile("pi4", TARGETS)
    assert pi4.hardware["cpu"] == "Cortex-A72" and pi4.hardware["cores"] == 4
    assert pi4.budgets_for("edge", "int8")["latency_p95_ms"] <= 100.0


def test_unknown_device_lists_names():
    with pytest.raises(UnknownDeviceError) as exc:
        load_profile("pi5", TARGETS)
    msg = str(exc.value)
    assert "pi5" in msg and "local" in msg and "pi5.toml" in msg
    assert available_devices(TARGETS) == sorted(available_devices(TARGETS))


@pytest.mark.parametrize(("text", "pattern"), [
    (HEAD + "[run\n", r"b.toml: not valid TOML"),
    ('name = "b"\n', r"b.toml: transport: missing"),
    (HEAD.replace('"local"', '"serial"'), r"transport: 'serial' is not one of local, ssh"),
    (HEAD.replace('name = "b"', 'name = "c"'), r"must match the file name 'b'"),
    (HEAD + "[run]\nmin_count = 10\nmax_count = 5\n", r"\[run\] min_count: 10 exceeds max_count"),
    (HEAD + "[run]\nthreads = 0\n", r"\[run\] threads: must be at least 1"),
    (HEAD + "[run]\nthraeds = 2\n", r"unknown key\(s\) thraeds"),
    (HEAD + "colour = 1\n", r"\[top level\] unknown key\(s\) colour"),
    (HEAD.replace('"local"', '"ssh"'), r"needs a \[ssh\] table"),
    (HEAD + "[budgets.default]\nlatency_p95_ms = \"fast\"\n",
     r"\[budgets.default\] latency_p95_ms: expected a number"),
])
def test_bad_profiles_name_file_and_key(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_profile(write(tmp_path, text))


def test_variant_budgets_overlay_default(tmp_path):
    p = parse_profile(write(tmp_path, HEAD + "[budgets.default]\nlatency_p95_ms = 100\n"
                            "peak_rss_mb = 1800\n[budgets.tiny-int8]\nlatency_p95_ms = 20\n"))
    assert p.budgets_for("tiny", "int8") == {"latency_p95_ms": 20.0, "peak_rss_mb": 1800.0}
    assert p.budgets_for("edge", "fp32") == {"latency_p95_ms": 100.0, "peak_rss_mb": 1800.0}
