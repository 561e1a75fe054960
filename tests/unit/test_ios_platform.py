"""The iOS platform's parsers (recorded devicectl / coremlcompiler / bench-app output,
tests/data/ios/) and its [ios] settings, checked at profile load."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.platforms import ios_devicectl as dc
from harness.profiles import parse_profile
from tests.support.sshd_board import set_toml_keys, write_ed25519_key

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "ios"
UDID = "00008110-001A2B3C4D5E801E"


def recording(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def envelope(name: str, step: str = "test") -> dc.Envelope:
    return dc.parse_envelope(recording(name), step)


# -- devicectl envelopes ---------------------------------------------------------------


def test_list_devices_finds_the_iphone_13():
    env = envelope("devicectl_list_devices.json")
    assert env.ok and env.command_type == "devicectl.list.devices" and env.json_version == 2
    assert env.version == "397.21"
    dev = dc.find_device(env, UDID)
    assert (dev.marketing_name, dev.product_type, dev.os_version, dev.os_build) == \
        ("iPhone 13", "iPhone14,5", "17.5.1", "21F90")
    assert (dev.pairing_state, dev.developer_mode, dev.transport_type) == \
        ("paired", "enabled", "wired")
    # the CoreDevice identifier and a lower-case UDID name the same phone
    assert dc.find_device(env, dev.identifier.lower()) == dev
    assert dc.find_device(env, UDID.lower()) == dev
    assert dev.fingerprint()["hardware_model"] == "D17AP"


def test_unknown_udid_lists_what_the_mac_sees():
    env = envelope("devicectl_list_devices.json")
    with pytest.raises(dc.DevicectlError) as exc:
        dc.find_device(env, "00008110-0000000000FFFF1E")
    msg = str(exc.value)
    assert msg.startswith("step 'find the iPhone': no device with UDID 00008110-0000000000FFFF1E "
                          "among the 2 device(s)")
    assert f"gem-hil iPhone 13 ({UDID})" in msg and "test iPad mini" in msg
    assert "tap Trust" in msg and "[ios] udid" in msg


@pytest.mark.parametrize("field,value,expect", [
    ("pairingState", "unpaired", "is not paired with this Mac (pairingState 'unpaired')"),
    ("developerModeStatus", "disabled", "Developer Mode is 'disabled'"),
])
def test_a_phone_that_cannot_run_apps_is_refused(field, value, expect):
    data = json.loads(recording("devicectl_list_devices.json"))
    phone = data["result"]["devices"][0]
    table = "connectionProperties" if field == "pairingState" else "deviceProperties"
    phone[table][field] = value
    with pytest.raises(dc.DevicectlError) as exc:
        dc.find_device(dc.parse_envelope(json.dumps(data), "find"), UDID)
    assert expect in str(exc.value)


def test_failed_envelopes_flatten_the_error_chain():
    env = envelope("devicectl_launch_locked.json")
    assert not env.ok and env.outcome == "failed" and env.result is None
    assert env.error is not None
    assert env.error.startswith("The application failed to launch. The request to open "
                                "\"dev.gemhil.GemBench\" failed. The request was denied")
    assert "could not be, unlocked" in env.error
    bad = envelope("devicectl_install_invalid_bundle.json").error
    assert bad == ("Failed to install the app on the device. The item at GemBench.app is not a "
                   "valid bundle. Failed to get the identifier for the app to be installed. "
                   "Ensure that your bundle's Info.plist contains a value for the "
                   "CFBundleIdentifier key.")
    assert envelope("devicectl_device_not_found.json").error.startswith(
        "The specified device was not found.")
    assert "No such file or directory" in envelope("devicectl_copy_from_missing.json").error


@pytest.mark.parametrize("text,expect", [
    ("not json", "is not JSON"),
    ("[]", "has no 'info' object"),
    ('{"info": {"outcome": "maybe"}}', "info.outcome is 'maybe'"),
])
def test_unreadable_envelopes_name_the_step(text, expect):
    with pytest.raises(dc.DevicectlError, match=expect) as exc:
        dc.parse_envelope(text, "install the bench app")
    assert str(exc.value).startswith("step 'install the bench app': ")


def test_install_returns_the_bundle_url_and_refuses_another_bundle():
    env = envelope("devicectl_install_app.json")
    url = dc.installed_app(env, "dev.gemhil.GemBench", "gem-hil/ios/GemBench.app")
    assert url == ("file:///private/var/containers/Bundle/Application/"
                   "9E2B4C61-0D3A-4F7E-8B15-6A7C8D9E0F12/GemBench.app/")
    with pytest.raises(dc.DevicectlError, match="installed bundle dev.gemhil.GemBench, but "
                                                "\\[ios\\] bundle_id is 'com.example.other'"):
        dc.installed_app(env, "com.example.other", "gem-hil/ios/GemBench.app")


def test_processes_of_the_app_are_found_by_its_bundle():
    env = envelope("devicectl_info_processes.json")
    url = dc.installed_app(envelope("devicectl_install_app.json"), "dev.gemhil.GemBench", "x")
    assert dc.app_pids(env, url, "GemBench.app") == [2417]
    # iOS names the container /private/var or /var: both are the same folder
    assert dc.app_pids(env, url.replace("/private/var", "/var"), "GemBench.app") == [2417]
    assert dc.app_pids(env, None, "GemBench.app") == [2417]  # no install this session
    assert dc.app_pids(env, None, "Missing.app") == []
    assert dc.launched_pid(envelope("devicectl_launch.json")) == 2417
    assert dc.launched_pid(envelope("devicectl_terminate.json")) == 2417


# -- coremlcompiler -------------------------------------------------------------------------


def test_coremlcompiler_success_gives_the_compiled_model():
    out = recording("coremlcompiler_compile.stdout")
    rel = "gem-hil/ios/compiled/3f2a9c0d1e4b5a67"
    assert dc.compiled_model_path(out, "", 0, rel) == f"/Users/ci/{rel}/model.mlmodelc"
    with pytest.raises(dc.DevicectlError, match="not into elsewhere"):
        dc.compiled_model_path(out, "", 0, "elsewhere")
    with pytest.raises(dc.DevicectlError, match="printed no .mlmodelc path"):
        dc.compiled_model_path("done\n", "", 0, rel)


def test_coremlcompiler_errors_are_quoted():
    err = recording("coremlcompiler_compile_error.stderr")
    with pytest.raises(dc.DevicectlError) as exc:
        dc.compiled_model_path("", err, 1, "out")
    msg = str(exc.value)
    assert msg.startswith("step 'compile the model': coremlcompiler failed (exit code 1): "
                          "compiler error:")
    assert "validator error: Model input 'input_ids' has a different shape" in msg
    missing = 'xcrun: error: unable to find utility "coremlcompiler", not a developer tool\n'
    with pytest.raises(dc.DevicectlError, match="install Xcode, not only the Command Line"):
        dc.compiled_model_path("", missing, 72, "out")
    # a "coremlc: error:" line fails the step even when the exit code says 0
    with pytest.raises(dc.DevicectlError, match="Model does not exist"):
        dc.compiled_model_path("", "coremlc: error: Model does not exist at file:///x/\n", 0,
                               "out")


# -- the bench app's record ------------------------------------------------------------------


def test_the_recorded_bench_record_is_in_the_agent_contract():
    out = dc.read_bench_record(recording("bench_record.json"), "collect")
    assert out["runner"] == "ios-bench-app" and out["runtime"]["name"] == "coreml"
    assert len(out["latency_samples_ns"]) == out["run"]["count"] == 260
    assert out["op_placement"]["cpu_fallback_ops"] == 3


def test_an_error_record_is_the_apps_own_error():
    text = json.dumps({"ok": False, "agent_version": 1, "error": {
        "kind": "model_load", "message": "MLModel could not load model.mlmodelc: the "
        "compute units cpu_and_ne need iOS 16", "traceback_tail": "GemBench.swift:88"}})
    with pytest.raises(dc.DevicectlError) as exc:
        dc.read_bench_record(text, "iphone13: step 'collect the record'")
    assert str(exc.value) == ("iphone13: step 'collect the record': the bench app failed "
                              "(model_load): MLModel could not load model.mlmodelc: the compute "
                              "units cpu_and_ne need iOS 16")
    assert exc.value.stderr_tail == "GemBench.swift:88"


@pytest.mark.parametrize("mutate,where", [
    (lambda r: r.pop("latency_samples_ns"), "'latency_samples_ns' is a required property"),
    (lambda r: r.update(latency_samples_ns=[]), "latency_samples_ns"),
    (lambda r: r["latency_samples_ns"].__setitem__(3, -5), "latency_samples_ns/3"),
    (lambda r: r["run"].update(stopped_by="tired"), "run/stopped_by"),
    (lambda r: r["parity"].update(top1_agreement=1.5), "parity/top1_agreement"),
    (lambda r: r["op_placement"].pop("cpu_fallback_ops"), "op_placement"),
])
def test_a_record_that_breaks_the_contract_is_refused(mutate, where):
    rec = json.loads(recording("bench_record.json"))
    mutate(rec)
    with pytest.raises(dc.DevicectlError, match="breaks the agent contract") as exc:
        dc.read_bench_record(json.dumps(rec), "collect")
    assert where in str(exc.value)
    with pytest.raises(dc.DevicectlError, match="is not JSON"):
        dc.read_bench_record("GemBench: crashed\n", "collect")


def test_the_agents_own_output_is_in_the_same_contract(tmp_path, fixture_artifact):
    """The schema the bench app is held to is the agent's: the real agent's output passes."""
    from tests.unit.test_agent import run_agent

    rc, out, err = run_agent(tmp_path, "--artifact-dir", str(fixture_artifact.folder),
                             "--min-count", "20", "--min-duration-s", "0.05",
                             "--warmup-count", "2", "--gen-runs", "0")
    assert rc == 0, err
    assert dc.agent_output_problems(out) == []
    broken = copy.deepcopy(out)
    del broken["cold_start"]["first_inference_ms"]
    assert dc.agent_output_problems(broken) == [
        "cold_start: 'first_inference_ms' is a required property"]


# -- [ios] settings at profile load ------------------------------------------------------------


@pytest.fixture
def iphone_profile(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    write_ed25519_key(key)
    text = (REPO / "targets" / "iphone13.toml").read_text()
    text = set_toml_keys(text, "ssh", {"key_file": str(key),
                                       "known_hosts": str(tmp_path / "known_hosts")})
    path = tmp_path / "iphone13.toml"
    path.write_text(text)
    return path


def edited(path: Path, table: str, **values: object) -> Path:
    path.write_text(set_toml_keys(path.read_text(), table, values))
    return path


def test_the_shipped_profile_loads_with_its_ios_settings(iphone_profile):
    p = parse_profile(iphone_profile)
    s = p.settings["ios"]
    assert (s.udid, s.bundle_id, s.app) == (
        "00008110-000000000000801E", "dev.gemhil.GemBench", "ios/GemBench.app")
    assert p.settings["coreml"].compute_units == "all"  # the runtime's table
    from harness.platforms import get_platform
    from harness.platforms.ios import IosPlatform

    platform = get_platform(p)
    assert isinstance(platform, IosPlatform) and platform.bench_tool() is not None
    assert platform.tool_reads_sensors is False  # the Mac is not the device
    assert platform.app_path == "gem-hil/ios/GemBench.app"
    args = platform.app_args("Documents/gem-hil/abc", "Documents/gem-hil/records/t.json", p.run)
    assert args[:2] == ["--artifact-dir", "Documents/gem-hil/abc"]
    assert args[args.index("--min-count") + 1] == "100"
    assert args[args.index("--min-duration-s") + 1] == "10.0"
    assert args[-6:] == ["--compute-units", "all", "--record",
                         "Documents/gem-hil/records/t.json", "--model-file", "model.mlmodelc"]


def test_missing_udid_is_an_error_at_load(iphone_profile):
    text = "\n".join(ln for ln in iphone_profile.read_text().splitlines()
                     if not ln.startswith("udid"))
    iphone_profile.write_text(text)
    with pytest.raises(ConfigError) as exc:
        parse_profile(iphone_profile)
    assert str(exc.value).startswith(f"{iphone_profile}: [ios] udid: missing; expected a string")
    assert "xcrun devicectl list devices" in str(exc.value)


@pytest.mark.parametrize("table,values,expect", [
    ("coreml", {"compute_units": "ane_only"}, '[coreml] compute_units: "ane_only" is not one '
                                              'of "all", "cpu_and_ne", "cpu_and_gpu", '
                                              '"cpu_only"'),
    ("ios", {"udid": "my-phone"}, "[ios] udid: 'my-phone' is not an iPhone UDID"),
    ("ios", {"app": "/Applications/GemBench.app"}, "[ios] app: '/Applications/GemBench.app' is "
                                                   "an absolute path; it must be relative to "
                                                   "[run] workdir on the Mac"),
    ("ios", {"app": "../GemBench.app"}, "[ios] app: '../GemBench.app' has a '..' component"),
    ("ios", {"app": "ios/GemBench"}, "is not an app bundle"),
    ("ios", {"bundle_id": "GemBench"}, "[ios] bundle_id: 'GemBench' is not a bundle identifier"),
    ("ios", {"xcrun": "xcrun --sdk iphoneos"}, "[ios] xcrun: 'xcrun --sdk iphoneos' has spaces"),
    ("ios", {"developer_dir": "Xcode.app"}, "[ios] developer_dir: 'Xcode.app' must be an "
                                           "absolute path"),
    ("ios", {"udidd": "x"}, "[ios] unknown key(s) udidd (did you mean udid?)"),
    ("run", {"workdir": "../Library"}, "[run] workdir: '../Library' has a '..' component"),
])
def test_bad_ios_settings_are_errors_at_load(iphone_profile, table, values, expect):
    edited(iphone_profile, table, **values)
    with pytest.raises(ConfigError) as exc:
        parse_profile(iphone_profile)
    assert expect in str(exc.value)
    assert str(exc.value).startswith(str(iphone_profile))


@pytest.mark.parametrize("old,new,expect", [
    ('runtime = "coreml"', 'runtime = "onnxruntime"', 'set runtime = "coreml"'),
    ('platform = "ios"', 'platform = "linux"', "[ios] is the table of platform 'ios', but this "
                                               "profile has platform = 'linux'"),
])
def test_ios_needs_its_runtime_and_owns_its_table(iphone_profile, old, new, expect):
    iphone_profile.write_text(iphone_profile.read_text().replace(old, new))
    with pytest.raises(ConfigError, match=expect.replace("[", "\\[").replace("]", "\\]")):
        parse_profile(iphone_profile)


def test_ios_needs_a_mac_over_ssh(tmp_path):
    path = tmp_path / "phone.toml"
    path.write_text('name = "phone"\ntransport = "local"\nplatform = "ios"\nruntime = "coreml"\n'
                    '[ios]\nudid = "00008110-001A2B3C4D5E801E"\n')
    with pytest.raises(ConfigError, match='set transport = "ssh"'):
        parse_profile(path)


def test_a_non_coreml_artifact_is_refused_before_any_command(iphone_profile, fixture_artifact):
    from harness.platforms import get_platform

    platform = get_platform(parse_profile(iphone_profile))

    class NoCommands:
        def run(self, *a, **kw):
            raise AssertionError("no command may run for a wrong artifact")

    with pytest.raises(ConfigError, match="runs Core ML artifacts; this artifact is 'onnx'"):
        platform.run_tool(NoCommands(), fixture_artifact, "gem-hil/artifacts/x",  # type: ignore[arg-type]
                          platform.profile.run, lambda *_: None)
