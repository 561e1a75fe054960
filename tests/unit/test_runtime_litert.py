"""The litert runtime on the harness side: its [litert] settings, the format
override (--gem-format / bench --format), build --device, the cpu_fallback_ops
budget and the format column of `gem-hil devices`."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.budgets import METRICS, evaluate, record_measurements
from harness.errors import ConfigError
from harness.plan import make_plan
from harness.profiles import parse_profile
from harness.runtimes import runtime_agent_args, runtime_for_format

HEAD = 'name = "b"\ntransport = "local"\nplatform = "linux"\nruntime = "litert"\n'


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


def test_litert_defaults_drive_the_interpreter_on_the_cpu(tmp_path):
    p = parse_profile(write(tmp_path, HEAD))
    assert runtime_agent_args(p) == ["--runtime-api", "interpreter", "--accelerator", "cpu"]


def test_delegate_path_and_options_reach_the_agent(tmp_path):
    table = ('[litert]\ndelegate_path = "/usr/lib/libvx_delegate.so"\n'
             'delegate_options = ["cache=/tmp/vx", "n=2"]\n')
    p = parse_profile(write(tmp_path, HEAD + table))
    args = runtime_agent_args(p)
    assert args[args.index("--delegate") + 1] == "/usr/lib/libvx_delegate.so"
    assert "cache=/tmp/vx" in args and "n=2" in args


@pytest.mark.parametrize("table, key", [
    ('api = "compiled_model"\ndelegate_path = "/x.so"', "delegate_path"),
    ('accelerator = "npu"', "accelerator"),
    ('api = "tflite"', "api"),
    ('delegate_options = ["novalue"]', "delegate_options"),
])
def test_bad_litert_tables_name_the_key(tmp_path, table, key):
    with pytest.raises(ConfigError) as err:
        parse_profile(write(tmp_path, HEAD + f"[litert]\n{table}\n"))
    assert f"[litert] {key}" in str(err.value)


def test_onnxruntime_profiles_pass_no_runtime_flags(tmp_path):
    p = parse_profile(write(tmp_path, HEAD.replace('"litert"', '"onnxruntime"')))
    assert runtime_agent_args(p) == []


def test_each_format_has_exactly_one_runtime():
    assert runtime_for_format("tflite") == "litert"
    assert runtime_for_format("onnx") == "onnxruntime"
    assert runtime_for_format("coreml") == "coreml"
    with pytest.raises(ConfigError, match="tensorrt"):
        runtime_for_format("tensorrt")


def test_gem_format_overrides_the_profile_and_its_runtime():
    plan = make_plan({"device": "local", "gem_format": "tflite"})
    assert plan.fmt == "tflite" and plan.profile.runtime == "litert"
    assert make_plan({"device": "local"}).fmt == "onnx"
    with pytest.raises(ConfigError, match="known: coreml, onnx, rknn, tflite"):
        make_plan({"device": "local", "gem_format": "tf"})


def test_cpu_fallback_ops_is_a_budget_on_the_record():
    assert METRICS["cpu_fallback_ops"].direction == "max"
    rec = {"op_placement": {"cpu_fallback_ops": 3}}
    (v,) = evaluate({"cpu_fallback_ops": 0.0}, record_measurements(rec), {})
    assert v.verdict == "fail" and v.measured == 3
    (v,) = evaluate({"cpu_fallback_ops": 0.0},
                    record_measurements({"op_placement": {"cpu_fallback_ops": None}}), {})
    assert v.verdict == "inconclusive"  # the runtime did not say: never a silent pass


def test_devices_lists_each_profiles_format(capsys):
    from harness.cli import main

    main(["devices", "local"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["name", "transport", "platform", "runtime", "format"]
    assert out[2].split()[:5] == ["local", "local", "linux", "onnxruntime", "onnx"]
