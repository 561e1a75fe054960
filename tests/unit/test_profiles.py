"""Profiles are checked whole at load: every table, key and name, with file,
table, key, what was expected and how to fix it in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError, UnknownDeviceError
from harness.profiles import available_devices, load_profile, parse_profile
from tests.support.sshd_board import write_ed25519_key

REPO = Path(__file__).resolve().parents[2]
TARGETS = REPO / "targets"

HEAD = 'name = "b"\ntransport = "local"\nplatform = "linux"\nruntime = "onnxruntime"\n'
NO_IMPLEMENTATION: dict[str, str] = {}  # every shipped platform is implemented


def write(tmp_path: Path, text: str, name: str = "b") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


@pytest.fixture
def home_with_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME holding the keys the shipped SSH profiles name (~/.ssh/...)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for name in ("id_ed25519", "gem-hil-board"):
        write_ed25519_key(home / ".ssh" / name)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_every_shipped_profile_loads_or_says_no_implementation(home_with_keys: Path) -> None:
    names = available_devices(TARGETS)
    assert {"local", "pi4", "pixel6", "qemu-pi4", "iphone13", "rk3588-npu"} <= set(names)
    for name in names:
        if name in NO_IMPLEMENTATION:
            with pytest.raises(ConfigError) as exc:
                load_profile(name, TARGETS)
            msg = str(exc.value)
            assert msg.startswith(f"{TARGETS / name}.toml: "), msg
            assert NO_IMPLEMENTATION[name] in msg and "known platforms: android, ios, linux" in msg
            continue
        p = load_profile(name, TARGETS)
        assert p.name == name and p.transport_settings is not None
    pi4 = load_profile("pi4", TARGETS)
    assert pi4.hardware["cpu"] == "Cortex-A72" and pi4.hardware["cores"] == 4
    assert pi4.budgets_for("edge", "int8")["latency_p95_ms"] <= 100.0
    assert pi4.transport_settings.key_path == home_with_keys / ".ssh" / "id_ed25519"


def test_adb_workdir_is_anchored_in_data_local_tmp() -> None:
    p = load_profile("pixel6-emulated", TARGETS)
    assert p.run.workdir == "/data/local/tmp/gem-hil"
    assert load_profile("local", TARGETS).run.workdir == "gem-hil"


def test_unregistered_runtime_has_no_implementation(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD.replace('"onnxruntime"', '"tensorrt"'))
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    assert str(exc.value).startswith(f"{path}: runtime = 'tensorrt': no implementation of "
                                     "runtime 'tensorrt'")
    assert "known runtimes: coreml, litert, onnxruntime" in str(exc.value)


def test_unknown_device_lists_names():
    with pytest.raises(UnknownDeviceError) as exc:
        load_profile("pi5", TARGETS)
    msg = str(exc.value)
    assert "pi5" in msg and "local" in msg and "pi5.toml" in msg
    assert available_devices(TARGETS) == sorted(available_devices(TARGETS))


BAD = [
    (HEAD + "[run\n", "not valid TOML"),
    ('name = "b"\n', "transport: missing; expected a string"),
    (HEAD.replace('"local"', '"serial"'),
     "transport = 'serial': no implementation of transport 'serial' in this gem-hil; known "
     "transports: adb, local, qemu, ssh"),
    (HEAD.replace('"linux"', '"ios-mac"'),
     "platform = 'ios-mac': no implementation of platform 'ios-mac'"),
    (HEAD.replace('"linux"', '"linuxx"'), "(did you mean linux?)"),
    (HEAD.replace('name = "b"', 'name = "c"'), "name: 'c' must match the file name 'b'"),
    (HEAD + 'emulated = "yes"\n', 'emulated: expected true or false, got "yes" (a string); '
                                  "write it like emulated = false"),
    (HEAD + "colour = 1\n", "[top level] unknown key(s) colour; known keys:"),
    (HEAD + "hardware = 3\n", "hardware = 3: expected a table [hardware]"),
    (HEAD + "[run]\nmin_count = 10\nmax_count = 5\n",
     "[run] min_count: 10 exceeds max_count 5; raise max_count or lower min_count"),
    (HEAD + "[run]\nthreads = 0\n", "[run] threads: 0 is below the minimum 1; set it to at "
                                    "least 1"),
    (HEAD + '[run]\nthreads = "four"\n', '[run] threads: expected an integer, got "four" '
                                         "(a string); write it like threads = 1"),
    (HEAD + "[run]\nthraeds = 2\n", "[run] unknown key(s) thraeds (did you mean threads?)"),
    (HEAD + '[run]\nvariant = "int4"\n',
     '[run] variant: "int4" is not one of "fp32", "fp16", "int8"'),
    (HEAD.replace('"local"', '"ssh"'), "transport = 'ssh' needs a [ssh] table with its "
                                       "connection settings (host, user, key_file)"),
    (HEAD + '[ssh]\nhost = "x"\n', "[ssh] is the table of transport 'ssh', but this profile "
                                   "has transport = 'local'"),
    (HEAD + "[local]\nhome = 1\n", "[local] unknown key(s) home; known keys: (none"),
    (HEAD + '[budgets.default]\nlatency_p95_ms = "fast"\n',
     "[budgets.default] latency_p95_ms: expected a number"),
    (HEAD + "[budgets]\ndefault = 3\n", "[budgets] default = 3: expected a table"),
    (HEAD + "[validity]\nmax_spreadd = 1.0\n",
     "[validity] unknown key(s) max_spreadd (did you mean max_spread?); known keys: "
     "allow_throttled,"),
    (HEAD + '[validity]\nmax_spread = "high"\n', '[validity] max_spread: expected a number, got '
                                             '"high" (a string); write it like max_spread = 0.1'),
    (HEAD + "[validity]\nmax_spread = -1\n", "[validity] max_spread: -1.0 is below the minimum 0"),
    (HEAD + "[sensors]\nidle_ss = 1\n", "[sensors] unknown key(s) idle_ss (did you mean idle_s?)"),
    (HEAD + "[sensors]\nandroid_intervl_s = 1\n",
     "[sensors] unknown key(s) android_intervl_s (did you mean android_interval_s?)"),
    (HEAD + '[sensors]\npower = "battery"\n',
     '[sensors] power: "battery" is not one of "auto", "hwmon", "rapl", "none"'),
    (HEAD + '[sensors]\nvcgencmd = "sometimes"\n',
     "[sensors] vcgencmd: 'sometimes': expected true, false or \"auto\""),
    (HEAD + "[sensors]\nandroid_battery_current_sign = 2\n",
     "[sensors] android_battery_current_sign: 2 is not one of 1, -1"),
    (HEAD + '[conditioning]\ngoverner = "performance"\n',
     "[conditioning] unknown key(s) governer (did you mean governor?)"),
    (HEAD + "[conditioning]\ncpus = []\n",
     "[conditioning] cpus: []: expected a non-empty list of CPU numbers, e.g. cpus = [2, 3]"),
    (HEAD + '[conditioning]\ncpus = ["all"]\n',
     '[conditioning] cpus: expected a list of integers, got ["all"]'),
    (HEAD + '[conditioning]\nandroid_taskset_mask = "big"\n',
     "[conditioning] android_taskset_mask: 'big' is not a hex CPU mask"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e[:40] for _, e in BAD])
def test_bad_profiles_name_file_table_key_and_fix(tmp_path: Path, text: str,
                                                  expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: "), msg
    assert expected in msg, msg


QEMU = HEAD.replace('"local"', '"qemu"') + "[qemu]\n"
ADB = HEAD.replace('"local"', '"adb"').replace('"linux"', '"android"')


@pytest.mark.parametrize(("text", "expected"), [
    (QEMU + "smp = 16\n", "[qemu] smp: 16 is above the maximum 8; set it to at most 8"),
    (QEMU + "smpp = 2\n", "[qemu] unknown key(s) smpp (did you mean smp?)"),
    (QEMU + "memory_mb = 64\n", "[qemu] memory_mb: 64 is below the minimum 256"),
    (ADB + '[adb]\naddress = "h:1"\nserial = "x"\n', "[adb] address: set exactly one of"),
    (ADB + "[adb]\n", "[adb] address: set exactly one of"),
    (ADB + '[adb]\naddress = "h:99999"\n', "'h:99999' is not host:port"),
    (ADB + '[adb]\nserial = "x"\nshell_protocol = "v3"\n',
     '[adb] shell_protocol: "v3" is not one of "auto", "v2", "legacy"'),
])
def test_bad_machine_and_adb_tables(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    assert str(exc.value).startswith(f"{path}: ") and expected in str(exc.value), str(exc.value)


def test_adb_key_readable_by_others_is_refused_at_load(tmp_path: Path) -> None:
    key = tmp_path / "adbkey"
    key.write_text("not checked here\n")
    key.chmod(0o644)
    path = write(tmp_path, ADB + f'[adb]\nserial = "x"\nkey_path = "{key}"\n')
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    assert f"[adb] key_path: {key}: the adb private key is readable by others (mode 0644)" \
        in str(exc.value) and f"chmod 600 {key}" in str(exc.value)


def test_qemu_memory_defaults_to_the_boards_ram_capped(tmp_path: Path) -> None:
    p = parse_profile(write(tmp_path, QEMU.replace("[qemu]", "[hardware]\nram_mb = 1024\n"
                                                              "[qemu]")))
    assert p.transport_settings.memory_mb == 1024
    assert parse_profile(write(tmp_path, QEMU)).transport_settings.memory_mb == 2048


@pytest.mark.parametrize("workdir", [
    "../../etc", "/", "/tmp/gem-hil", "/data/local/tmp/gem-hil", "a/../../b", "..", "",
    "  ", "gem\nhil", "gem\thil", "gem\x00hil", "gem\x1bhil", "~/gem-hil", ".", "./",
])
def test_workdir_outside_the_home_is_refused(tmp_path: Path, workdir: str) -> None:
    escaped = "".join(c if 32 <= ord(c) != 127 else f"\\u{ord(c):04x}" for c in workdir)
    path = write(tmp_path, HEAD + f'[run]\nworkdir = "{escaped}"\n')
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: [run] workdir: "), msg
    assert 'e.g. workdir = "gem-hil"' in msg and "\n" not in msg


@pytest.mark.parametrize(("transport", "where"), [
    ("local", "the local device's private folder"),
    ("ssh", "the device user's home"),
    ("adb", "/data/local/tmp"),
])
def test_workdir_message_names_the_transports_home(tmp_path: Path, transport: str,
                                                   where: str) -> None:
    text = HEAD.replace('"local"', f'"{transport}"') + f'[{transport}]\n[run]\nworkdir = "/etc"\n'
    with pytest.raises(ConfigError, match="absolute path; it must be relative to") as exc:
        parse_profile(write(tmp_path, text))
    assert where in str(exc.value)


@pytest.mark.parametrize("workdir", ["gem-hil", "a/b/c", "./gem-hil", "gem hil", "ünï"])
def test_workdir_inside_the_home_is_kept(tmp_path: Path, workdir: str) -> None:
    p = parse_profile(write(tmp_path, HEAD + f'[run]\nworkdir = "{workdir}"\n'))
    assert p.run.workdir == workdir


def test_unknown_keys_are_reported_before_type_errors(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + '[run]\nthreads = "x"\nthraeds = 2\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) thraeds"):
        parse_profile(path)


def test_typed_settings_are_carried_by_the_profile(tmp_path: Path) -> None:
    p = parse_profile(write(tmp_path, HEAD + "[validity]\nmax_spread = 1\n[sensors]\nidle_s = 3\n"
                            '[conditioning]\ncpus = [2, 3]\ngovernor = "performance"\n'))
    spread = p.settings["validity"].max_spread
    assert spread == 1.0 and isinstance(spread, float)
    assert p.settings["sensors"].idle_s == 3.0 and p.settings["sensors"].power == "auto"
    assert p.settings["conditioning"].cpus == [2, 3]
    assert p.settings["sensors.android"].interval_s == 0.5
    assert p.validity == {"max_spread": 1}  # only what the file sets
    assert type(p.transport_settings).__name__ == "LocalSettings"


def test_variant_budgets_overlay_default(tmp_path):
    p = parse_profile(write(tmp_path, HEAD + "[budgets.default]\nlatency_p95_ms = 100\n"
                            "peak_rss_mb = 1800\n[budgets.tiny-int8]\nlatency_p95_ms = 20\n"))
    assert p.budgets_for("tiny", "int8") == {"latency_p95_ms": 20.0, "peak_rss_mb": 1800.0}
    assert p.budgets_for("edge", "fp32") == {"latency_p95_ms": 100.0, "peak_rss_mb": 1800.0}


def test_local_python_path_is_relative_to_the_profile(tmp_path: Path) -> None:
    p = parse_profile(write(tmp_path, HEAD + '[run]\npython = "../bin/py"\n'))
    assert p.run.python == str((tmp_path / ".." / "bin" / "py").resolve())
