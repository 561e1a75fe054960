"""What the Mac's tools print, read: devicectl's JSON, coremlcompiler, the bench record.

The iOS platform (harness/platforms/ios.py) drives an iPhone through Xcode's
command-line tools on a Mac; everything it learns comes back as text, and
every reading is here so that it can be tested against recordings
(tests/data/ios/) without a Mac:

* ``xcrun devicectl ... --json-output FILE`` writes one JSON envelope per
  command: ``info`` (commandType, jsonVersion, outcome "success" | "failed",
  devicectl's version) and either ``result`` or ``error`` (an NSError as JSON:
  domain, code, userInfo with NSLocalizedDescription / FailureReason /
  RecoverySuggestion strings and an NSUnderlyingError chain). devicectl's
  documented machine interface is that file, never its stdout.
* ``xcrun coremlcompiler compile PKG OUTDIR`` prints the compiled model's path
  on success and ``coremlc: error: ...`` (or ``coremlcompiler: error:``) on
  failure.
* The bench app (firmware/ios) writes the same JSON object the on-device agent
  prints (harness/schemas/agent_output.schema.json), which is checked here
  before the engine reads it.

Apple does not publish devicectl's JSON schema. The field names used here are
the ones its output carries in public captures (jsonVersion 2, devicectl 348
to 477); parsers are strict about what they need and say which field was
missing, so a new devicectl that renames one fails with a message naming it
rather than with a wrong number.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlparse

from harness.errors import AgentError


class DevicectlError(AgentError):
    """A devicectl/coremlcompiler output that says the step failed, or that cannot be read."""


@dataclass(frozen=True)
class Envelope:
    """One devicectl --json-output file."""

    command_type: str
    outcome: str
    version: str | None
    json_version: int | None
    result: dict[str, Any] | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.outcome == "success" and self.result is not None


def error_text(err: Any) -> str:
    """An NSError as JSON, flattened to one readable line: every description,
    failure reason and recovery suggestion down the NSUnderlyingError chain."""
    parts: list[str] = []
    seen = 0
    while isinstance(err, dict) and seen < 10:
        seen += 1
        info = err.get("userInfo") or {}
        for key in ("NSLocalizedDescription", "NSDescription", "NSLocalizedFailureReason",
                    "NSLocalizedRecoverySuggestion"):
            value = info.get(key)
            text = value.get("string") if isinstance(value, dict) else value
            if isinstance(text, str) and text.strip() and text.strip() not in parts:
                parts.append(text.strip())
        if not parts and "domain" in err:
            parts.append(f"{err.get('domain')} error {err.get('code')}")
        under = info.get("NSUnderlyingError")
        err = under.get("error") if isinstance(under, dict) else None
    return " ".join(p if p.endswith((".", "?", "!")) else p + "." for p in parts) or \
        "devicectl reported a failure without a description."


def parse_envelope(text: str, step: str) -> Envelope:
    """The envelope of one devicectl JSON output, or DevicectlError naming the step."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DevicectlError(f"step '{step}': devicectl's --json-output is not JSON ({exc}); "
                             f"it starts {text[:200]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("info"), dict):
        raise DevicectlError(f"step '{step}': devicectl's --json-output has no 'info' object; "
                             "is this devicectl (Xcode 15 or later)?")
    info = data["info"]
    outcome = str(info.get("outcome", ""))
    result = data.get("result") if isinstance(data.get("result"), dict) else None
    error = error_text(data["error"]) if "error" in data else None
    if outcome not in ("success", "failed"):
        raise DevicectlError(f"step '{step}': devicectl's info.outcome is {outcome!r}; "
                             "expected 'success' or 'failed'")
    if outcome == "failed" and error is None:
        error = "devicectl reported outcome 'failed' without an error object."
    jv = info.get("jsonVersion")
    return Envelope(str(info.get("commandType", "")), outcome,
                    str(info["version"]) if "version" in info else None,
                    int(jv) if isinstance(jv, int) else None, result, error)


# -- list devices -----------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """What `devicectl list devices` says of one device."""

    udid: str
    identifier: str
    name: str | None
    marketing_name: str | None
    product_type: str | None
    hardware_model: str | None
    platform: str | None
    reality: str | None
    os_version: str | None
    os_build: str | None
    cpu_type: str | None
    pairing_state: str | None
    developer_mode: str | None
    tunnel_state: str | None
    transport_type: str | None

    def fingerprint(self) -> dict[str, Any]:
        return {"udid": self.udid, "coredevice_identifier": self.identifier, "name": self.name,
                "model": self.marketing_name, "product_type": self.product_type,
                "hardware_model": self.hardware_model, "platform": self.platform,
                "reality": self.reality, "os_version": self.os_version,
                "os_build": self.os_build, "cpu_type": self.cpu_type,
                "pairing_state": self.pairing_state, "developer_mode": self.developer_mode,
                "tunnel_state": self.tunnel_state, "transport_type": self.transport_type}


def _str(d: Any, key: str) -> str | None:
    value = d.get(key) if isinstance(d, dict) else None
    return str(value) if value is not None else None


def list_devices(env: Envelope) -> list[DeviceInfo]:
    """Every device of a `devicectl list devices` result."""
    devices = (env.result or {}).get("devices")
    if not isinstance(devices, list):
        raise DevicectlError("step 'find the iPhone': devicectl list devices: result.devices "
                             "is missing")
    out = []
    for d in devices:
        if not isinstance(d, dict):
            continue
        hw = d.get("hardwareProperties") or {}
        dp = d.get("deviceProperties") or {}
        cp = d.get("connectionProperties") or {}
        cpu = hw.get("cpuType") if isinstance(hw.get("cpuType"), dict) else {}
        out.append(DeviceInfo(
            udid=_str(hw, "udid") or "", identifier=_str(d, "identifier") or "",
            name=_str(dp, "name"), marketing_name=_str(hw, "marketingName"),
            product_type=_str(hw, "productType"), hardware_model=_str(hw, "hardwareModel"),
            platform=_str(hw, "platform"), reality=_str(hw, "reality"),
            os_version=_str(dp, "osVersionNumber"), os_build=_str(dp, "osBuildUpdate"),
            cpu_type=_str(cpu, "name"), pairing_state=_str(cp, "pairingState"),
            developer_mode=_str(dp, "developerModeStatus"),
            tunnel_state=_str(cp, "tunnelState"), transport_type=_str(cp, "transportType")))
    return out


def find_device(env: Envelope, udid: str) -> DeviceInfo:
    """The device with that UDID (or CoreDevice identifier), ready to run an app;
    otherwise a DevicectlError that says what is wrong and how to fix it."""
    devices = list_devices(env)
    want = udid.upper()
    found = [d for d in devices if want in (d.udid.upper(), d.identifier.upper())]
    if not found:
        seen = ", ".join(f"{d.name or '?'} ({d.udid or d.identifier})" for d in devices)
        raise DevicectlError(
            f"step 'find the iPhone': no device with UDID {udid} among the {len(devices)} "
            f"device(s) the Mac sees ({seen or 'none'}); connect the iPhone by cable, unlock "
            "it and tap Trust, then check `xcrun devicectl list devices` on the Mac, or fix "
            "[ios] udid in the profile")
    dev = found[0]
    if dev.pairing_state != "paired":
        raise DevicectlError(
            f"step 'find the iPhone': {dev.name or udid} ({udid}) is not paired with this Mac "
            f"(pairingState {dev.pairing_state!r}); unlock the iPhone, tap Trust on its "
            "prompt, or pair it once from Xcode (Window > Devices and Simulators)")
    if dev.developer_mode not in ("enabled", None):
        raise DevicectlError(
            f"step 'find the iPhone': Developer Mode is {dev.developer_mode!r} on "
            f"{dev.name or udid} ({udid}); turn it on in Settings > Privacy & Security > "
            "Developer Mode (the iPhone restarts), then run again")
    return dev


# -- install, launch, processes -------------------------------------------------------


def installed_app(env: Envelope, bundle_id: str, app_path: str) -> str | None:
    """The installation URL of the bench app `devicectl device install app` installed,
    or DevicectlError when it installed another bundle (the profile's bundle_id would
    then launch nothing)."""
    apps = (env.result or {}).get("installedApplications")
    if not isinstance(apps, list) or not apps:
        raise DevicectlError("step 'install the bench app': devicectl installed nothing "
                             "(result.installedApplications is empty)")
    ids = [str(a.get("bundleID")) for a in apps if isinstance(a, dict)]
    for a in apps:
        if isinstance(a, dict) and a.get("bundleID") == bundle_id:
            url = a.get("installationURL")
            return str(url) if url else None
    raise DevicectlError(
        f"step 'install the bench app': {app_path} installed bundle {', '.join(ids)}, but "
        f"[ios] bundle_id is {bundle_id!r}; set bundle_id to the app's CFBundleIdentifier "
        "(firmware/ios/README.md) or rebuild the app with that identifier")


def launched_pid(env: Envelope) -> int | None:
    """The PID `devicectl device process launch` reports (result.process)."""
    proc = (env.result or {}).get("process")
    pid = proc.get("processIdentifier") if isinstance(proc, dict) else None
    return int(pid) if isinstance(pid, int) else None


def url_path(url: str) -> str:
    """The path of a file:// URL (devicectl writes executables and bundles as URLs)."""
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else url


def app_pids(env: Envelope, install_url: str | None, app_name: str) -> list[int]:
    """PIDs of the bench app among `devicectl device info processes`' running processes:
    executables inside the installed bundle, or (no install URL known) inside a bundle
    named ``app_name`` (``GemBench.app``)."""
    procs = (env.result or {}).get("runningProcesses")
    if not isinstance(procs, list):
        raise DevicectlError("step 'stop the bench app': devicectl device info processes: "
                             "result.runningProcesses is missing")
    bundle = url_path(install_url).rstrip("/") + "/" if install_url else None
    pids = []
    for p in procs:
        if not isinstance(p, dict) or not isinstance(p.get("processIdentifier"), int):
            continue
        exe = url_path(str(p.get("executable") or ""))
        # /private/var and /var are the same folder on iOS: compare without /private
        exe_n = exe.removeprefix("/private")
        if bundle is not None:
            if exe_n.startswith(bundle.removeprefix("/private")):
                pids.append(int(p["processIdentifier"]))
        elif f"/{app_name}/" in exe_n:
            pids.append(int(p["processIdentifier"]))
    return sorted(pids)


# -- coremlcompiler ---------------------------------------------------------------------

_COMPILER_ERROR = re.compile(r"^(?:coremlc|coremlcompiler):\s*(?:error|Error):?\s*(.*)$", re.M)


def compiled_model_path(stdout: str, stderr: str, rc: int, out_dir: str) -> str:
    """The .mlmodelc `xcrun coremlcompiler compile PKG OUTDIR` wrote, or why it did not."""
    errors = _COMPILER_ERROR.findall(stderr + "\n" + stdout)
    if rc != 0 or errors:
        detail = "; ".join(e.strip() for e in errors if e.strip()) or \
            (stderr.strip() or stdout.strip())[-600:] or f"exit code {rc}"
        if rc == 127 or "unable to find utility" in stderr:
            detail += (" (xcrun cannot find coremlcompiler: install Xcode, not only the "
                       "Command Line Tools, and select it with xcode-select -s or [ios] "
                       "developer_dir)")
        raise DevicectlError(f"step 'compile the model': coremlcompiler failed (exit code "
                             f"{rc}): {detail}")
    paths = [ln.strip() for ln in stdout.splitlines() if ln.strip().endswith(".mlmodelc")]
    if not paths:
        raise DevicectlError(f"step 'compile the model': coremlcompiler exited 0 but printed "
                             f"no .mlmodelc path: {stdout.strip()[-300:]!r}")
    path = paths[-1].rstrip("/")
    name = posixpath.basename(path)
    # coremlcompiler prints an absolute path; out_dir is relative to the login's home
    if posixpath.dirname(path) != out_dir.rstrip("/") and \
            not path.endswith(f"/{out_dir.strip('/')}/{name}"):
        raise DevicectlError(f"step 'compile the model': coremlcompiler wrote {path}, not into "
                             f"{out_dir}")
    return path


# -- the bench app's record ---------------------------------------------------------------


@cache
def _agent_output_validator() -> Any:
    import jsonschema

    text = resources.files("harness").joinpath("schemas/agent_output.schema.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def agent_output_problems(out: Any) -> list[str]:
    """Where an agent-contract JSON object (agent or bench app) breaks the schema."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in _agent_output_validator().iter_errors(out)]


def read_bench_record(text: str, where: str) -> dict[str, Any]:
    """The bench app's record as the engine reads the agent's: one JSON object in
    the agent's contract. An error record (ok: false) becomes the app's own error."""
    try:
        out = json.loads(text)
    except ValueError as exc:
        raise DevicectlError(f"{where}: the bench app's record is not JSON ({exc}); it "
                             f"starts {text[:200]!r}") from None
    if not isinstance(out, dict):
        raise DevicectlError(f"{where}: the bench app's record is not a JSON object")
    if out.get("ok") is False:
        err = out.get("error") if isinstance(out.get("error"), dict) else {}
        raise DevicectlError(f"{where}: the bench app failed ({err.get('kind', '?')}): "
                             f"{err.get('message', '(no message)')}",
                             stderr_tail=str(err.get("traceback_tail") or ""))
    problems = agent_output_problems(out)
    if problems:
        raise DevicectlError(f"{where}: the bench app's record breaks the agent contract "
                             f"(harness/schemas/agent_output.schema.json): "
                             + "; ".join(problems[:5]))
    return out
