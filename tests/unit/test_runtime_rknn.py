"""The rknn runtime's registration: the RK3588 profile resolves to format rknn,
its [rknn] table reaches the agent as flags, bad values fail at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.artifacts import format_for_runtime
from harness.errors import ConfigError
from harness.plan import make_plan
from harness.profiles import load_profile, parse_profile
from harness.runtimes import runtime_agent_args
from tests.support.sshd_board import write_ed25519_key

TARGETS = Path(__file__).resolve().parents[2] / "targets"
HEAD = 'name = "b"\ntransport = "local"\nplatform = "linux"\nruntime = "rknn"\n'


@pytest.fixture
def home_with_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    write_ed25519_key(home / ".ssh" / "id_ed25519")
    monkeypatch.setenv("HOME", str(home))
    return home


def test_rk3588_profile_resolves_to_rknn_with_its_facts(home_with_key: Path) -> None:
    p = load_profile("rk3588-npu", TARGETS)
    assert p.runtime == "rknn" and format_for_runtime(p.runtime) == "rknn"
    assert p.hardware["soc"] == "Rockchip RK3588" and "3 cores, 6 TOPS" in p.hardware["npu"]
    args = runtime_agent_args(p)
    assert args[args.index("--rknn-core-mask") + 1] == "0_1_2"
    assert args[args.index("--rknn-library") + 1] == "/usr/lib/librknnrt.so"
    assert args[args.index("--rknn-runtime-version") + 1] == "2.5.0"
    plan = make_plan({"device": "rk3588-npu", "gem_model": "tiny"})
    assert (plan.fmt, plan.variant, plan.model) == ("rknn", "int8", "tiny")


def test_unset_runtime_version_is_not_passed(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text(HEAD + '[rknn]\ncore_mask = "auto"\n')
    args = runtime_agent_args(parse_profile(path))
    assert args == ["--rknn-core-mask", "auto", "--rknn-library", "/usr/lib/librknnrt.so"]


@pytest.mark.parametrize(("table", "key"), [
    ('core_mask = "3"', "core_mask"),
    ('library_path = "librknnrt.so"', "library_path"),
    ('core_mask = 7', "core_mask"),
])
def test_bad_rknn_settings_name_the_key(tmp_path: Path, table: str, key: str) -> None:
    path = tmp_path / "b.toml"
    path.write_text(HEAD + "[rknn]\n" + table + "\n")
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    assert f"[rknn] {key}" in str(exc.value) and str(path) in str(exc.value)


def test_a_variant_the_format_lacks_is_refused_at_plan_time() -> None:
    with pytest.raises(ConfigError, match=r"--gem-variant 'fp16': runtime 'onnxruntime' runs "
                                          r"onnx artifacts, which come as fp32, int8.*\(no fp16\)"):
        make_plan({"device": "local", "gem_variant": "fp16"})
    assert make_plan({"device": "local", "gem_format": "rknn", "gem_variant": "fp16"}).fmt == \
        "rknn"


def test_imx8mp_profile_names_its_vx_delegate_and_options(home_with_key: Path) -> None:
    """The second NPU profile: LiteRT with NXP's VX external delegate. The agent
    refuses a missing library before the benchmark (test_agent_litert.py's
    test_missing_delegate_library_is_a_clear_error_before_the_benchmark)."""
    p = load_profile("imx8mp-npu", TARGETS)
    assert p.runtime == "litert" and format_for_runtime(p.runtime) == "tflite"
    assert "2.3 TOPS" in p.hardware["npu"] and p.hardware["soc"] == "NXP i.MX 8M Plus"
    args = runtime_agent_args(p)
    assert args[args.index("--delegate") + 1] == "/usr/lib/libvx_delegate.so"
    assert args[args.index("--delegate-option") + 1] == "device_id=0"
    assert args[args.index("--runtime-api") + 1] == "interpreter"
