"""iOS devices (iPhone 13 first): a Mac over SSH drives the tethered iPhone.

An iPhone runs no Python and accepts no SSH login, so the device is two
machines: the profile's transport reaches a macOS host over SSH (the same
SshTransport as a Linux board: host keys verified, key file 0600), and that
Mac drives the iPhone on its USB cable with Xcode's tools. One benchmark is
these steps, each a command built from an argument list (the transport quotes
every piece), each failing with a message that names the device, its UDID and
the step:

1. find the iPhone     ``xcrun devicectl list devices --json-output F``: the
                        UDID is there, paired, Developer Mode on (prepare())
2. push                the engine pushes the artifact folder (manifest.json,
                        reference.json, model.mlpackage.zip) into [run] workdir
3. unpack              ``unzip`` the package next to it (docs/gem.md: the
                        .mlpackage travels zipped because manifest files are
                        plain names)
4. compile             ``xcrun coremlcompiler compile model.mlpackage OUT``
                        -> OUT/model.mlmodelc (what the app loads; compiling on
                        the phone at every launch would time the compiler)
5. install             ``xcrun devicectl device install app --device UDID APP``
                        (the signed bench app built from firmware/ios), once
                        per session
6. copy to the phone   ``devicectl device copy to --domain-type
                        appDataContainer``: model.mlmodelc + manifest +
                        reference into the app's Documents/gem-hil/<sha16>/
7. run                 ``devicectl device process launch --console
                        --terminate-existing --device UDID -- BUNDLE ARGS``:
                        the app gets the agent's flags plus --compute-units and
                        --record; --console waits for it to exit
8. collect             ``devicectl device copy from`` the record into the Mac's
                        workdir, ``cat`` it here, check it against the agent
                        contract (harness/schemas/agent_output.schema.json)

The record is the agent's JSON, so the engine builds the same result record
from it (schema-valid) as from any other runner. Nothing is left running: a
Ctrl-C / SIGTERM during the run stops devicectl on the Mac (the SSH
transport kills its process group) and then ends the app on the iPhone
(``device info processes`` finds its PID inside the installed bundle,
``device process terminate --pid`` ends it); a run that overruns [run]
timeout_s is stopped the same way; ``--terminate-existing`` ends an instance
an earlier, vanished run left behind.

Exercised here only against recordings (tests/data/ios/): see docs/ios.md
for what was and was not run on a real Mac and iPhone.
"""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import CommandTimeout, ConfigError, HarnessError
from harness.interrupts import note
from harness.platforms.base import Platform, ToolRun
from harness.platforms.ios_devicectl import (
    DevicectlError,
    DeviceInfo,
    Envelope,
    app_pids,
    compiled_model_path,
    find_device,
    installed_app,
    parse_envelope,
    read_bench_record,
)
from harness.profiles import _CONTROL, check_workdir
from harness.registry import TableContext, registry, setting

if TYPE_CHECKING:
    from harness.artifacts import LocalArtifact
    from harness.profiles import DeviceProfile, RunSettings
    from harness.transports.base import CommandResult, Transport

#: iPhone UDIDs: 8-16 hex since the A12 (00008110-001A2B3C4D5E801E), 40 hex before;
#: devicectl also takes its CoreDevice identifier (a UUID)
_UDID = re.compile(r"^(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40}|"
                   r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$")
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
#: where the app keeps what the harness copies in, inside its data container
PHONE_ROOT = "Documents/gem-hil"
#: how much of the app's console a failure message keeps
CONSOLE_TAIL_LINES = 30


@dataclass(frozen=True, kw_only=True)
class IosSettings:
    """The [ios] table: the iPhone behind the Mac, and the bench app that runs on it.
    How Core ML runs the model (compute units) is the coreml runtime's [coreml] table."""

    udid: str | None = setting(
        None, help="UDID of the iPhone tethered to the Mac (required with platform = "
                   "\"ios\"); `xcrun devicectl list devices` on the Mac lists it",
        example='"00008110-001A2B3C4D5E801E"')
    bundle_id: str = setting("dev.gemhil.GemBench", help="CFBundleIdentifier of the bench "
                             "app (firmware/ios; sign it with your team's identifier)")
    app: str = setting("ios/GemBench.app", help="the signed bench app built from "
                       "firmware/ios, on the Mac, relative to [run] workdir (no '..', not "
                       "absolute)")
    xcrun: str = setting("xcrun", help="the xcrun command on the Mac: a name on the SSH "
                         "login's PATH or an absolute path")
    developer_dir: str | None = setting(
        None, help="DEVELOPER_DIR for xcrun: which Xcode, e.g. "
                   "/Applications/Xcode.app/Contents/Developer (unset: xcode-select's)")
    step_timeout_s: float = setting(300.0, minimum=1, help="timeout of each step on the Mac "
                                    "(devicectl, coremlcompiler, unzip); the run itself has "
                                    "[run] timeout_s")

    def check(self, ctx: TableContext) -> None:
        raw = ctx.raw
        platform = raw.get("platform")
        if platform != "ios":
            if "ios" in raw:
                raise ConfigError(f"{ctx.file}: [ios] is the table of platform 'ios', but "
                                  f"this profile has platform = {platform!r}; remove [ios] or "
                                  "set platform = \"ios\"")
            return
        if raw.get("transport") != "ssh":
            raise ConfigError(f"{ctx.file}: platform = \"ios\" drives the iPhone from a Mac "
                              f"reached over SSH; set transport = \"ssh\" (not "
                              f"{raw.get('transport')!r}) and the Mac's [ssh] table")
        if raw.get("runtime") != "coreml":
            raise ConfigError(f"{ctx.file}: platform = \"ios\" runs Core ML artifacts in the "
                              f"bench app; set runtime = \"coreml\" (not {raw.get('runtime')!r})")
        if self.udid is None:
            raise ctx.error("udid", "missing; expected a string: the UDID of the iPhone "
                                    "tethered to the Mac (`xcrun devicectl list devices` "
                                    "shows it). Add udid = \"00008110-001A2B3C4D5E801E\" "
                                    "(yours) to [ios]")
        if not _UDID.match(self.udid):
            raise ctx.error("udid", f"{self.udid!r} is not an iPhone UDID (8-16 hex digits "
                                    "such as 00008110-001A2B3C4D5E801E, 40 hex digits, or a "
                                    "CoreDevice UUID); copy it from `xcrun devicectl list "
                                    "devices`")
        if not _BUNDLE_ID.match(self.bundle_id):
            raise ctx.error("bundle_id", f"{self.bundle_id!r} is not a bundle identifier "
                                         "(reverse DNS: letters, digits, '-' and '.', e.g. "
                                         "\"dev.gemhil.GemBench\")")
        # created, overwritten and read there: an absolute path or '..' could make a
        # profile touch anything the Mac login may
        check_workdir(self.app, ctx, "app", home="[run] workdir on the Mac",
                      fix='write a path relative to [run] workdir, e.g. app = '
                          '"ios/GemBench.app"')
        if not self.app.rstrip("/").endswith(".app"):
            raise ctx.error("app", f"{self.app!r} is not an app bundle (a folder named "
                                   "*.app built from firmware/ios)")
        if not self.xcrun.strip() or any(c in _CONTROL or c.isspace() for c in self.xcrun):
            raise ctx.error("xcrun", f"{self.xcrun!r} has spaces or control characters; "
                                     "give the command name or its absolute path")
        dd = self.developer_dir
        if dd is not None and (not dd.startswith("/") or any(c in _CONTROL for c in dd)):
            raise ctx.error("developer_dir", f"{dd!r} must be an absolute path on the Mac, "
                                             "e.g. /Applications/Xcode.app/Contents/Developer")


registry.register("platform", "ios", factory="harness.platforms.ios:IosPlatform",
                  settings=IosSettings,
                  help="iPhones through a macOS host over SSH: the Mac compiles the Core ML "
                       "package (coremlcompiler) and runs the bench app (firmware/ios) on the "
                       "tethered iPhone with devicectl ([ios] table; docs/ios.md)")


class IosPlatform(Platform):
    """The steps of one benchmark on an iPhone behind a Mac (module docstring)."""

    name = "ios"
    #: the Mac is the link's machine, not the device: no host-side sensors apply
    tool_reads_sensors = False
    stop_rule_reason = ("the iOS bench app stops at the minimums (min_count and "
                        "min_duration_s, capped by max_count / max_duration_s); it takes no "
                        "sequential looks")

    def __init__(self, profile: DeviceProfile) -> None:
        super().__init__(profile)
        self.s: IosSettings = profile.settings["ios"]
        #: MLModelConfiguration.computeUnits: the coreml runtime's [coreml] compute_units
        self.compute_units: str = profile.settings["coreml"].compute_units
        self.root = posixpath.join(profile.run.workdir, "ios")
        self.json_dir = posixpath.join(self.root, "devicectl")
        self.device_info: DeviceInfo | None = None
        self._install_url: str | None = None
        self._installed = False
        self._on_phone: set[str] = set()
        self._calls = 0
        self._dirs_ready = False

    @property
    def udid(self) -> str:
        assert self.s.udid is not None  # checked when the profile was loaded
        return self.s.udid

    @property
    def where(self) -> str:
        return f"{self.profile.name} (iPhone {self.udid})"

    @property
    def app_path(self) -> str:
        return posixpath.join(self.profile.run.workdir, self.s.app.rstrip("/"))

    # -- commands on the Mac ----------------------------------------------

    def _env(self) -> dict[str, str] | None:
        return {"DEVELOPER_DIR": self.s.developer_dir} if self.s.developer_dir else None

    def _xcrun(self, t: Transport, args: Sequence[str], timeout_s: float | None = None
               ) -> CommandResult:
        return t.run([self.s.xcrun, *args], timeout_s=timeout_s or self.s.step_timeout_s,
                     env=self._env())

    def _fail(self, step: str, detail: str, res: CommandResult | None = None) -> DevicectlError:
        return DevicectlError(f"{self.where}: step '{step}': {detail}",
                              stderr_tail=res.stderr_tail() if res is not None else "",
                              exit_code=res.rc if res is not None else None)

    def _cat(self, t: Transport, path: str) -> str | None:
        res = t.run(["cat", "--", path], timeout_s=self.s.step_timeout_s)
        return res.stdout if res.ok else None

    def _run_ok(self, t: Transport, step: str, argv: Sequence[str]) -> CommandResult:
        res = t.run(argv, timeout_s=self.s.step_timeout_s)
        if not res.ok:
            raise self._fail(step, f"`{' '.join(argv[:2])}` on the Mac exited {res.rc}: "
                                   f"{(res.stderr.strip() or res.stdout.strip())[-600:]}", res)
        return res

    def _fresh_dir(self, t: Transport, step: str, path: str) -> None:
        """An empty folder at path (inside the workdir: every caller builds it from
        [run] workdir, checked at load)."""
        self._run_ok(t, step, ["rm", "-rf", "--", path])
        self._run_ok(t, step, ["mkdir", "-p", "--", path])

    def devicectl(self, t: Transport, step: str, args: Sequence[str],
                  tail: Sequence[str] = (), timeout_s: float | None = None,
                  allow_failure: bool = False) -> tuple[Envelope | None, CommandResult]:
        """``xcrun devicectl ARGS --json-output F TAIL``, then F read back.

        Returns the envelope (None when devicectl wrote none and allow_failure),
        raising with the step's name when the outcome is "failed" unless
        allow_failure. Each call writes its own file, so a stale one can never
        be read for a later step.
        """
        if not self._dirs_ready:
            self._fresh_dir(t, step, self.json_dir)
            self._dirs_ready = True
        self._calls += 1
        slug = "-".join(a for a in args[:3] if not a.startswith("-"))
        out = posixpath.join(self.json_dir, f"{self._calls:03d}-{slug}.json")
        res = self._xcrun(t, ["devicectl", *args, "--json-output", out, *tail], timeout_s)
        text = self._cat(t, out)
        if text is None:
            if allow_failure:
                return None, res
            hint = ""
            if res.rc == 127:
                hint = (f" ({self.s.xcrun!r} was not found on the Mac: install Xcode 15 or "
                        "later, or set [ios] xcrun)")
            elif "unable to find utility" in res.stderr:
                hint = " (this Xcode has no devicectl: Xcode 15 or later is needed)"
            raise self._fail(step, f"devicectl wrote no JSON output (exit code {res.rc}){hint}: "
                                   f"{(res.stderr.strip() or res.stdout.strip())[-600:]}", res)
        try:
            env = parse_envelope(text, step)
        except DevicectlError as exc:
            raise DevicectlError(f"{self.where}: {exc}", stderr_tail=res.stderr_tail(),
                                 exit_code=res.rc) from None
        if not env.ok and not allow_failure:
            raise self._fail(step, env.error or "failed", res)
        return env, res

    # -- the engine's calls -------------------------------------------------

    def prepare(self, transport: Transport) -> dict[str, Any]:
        """Step 2 (after the engine's push): the iPhone is there, paired and in
        Developer Mode; its facts."""
        env, _ = self.devicectl(transport, "find the iPhone", ["list", "devices"])
        assert env is not None
        try:
            self.device_info = find_device(env, self.udid)
        except DevicectlError as exc:
            raise DevicectlError(f"{self.profile.name}: {exc}") from None
        return {"platform": "ios", "steps": {"compute_units": self.compute_units},
                "fingerprint": {**self.device_info.fingerprint(),
                                "devicectl_version": env.version,
                                "devicectl_json_version": env.json_version}}

    def bench_tool(self) -> str | None:
        """The bench app (firmware/ios) runs every benchmark: there is no agent."""
        return "the iOS bench app"

    def check_reachable(self, transport: Transport) -> None:
        """`gem-hil devices --check`: the Mac answered; is the iPhone there too?"""
        self.prepare(transport)

    def run_tool(self, t: Transport, artifact: LocalArtifact, remote_dir: str,
                 settings: RunSettings, stage: Callable[[str, str], None]) -> ToolRun:
        """Steps 3-8 for an artifact the engine pushed to remote_dir on the Mac."""
        m = artifact.manifest
        if m.get("format") != "coreml":
            raise ConfigError(f"{self.where}: the iOS bench app runs Core ML artifacts; this "
                              f"artifact is {m.get('format')!r} (use the coreml format: the "
                              "profile's runtime = \"coreml\", no --gem-format override)")
        key = artifact.sha256[:16]
        stage("unpacking the Core ML package on the Mac", "")
        package = self._unpack(t, remote_dir, m, key)
        stage("compiling the model on the Mac", "xcrun coremlcompiler")
        staged = self._compile(t, package, remote_dir, m, key)
        stage("installing the bench app on the iPhone", self.s.app)
        self._install(t)
        stage("copying the compiled model to the iPhone", "")
        phone_dir = self._copy_to_phone(t, staged, key)
        token = uuid.uuid4().hex[:12]
        phone_record = posixpath.join(PHONE_ROOT, "records", f"{token}.json")
        args = self.app_args(phone_dir, phone_record, settings)
        stage("running the bench app", f"timed window {settings.min_duration_s:g}-"
                                       f"{settings.max_duration_s:g} s, {self.compute_units}")
        res = self._launch(t, args, settings)
        stage("collecting the record from the iPhone", "")
        out = self._collect(t, phone_record, token, res)
        return ToolRun(out, res.duration_s)

    def finish(self, transport: Transport) -> dict[str, Any]:
        return {}

    # -- the steps ------------------------------------------------------------

    def app_args(self, phone_dir: str, phone_record: str, settings: RunSettings) -> list[str]:
        """The bench app's arguments: the agent's flags (same names, same meaning) plus
        where its record goes and the compute units."""
        from harness.bench import agent_args  # the one definition of the agent's flags

        return [*agent_args(phone_dir, settings), "--compute-units", self.compute_units,
                "--record", phone_record, "--model-file", "model.mlmodelc"]

    def _unpack(self, t: Transport, remote_dir: str, m: dict[str, Any], key: str) -> str:
        step = "unpack the Core ML package"
        zip_path = posixpath.join(remote_dir, m["entrypoint"])
        package = str((m.get("coreml") or {}).get("package") or "model.mlpackage")
        if "/" in package or package in (".", "..") or not package.endswith(".mlpackage"):
            raise self._fail(step, f"manifest coreml.package {package!r} is not a plain "
                                   "*.mlpackage name; rebuild the artifact")
        dest = posixpath.join(self.root, "packages", key)
        self._fresh_dir(t, step, dest)
        # unzip refuses entries that would land outside dest (absolute, '..')
        res = t.run(["unzip", "-q", "-o", zip_path, "-d", dest], timeout_s=self.s.step_timeout_s)
        if not res.ok:
            raise self._fail(step, f"unzip {m['entrypoint']} exited {res.rc}: "
                                   f"{(res.stderr.strip() or res.stdout.strip())[-600:]}", res)
        pkg = posixpath.join(dest, package)
        if not t.run(["test", "-f", posixpath.join(pkg, "Manifest.json")], timeout_s=30).ok:
            raise self._fail(step, f"{m['entrypoint']} holds no {package}/Manifest.json; it is "
                                   "not a Core ML package (rebuild the artifact)")
        return pkg

    def _compile(self, t: Transport, package: str, remote_dir: str, m: dict[str, Any],
                 key: str) -> str:
        """model.mlmodelc + manifest + reference in one folder: what goes to the phone."""
        step = "compile the model"
        out_dir = posixpath.join(self.root, "compiled", key)
        self._fresh_dir(t, step, out_dir)
        res = self._xcrun(t, ["coremlcompiler", "compile", package, out_dir])
        try:
            compiled = compiled_model_path(res.stdout, res.stderr, res.rc, out_dir)
        except DevicectlError as exc:
            raise DevicectlError(f"{self.where}: {exc}", stderr_tail=res.stderr_tail(),
                                 exit_code=res.rc) from None
        if posixpath.basename(compiled) != "model.mlmodelc":
            self._run_ok(t, step, ["mv", "--", posixpath.join(out_dir, posixpath.basename(
                compiled)), posixpath.join(out_dir, "model.mlmodelc")])
        self._run_ok(t, step, ["cp", "--", posixpath.join(remote_dir, "manifest.json"),
                               posixpath.join(remote_dir, m["reference"]["file"]), out_dir])
        return out_dir

    def _install(self, t: Transport) -> None:
        if self._installed:
            return
        step = "install the bench app"
        if not t.run(["test", "-d", self.app_path], timeout_s=30).ok:
            raise self._fail(step, f"no app at {self.app_path} on the Mac; build firmware/ios "
                                   "there (firmware/ios/README.md) or fix [ios] app")
        env, _ = self.devicectl(t, step, ["device", "install", "app", "--device", self.udid,
                                          self.app_path])
        assert env is not None
        try:
            self._install_url = installed_app(env, self.s.bundle_id, self.app_path)
        except DevicectlError as exc:
            raise DevicectlError(f"{self.where}: {exc}") from None
        self._installed = True

    def _copy_to_phone(self, t: Transport, staged: str, key: str) -> str:
        dest = posixpath.join(PHONE_ROOT, key)
        if key not in self._on_phone:
            self.devicectl(t, "copy the model to the iPhone", [
                "device", "copy", "to", "--device", self.udid, "--domain-type",
                "appDataContainer", "--domain-identifier", self.s.bundle_id, "--source", staged,
                "--destination", dest])
            self._on_phone.add(key)
        return dest

    def _launch(self, t: Transport, args: list[str], settings: RunSettings) -> CommandResult:
        step = "run the bench app"
        try:
            env, res = self.devicectl(
                t, step, ["device", "process", "launch", "--device", self.udid, "--console",
                          "--terminate-existing"],
                tail=["--", self.s.bundle_id, *args], timeout_s=settings.timeout_s,
                allow_failure=True)
        except CommandTimeout as exc:
            raise self._fail(step, f"{exc}; {self.stop_app(t)}") from None
        except KeyboardInterrupt as exc:  # interrupts.Interrupted too: stop the app, go on
            note(exc, self.stop_app(t))
            raise
        if env is not None and not env.ok:
            raise self._fail(step, f"the launch failed: {env.error}", res)
        return res

    def _collect(self, t: Transport, phone_record: str, token: str,
                 launch: CommandResult) -> dict[str, Any]:
        step = "collect the record"
        mac_record = posixpath.join(self.root, "records", f"{token}.json")
        self._run_ok(t, step, ["mkdir", "-p", "--", posixpath.dirname(mac_record)])
        env, res = self.devicectl(t, step, [
            "device", "copy", "from", "--device", self.udid, "--domain-type", "appDataContainer",
            "--domain-identifier", self.s.bundle_id, "--source", phone_record, "--destination",
            mac_record], allow_failure=True)
        console = "\n".join((launch.stdout + launch.stderr).splitlines()[-CONSOLE_TAIL_LINES:])
        if env is None or not env.ok:
            why = env.error if env is not None else f"devicectl exited {res.rc}"
            raise DevicectlError(
                f"{self.where}: step '{step}': the bench app ended without writing its record "
                f"{phone_record} (devicectl launch exit code {launch.rc}; copy from: {why}); "
                f"it crashed or was killed mid-run. Console tail:\n{console or '(empty)'}",
                stderr_tail=console, exit_code=launch.rc)
        text = self._cat(t, mac_record)
        if text is None:
            raise self._fail(step, f"devicectl copied the record, but {mac_record} cannot be "
                                   "read on the Mac")
        try:
            return read_bench_record(text, f"{self.where}: step '{step}'")
        except DevicectlError as exc:
            if not exc.stderr_tail:
                exc.stderr_tail = console
            exc.exit_code = launch.rc
            raise

    def stop_app(self, t: Transport) -> str:
        """End the bench app on the iPhone (after devicectl was stopped on the Mac);
        say what happened, never raise: the interruption that led here matters more."""
        step = "stop the bench app"
        try:
            env, _ = self.devicectl(t, step, ["device", "info", "processes", "--device",
                                              self.udid])
            assert env is not None
            app_name = posixpath.basename(self.s.app.rstrip("/"))
            pids = app_pids(env, self._install_url, app_name)
            for pid in pids:
                self.devicectl(t, step, ["device", "process", "terminate", "--device",
                                         self.udid, "--pid", str(pid)])
        except HarnessError as exc:
            return (f"could not stop the bench app on the iPhone {self.udid} ({exc}); end it "
                    f"from the app switcher or `xcrun devicectl device process terminate`")
        if not pids:
            return f"the bench app was no longer running on the iPhone {self.udid}"
        return (f"terminated the bench app on the iPhone {self.udid} (PID "
                f"{', '.join(map(str, pids))})")

