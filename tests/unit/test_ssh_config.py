"""SshTransport settings, key checks and command building (no sshd needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from harness.errors import ConfigError
from harness.profiles import parse_profile
from harness.transports.ssh import SshTransport, build_command, fingerprint, known_hosts_name
from tests.support.sshd_board import fingerprint_of_pub, set_toml_keys, write_ed25519_key

TEMPLATE = Path(__file__).resolve().parents[2] / "targets" / "ssh-board.toml"


def write_profile(tmp_path: Path, **ssh: object) -> Path:
    """targets/ssh-board.toml with the given [ssh] keys (None deletes a key)."""
    text = TEMPLATE.read_text()
    keep = {k: v for k, v in ssh.items() if v is not None}
    text = set_toml_keys(text, "ssh", keep)
    for key in (k for k, v in ssh.items() if v is None):
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith(f"{key} =")) + "\n"
    path = tmp_path / "ssh-board.toml"
    path.write_text(text)
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_test"
    write_ed25519_key(path)
    return path


def test_template_profile_parses_and_names_its_keys(key: Path, tmp_path: Path) -> None:
    t = SshTransport.from_profile(parse_profile(write_profile(tmp_path, key_file=str(key))))
    assert (t.host, t.port, t.user) == ("127.0.0.1", 22, "gemhil")
    assert t.connect_timeout_s == 10 and t.command_timeout_s == 300 and t.keepalive_s == 15
    assert t.accept_new_host_key is False
    assert t.known_hosts == Path(os.path.expanduser("~/.ssh/known_hosts"))


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    write_ed25519_key(tmp_path / ".ssh" / "board")
    path = write_profile(tmp_path, key_file="~/.ssh/board", known_hosts="~/kh")
    t = SshTransport.from_profile(parse_profile(path))
    assert t.key_file == tmp_path / ".ssh" / "board"
    assert t.known_hosts == tmp_path / "kh"


def test_command_line_opt_in_overrides_profile(key: Path, tmp_path: Path) -> None:
    prof = parse_profile(write_profile(tmp_path, key_file=str(key)))
    assert SshTransport.from_profile(prof, accept_new_host_key=True).accept_new_host_key


@pytest.mark.parametrize(("change", "expected"), [
    ({"host": None}, "[ssh] host: missing; expected a string: the board's address or DNS "
                     'name. Add host = "pi4.lan" to [ssh]'),
    ({"user": None}, "[ssh] user: missing; expected a string"),
    ({"key_file": None}, "[ssh] key_file: missing; expected a string"),
    ({"port": "22"}, '[ssh] port: expected an integer, got "22" (a string); write it like '
                     "port = 22"),
    ({"port": 70000}, "[ssh] port: 70000 is above the maximum 65535"),
    ({"port": 0}, "[ssh] port: 0 is below the minimum 1"),
    ({"connect_timeout_s": 0}, "[ssh] connect_timeout_s: 0.0 is below the minimum 0.1"),
    ({"accept_new_host_key": "yes"}, "[ssh] accept_new_host_key: expected true or false"),
    ({"host": ""}, "[ssh] host: '' is empty or has spaces"),
    ({"hostname": "x"}, "[ssh] unknown key(s) hostname (did you mean host?); known keys: "
                        "accept_new_host_key, command_timeout_s"),
    # a misspelt key is reported as what it is, not as the key it was meant to be
    ({"host": None, "hostname": "x"}, "[ssh] unknown key(s) hostname (did you mean host?)"),
])
def test_bad_ssh_table_fails_at_load_naming_file_and_key(key: Path, tmp_path: Path,
                                                          change: dict, expected: str) -> None:
    path = write_profile(tmp_path, **{"key_file": str(key), **change})
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)  # at load: nothing built, nothing pushed
    assert str(exc.value).startswith(f"{path}: ")
    assert expected in str(exc.value)
    assert "missing" not in str(exc.value) or "hostname" not in change


def test_key_readable_by_others_is_refused_at_load(tmp_path: Path) -> None:
    key = tmp_path / "id_open"
    write_ed25519_key(key, mode=0o644)
    path = write_profile(tmp_path, key_file=str(key))
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: [ssh] key_file: {key} is accessible by others (mode 0644)")
    assert f"chmod 600 {key}" in msg


def test_missing_key_file_is_refused_at_load_and_says_how_to_make_one(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    path = write_profile(tmp_path, key_file=str(missing))
    with pytest.raises(ConfigError) as exc:
        parse_profile(path)
    assert str(exc.value).startswith(f"{path}: [ssh] key_file: {missing} does not exist; "
                                     f"create a key with ssh-keygen -t ed25519 -N '' -f {missing}")


def test_key_that_is_a_folder_is_refused_at_load(tmp_path: Path) -> None:
    path = write_profile(tmp_path, key_file=str(tmp_path))
    with pytest.raises(ConfigError, match=r"\[ssh\] key_file: .* is not a regular file"):
        parse_profile(path)


def test_from_profile_uses_the_checked_settings(key: Path, tmp_path: Path) -> None:
    prof = parse_profile(write_profile(tmp_path, key_file=str(key), port=2222,
                                       keepalive_s=0))
    s = prof.transport_settings
    assert (s.host, s.port, s.keepalive_s) == ("127.0.0.1", 2222, 0.0)
    t = SshTransport.from_profile(prof)
    assert (t.port, t.keepalive_s, t.where) == (2222, 0.0, str(prof.path))


def test_passphrase_key_is_refused_without_prompting(tmp_path: Path) -> None:
    key = tmp_path / "id_locked"
    write_ed25519_key(key, passphrase=b"secret-pass")
    with pytest.raises(ConfigError) as exc:
        SshTransport.from_profile(parse_profile(write_profile(tmp_path, key_file=str(key))))
    assert "passphrase" in str(exc.value)
    assert "secret-pass" not in str(exc.value)


def test_garbage_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "id_garbage"
    key.write_text("not a key\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="not a private key paramiko can read"):
        SshTransport.from_profile(parse_profile(write_profile(tmp_path, key_file=str(key))))


WEIRD_ARGS = ["plain", "two words", "it's", 'say "hi"', "$(touch /tmp/gem-hil-pwned)",
              "`id`", "a;b", "x && y", "line1\nline2", "*", "", "-n", "ünï ☃", "$HOME", "\\"]


def test_build_command_round_trips_through_a_real_shell(tmp_path: Path) -> None:
    """What sshd hands to `sh -c` must reach the program verbatim."""
    cwd = tmp_path / "dir with space"
    cwd.mkdir()
    env = {"GEM_X": "v a l$(id)", "GEM_Y": "'q'"}
    argv = [sys.executable, "-c",
            "import sys,json,os;print(json.dumps([sys.argv[1:], os.getcwd(),"
            " os.environ['GEM_X'], os.environ['GEM_Y']]))", *WEIRD_ARGS]
    cmd = build_command(argv, env=env, cwd=str(cwd))
    res = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=30)
    pid_line, out = res.stdout.split("\n", 1)
    assert res.returncode == 0, res.stderr
    assert pid_line.isdigit()
    assert json.loads(out) == [WEIRD_ARGS, str(cwd), env["GEM_X"], env["GEM_Y"]]
    assert not Path("/tmp/gem-hil-pwned").exists()


def test_build_command_keeps_exit_code_and_signal_deaths() -> None:
    cmd = build_command(["sh", "-c", "exit 7"])
    assert subprocess.run(["/bin/sh", "-c", cmd], capture_output=True).returncode == 7
    cmd = build_command(["sh", "-c", "kill -KILL $$"])
    assert subprocess.run(["/bin/sh", "-c", cmd], capture_output=True).returncode == 137


def test_build_command_rejects_bad_env_names() -> None:
    with pytest.raises(ValueError, match="invalid environment variable"):
        build_command(["true"], env={"A B": "x"})
    with pytest.raises(ValueError, match="empty command"):
        build_command([])


def test_known_hosts_name_follows_openssh() -> None:
    assert known_hosts_name("board.lan", 22) == "board.lan"
    assert known_hosts_name("10.0.0.2", 2222) == "[10.0.0.2]:2222"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_fingerprint_matches_ssh_keygen(key: Path) -> None:
    pub = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True,
                         check=True).stdout
    (key.parent / "k.pub").write_text(pub)
    listed = subprocess.run(["ssh-keygen", "-lf", str(key.parent / "k.pub")],
                            capture_output=True, text=True, check=True).stdout.split()[1]
    assert fingerprint(paramiko.PKey.from_path(str(key))) == listed == fingerprint_of_pub(pub)


def test_budget_readers_can_skip_the_machine_dependent_key_check(tmp_path: Path) -> None:
    """The release gate reads budgets on machines that hold no board key."""
    path = write_profile(tmp_path, key_file=str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="does not exist"):
        parse_profile(path)
    assert parse_profile(path, check_files=False).transport_settings.host == "127.0.0.1"
    bad = write_profile(tmp_path, key_file=str(tmp_path / "absent"), port="22")
    with pytest.raises(ConfigError, match="port: expected an integer"):
        parse_profile(bad, check_files=False)  # the file itself is still checked whole
