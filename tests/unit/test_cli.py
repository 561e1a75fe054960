"""The CLI's shape: one exit-code table, usage errors are 64, options shared with pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import ExitCode, build_parser, main
from harness.plan import OPTIONS, make_plan

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [
    ["bench", "--bogus"], ["bench", "--gem-variant", "int4"], ["devices", "--bogus"],
    ["gate"], ["qemu"], ["qemu", "explode"], ["nosuchcommand"], ["build", "--variant", "x"],
])
def test_usage_errors_exit_64_never_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == ExitCode.USAGE == 64
    assert "error:" in capsys.readouterr().err


def test_exit_codes_are_distinct():
    codes = [c.value for c in ExitCode] + [ExitCode.interrupted(2), ExitCode.interrupted(15)]
    assert len(set(codes)) == len(codes)
    assert ExitCode.interrupted(2) == 130


@pytest.mark.parametrize("before", [True, False])
def test_targets_dir_goes_before_or_after_the_subcommand(before, tmp_path):
    (tmp_path / "mine.toml").write_text((REPO / "targets" / "local.toml").read_text()
                                        .replace('name = "local"', 'name = "mine"'))
    argv = ["bench", "--device", "mine"]
    argv = (["--targets-dir", str(tmp_path)] + argv) if before else \
        (argv + ["--targets-dir", str(tmp_path)])
    args = build_parser().parse_args(argv)
    if args.targets_dir is None:
        args.targets_dir = args.global_targets_dir
    plan = make_plan(vars(args))
    assert plan.profile.path == tmp_path / "mine.toml"


def test_own_profiles_add_to_the_shipped_ones(tmp_path):
    (tmp_path / "mine.toml").write_text((REPO / "targets" / "local.toml").read_text()
                                        .replace('name = "local"', 'name = "mine"'))
    plan = make_plan({"device": "local", "targets_dir": str(tmp_path)})
    assert plan.profile.name == "local"  # the shipped one is still found
    assert plan.gate_argv()[-2:] == ["--targets-dir", str(tmp_path)]


def test_missing_targets_dir_is_a_clear_error(tmp_path):
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="--targets-dir .*: not a folder"):
        make_plan({"device": "local", "targets_dir": str(tmp_path / "nope")})


def test_local_runs_the_agent_with_the_harness_interpreter():
    plan = make_plan({"device": "local"})
    assert plan.profile.run.python == sys.executable


def test_every_shared_option_is_in_pytest_help_and_bench_help():
    pytest_help = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=REPO,
                                 capture_output=True, text=True, timeout=120).stdout
    bench_help = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "--help"],
                                cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    for opt in OPTIONS:
        assert opt.flag in pytest_help, opt.flag
        assert opt.flag in bench_help, opt.flag


def test_profile_search_path_env_var_and_user_folder(tmp_path, monkeypatch):
    """--targets-dir, then $GEM_HIL_TARGETS, then ~/.config/gem-hil/targets, then the
    shipped profiles: the first folder that has the name wins."""
    from harness.profiles import load_profile, profile_paths

    local = (REPO / "targets" / "local.toml").read_text()
    env_dir, user_dir, cli_dir = (tmp_path / n for n in ("env", "user", "cli"))
    for folder, name in ((env_dir, "envboard"), (user_dir / "gem-hil" / "targets", "userboard"),
                         (cli_dir, "envboard")):
        folder.mkdir(parents=True)
        (folder / f"{name}.toml").write_text(local.replace('name = "local"', f'name = "{name}"'))
    monkeypatch.setenv("GEM_HIL_TARGETS", str(env_dir))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_dir))
    found = profile_paths()
    assert found["envboard"] == env_dir / "envboard.toml"
    assert found["userboard"] == user_dir / "gem-hil" / "targets" / "userboard.toml"
    assert found["local"] == REPO / "targets" / "local.toml"  # shipped, still there
    assert load_profile("envboard", cli_dir).path == cli_dir / "envboard.toml"  # cli first
