"""A fake `xcrun` for the iOS platform's tests: it replays recorded devicectl and
coremlcompiler output (tests/data/ios/) and logs every argv it gets.

It runs ON the stand-in Mac (the loopback sshd board), as the board's login,
started by a ``xcrun`` shell wrapper in the same folder; standard library
only (it must not import the project). Next to it:

  recordings/      the files of tests/data/ios/
  scenario.json    what to play: {"udid": ..., "compile": "ok" | "error",
                   "launch": "ok" | "crash" | "hang" | "locked"}
  calls.jsonl      one line per call: {"argv": [...], "cwd": ..., "developer_dir": ...}
  phone/           the simulated iPhone: container/<bundle id>/... (the app's data
                   container), installed.json, running.json (live "app" processes)

What is simulated, and how far: the JSON envelopes are the recordings with
info.arguments set to the real argv and, where a run decides them, the PID of
the "app" process; files copied "to the phone" land in phone/container and the
"app" writes its record (the recorded bench record) there. launch = "hang"
starts a real detached process standing in for the app (its own session, so
stopping devicectl's process group does not reach it, the worst case: real
devicectl forwards catchable signals to the app, this one does not) and then
blocks like ``--console`` does until the app exits or devicectl is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "recordings")
PHONE = os.path.join(HERE, "phone")
#: devicectl options that take a value (everything else starting with -- is a flag)
VALUE_OPTS = {"--device", "--json-output", "--domain-type", "--domain-identifier",
              "--source", "--destination", "--pid", "-d", "-j"}
APP_EXECUTABLE = ("file:///private/var/containers/Bundle/Application/"
                  "9E2B4C61-0D3A-4F7E-8B15-6A7C8D9E0F12/GemBench.app/GemBench")
RECORDED_PID = 2417
RECORDED_RECORD = "Documents/gem-hil/records/5b1e0c9a7d34.json"
RECORDED_ARTIFACT = "Documents/gem-hil/3f2a9c0d1e4b5a67"
#: the stand-in app: sleeps until it is signalled
APP_LOOP = "import time\nwhile True:\n    time.sleep(0.2)\n"


def load(name: str):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return json.load(f) if name.endswith(".json") else f.read()


def scenario() -> dict:
    try:
        with open(os.path.join(HERE, "scenario.json"), encoding="utf-8") as f:
            return json.load(f)
    except OSError:
        return {}


def log_call(argv: list) -> None:
    with open(os.path.join(HERE, "calls.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"argv": argv, "cwd": os.getcwd(),
                            "developer_dir": os.environ.get("DEVELOPER_DIR")}) + "\n")


def parse(args: list) -> tuple:
    opts, flags, pos, tail = {}, set(), [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            tail = args[i + 1:]
            break
        if a in VALUE_OPTS and i + 1 < len(args):
            opts[a] = args[i + 1]
            i += 2
            continue
        if a.startswith("-"):
            flags.add(a)
        else:
            pos.append(a)
        i += 1
    return opts, flags, pos, tail


def write_envelope(path: str | None, env: dict, args: list) -> None:
    if not path:
        return
    env = dict(env)
    env["info"] = dict(env["info"], arguments=["devicectl", *args])
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(env, f, indent=2)


def container(bundle: str) -> str:
    return os.path.join(PHONE, "container", bundle)


def running() -> list:
    try:
        with open(os.path.join(PHONE, "running.json"), encoding="utf-8") as f:
            procs = json.load(f)
    except OSError:
        return []
    return [p for p in procs if alive(p["pid"])]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def save_running(procs: list) -> None:
    os.makedirs(PHONE, exist_ok=True)
    with open(os.path.join(PHONE, "running.json"), "w", encoding="utf-8") as f:
        json.dump(procs, f)


def stop(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    return not alive(pid)


def fail(out: str | None, args: list, recording: str, message: str, code: int = 1) -> int:
    write_envelope(out, load(recording), args)
    sys.stderr.write(f"ERROR: {message}\n")
    return code


def devicectl(args: list) -> int:
    sc = scenario()
    opts, flags, pos, tail = parse(args)
    out = opts.get("--json-output") or opts.get("-j")
    if pos[:2] == ["list", "devices"]:
        write_envelope(out, load("devicectl_list_devices.json"), args)
        print("Devices:\nName                 Hostname                                     "
              "Identifier                             State                Model")
        return 0
    if pos[:1] != ["device"]:
        sys.stderr.write(f"Error: Unknown subcommand {' '.join(pos)!r}\n")
        return 64
    device = opts.get("--device") or opts.get("-d")
    if device != sc.get("udid"):
        return fail(out, args, "devicectl_device_not_found.json",
                    f"The specified device was not found. (Name: {device})")
    verb = pos[1:3]
    if verb == ["install", "app"]:
        app = pos[3] if len(pos) > 3 else ""
        if not os.path.isfile(os.path.join(app, "Info.plist")):
            return fail(out, args, "devicectl_install_invalid_bundle.json",
                        f"The item at {app} is not a valid bundle.")
        os.makedirs(PHONE, exist_ok=True)
        with open(os.path.join(PHONE, "installed.json"), "w", encoding="utf-8") as f:
            json.dump({"app": os.path.abspath(app)}, f)
        write_envelope(out, load("devicectl_install_app.json"), args)
        print("App installed:\n • bundleID: dev.gemhil.GemBench")
        return 0
    installed = os.path.isfile(os.path.join(PHONE, "installed.json"))
    bundle = opts.get("--domain-identifier") or (tail[0] if tail else "")
    if verb == ["copy", "to"]:
        src, dest = opts["--source"], opts["--destination"]
        if not installed or not os.path.isdir(src):
            return fail(out, args, "devicectl_copy_from_missing.json",
                        "Failed to copy the file to the device.")
        target = os.path.join(container(bundle), dest)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(src, target)
        write_envelope(out, load("devicectl_copy_to.json"), args)
        return 0
    if verb == ["copy", "from"]:
        src = os.path.join(container(bundle), opts["--source"])
        if not os.path.isfile(src):
            return fail(out, args, "devicectl_copy_from_missing.json",
                        "Failed to copy the file from the device.")
        dest = opts["--destination"]
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        shutil.copyfile(src, dest)
        write_envelope(out, load("devicectl_copy_from.json"), args)
        return 0
    if verb == ["info", "processes"]:
        env = load("devicectl_info_processes.json")
        procs = [p for p in env["result"]["runningProcesses"]
                 if p["executable"] != APP_EXECUTABLE]
        procs += [{"executable": p["executable"], "processIdentifier": p["pid"]}
                  for p in running()]
        env["result"]["runningProcesses"] = procs
        write_envelope(out, env, args)
        return 0
    if verb == ["process", "terminate"]:
        pid = int(opts["--pid"])
        if pid not in [p["pid"] for p in running()]:
            return fail(out, args, "devicectl_terminate_not_found.json",
                        f"The process with PID {pid} was not found.")
        stop(pid)
        env = load("devicectl_terminate.json")
        env["result"]["process"]["processIdentifier"] = pid
        write_envelope(out, env, args)
        return 0
    if verb == ["process", "launch"]:
        return launch(sc, opts, flags, tail, args, out, installed)
    sys.stderr.write(f"Error: Unknown subcommand {' '.join(pos)!r}\n")
    return 64


def app_args(tail: list) -> dict:
    opts = {}
    it = iter(tail[1:])
    for a in it:
        if a.startswith("--"):
            opts[a] = next(it, "")
    return opts


def launch(sc: dict, opts: dict, flags: set, tail: list, args: list, out: str | None,
           installed: bool) -> int:
    if not installed or not tail:
        return fail(out, args, "devicectl_launch_locked.json", "The application failed to "
                    "launch.")
    if "--terminate-existing" in flags:
        for p in running():
            stop(p["pid"])
    mode = sc.get("launch", "ok")
    if mode == "locked":
        return fail(out, args, "devicectl_launch_locked.json",
                    "The application failed to launch. (Locked)")
    bundle, aa = tail[0], app_args(tail)
    record = os.path.join(container(bundle), aa.get("--record", ""))
    art = os.path.join(container(bundle), aa.get("--artifact-dir", ""))
    env = load("devicectl_launch.json")
    console = load("devicectl_launch_crash_console.txt" if mode == "crash" else
                   "devicectl_launch_console.txt")
    console = console.replace(RECORDED_RECORD, aa.get("--record", "")).replace(
        RECORDED_ARTIFACT, aa.get("--artifact-dir", ""))
    if mode == "hang":
        app = subprocess.Popen([sys.executable, "-I", "-c", APP_LOOP, "GemBench", bundle],
                               start_new_session=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        save_running([{"pid": app.pid, "executable": APP_EXECUTABLE}])
        env["result"]["process"]["processIdentifier"] = app.pid
        head = console.split("GemBench: 10 warmup")[0]
        sys.stdout.write(head)
        sys.stdout.flush()
        while app.poll() is None:  # --console: wait for the app to end
            time.sleep(0.1)
        write_envelope(out, env, args)
        return 0
    if mode == "crash":
        sys.stdout.write(console)
        write_envelope(out, env, args)
        return 0  # devicectl itself succeeded; only the missing record tells
    # "ok": the app ran and wrote its record, if the model and manifest are there
    if not (os.path.isdir(os.path.join(art, aa.get("--model-file", "model.mlmodelc")))
            and os.path.isfile(os.path.join(art, "manifest.json"))):
        rec = {"ok": False, "agent_version": 1,
               "error": {"kind": "artifact", "message": f"no compiled model in {art}"}}
    else:
        with open(os.path.join(DATA, "bench_record.json"), encoding="utf-8") as f:
            rec = json.load(f)
        rec["runtime"]["compute_units"] = aa.get("--compute-units")
    os.makedirs(os.path.dirname(record), exist_ok=True)
    with open(record, "w", encoding="utf-8") as f:
        json.dump(rec, f)
    sys.stdout.write(console)
    write_envelope(out, env, args)
    return 0


def coremlcompiler(args: list) -> int:
    if args[:1] != ["compile"] or len(args) < 3:
        sys.stderr.write("coremlcompiler: error: usage: coremlcompiler <command> "
                         "<inputdocument> <outputpath> [options ...]\n")
        return 1
    pkg, out_dir = args[1], args[2]
    if scenario().get("compile") == "error":
        sys.stderr.write(load("coremlcompiler_compile_error.stderr"))
        return 1
    if not os.path.isfile(os.path.join(pkg, "Manifest.json")):
        sys.stderr.write(f"coremlc: error: Model does not exist at file://"
                         f"{os.path.abspath(pkg)}/\n")
        return 1
    compiled = os.path.join(out_dir, "model.mlmodelc")
    os.makedirs(os.path.join(compiled, "weights"), exist_ok=True)
    os.makedirs(os.path.join(compiled, "analytics"), exist_ok=True)
    for name, text in (("model.mil", "program(1.3)\n"), ("metadata.json", "[]\n"),
                       ("coremldata.bin", "placeholder\n"),
                       ("analytics/coremldata.bin", "placeholder\n")):
        with open(os.path.join(compiled, name), "w", encoding="utf-8") as f:
            f.write(text)
    shutil.copyfile(os.path.join(pkg, "Data", "com.apple.CoreML", "weights", "weight.bin"),
                    os.path.join(compiled, "weights", "weight.bin"))
    print(os.path.abspath(compiled))
    return 0


def main(argv: list) -> int:
    log_call(argv)
    if argv[:1] == ["devicectl"]:
        return devicectl(argv[1:])
    if argv[:1] == ["coremlcompiler"]:
        return coremlcompiler(argv[1:])
    tool = argv[0] if argv else ""
    sys.stderr.write(f'xcrun: error: unable to find utility "{tool}", not a developer tool '
                     "or in PATH\n")
    return 72


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
