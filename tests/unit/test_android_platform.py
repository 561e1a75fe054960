"""AndroidPlatform configuration, with no device."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.platforms.android import AndroidPlatform
from harness.profiles import load_profile, parse_profile

REPO = Path(__file__).resolve().parents[2]


def test_pixel6_profile_has_its_real_facts():
    p = load_profile("pixel6", REPO / "targets")
    assert p.transport == "adb" and p.platform == "android" and not p.emulated
    assert p.hardware["ram_mb"] == 8192 and p.hardware["cores"] == 8
    assert "2x Cortex-X1" in p.hardware["cpu"] and "4x Cortex-A55" in p.hardware["cpu"]
    plat = AndroidPlatform(p)
    assert plat.conditioning.taskset_mask == "c0" and plat.conditioning.force_idle
    assert plat.sensor_settings.battery_current_sign == -1
    argv = plat.agent_argv("/data/local/tmp/gem-hil/agent/gem_agent.py", ["--threads", "2"])
    assert argv[:3] == ["taskset", "c0", p.run.python]


def _profile_with(tmp_path: Path, extra: str):
    text = (REPO / "targets" / "pixel6-emulated.toml").read_text()
    text = text.split("[conditioning]")[0] + extra
    path = tmp_path / "pixel6-emulated.toml"
    path.write_text(text)
    return parse_profile(path)


def test_bad_taskset_mask_names_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"\[conditioning\] android_taskset_mask.*hex CPU mask"):
        AndroidPlatform(_profile_with(tmp_path, '[conditioning]\nandroid_taskset_mask = "big"\n'))


def test_unknown_conditioning_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*android_cool_down"):
        AndroidPlatform(_profile_with(tmp_path, "[conditioning]\nandroid_cool_down = 1.0\n"))


def test_missing_benchmark_model_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("GEM_HIL_BENCHMARK_MODEL", raising=False)
    with pytest.raises(ConfigError, match="firmware/android/README.md"):
        AndroidPlatform.find_benchmark_model(str(tmp_path / "nope"))
