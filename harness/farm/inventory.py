"""farm.toml: the farm's settings and its devices, checked at load.

    [farm]
    name = "nightly"
    targets_dir = "targets"        # device profiles, relative to this file
    report_dir = "reports"         # reports/<campaign>/ and the default SQLite store
    history = "postgresql://farm@db/farm"   # default: <report_dir>/history.sqlite

    [[device]]
    name = "pi4-lab-1"             # a device profile (targets_dir, then the usual path)
    host = "farm-host-a"           # the farm host that reaches it (workers serve theirs)
    variants = ["int8", "fp32"]    # default: the profile's [run] variant

Every error says which file, which key and which device, and how to fix it,
before any device is touched (same rules and messages as device profiles).
"""

from __future__ import annotations

import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.registry import TableContext, parse_settings, setting, unknown_keys_error


@dataclass(frozen=True)
class FarmSettings:
    """[farm]: how the farm runs its devices."""

    name: str = setting("nightly", help="campaign name (the campaign id adds the time)")
    targets_dir: str = setting("", help="folder of device profiles, relative to farm.toml "
                                        "(empty: only $GEM_HIL_TARGETS, the user folder and "
                                        "the shipped profiles)")
    report_dir: str = setting("reports", help="reports/<campaign>/ goes here, relative to "
                                              "farm.toml")
    history: str = setting("", help="history store URL: sqlite:///FILE or postgresql://...; "
                                    "empty: $GEM_HIL_HISTORY, else <report_dir>/history.sqlite")
    artifact_cache: str = setting("", help="artifact cache folder (empty: the default)")
    lease_expiry_s: float = setting(60.0, minimum=1.0, help="a lease not renewed for this "
                                                           "long is free for anyone")
    heartbeat_s: float = setting(10.0, minimum=0.1, help="how often a holder renews its lease")
    quarantine_after: int = setting(3, minimum=1, help="consecutive failed health checks "
                                                       "that put a device in quarantine (bad)")
    transport_retries: int = setting(3, minimum=0, maximum=10,
                                     help="retries of a transport error before a run "
                                          "(connect, push, health check); never of a benchmark")
    retry_backoff_s: float = setting(2.0, minimum=0.0, help="first retry's wait; doubles each "
                                                            "time")
    min_free_disk_mb: float = setting(200.0, minimum=0.0, help="health check: free space the "
                                                               "device's work folder needs")
    max_temperature_c: float = setting(85.0, help="health check: hottest thermal zone allowed "
                                                  "before a run (the profile's cooldown "
                                                  "threshold wins when set)")
    retention_days: float = setting(90.0, minimum=0.0, help="raw samples older than this are "
                                                            "pruned after a campaign (summaries "
                                                            "stay); 0 keeps them forever")
    baseline_last: int = setting(5, minimum=1, help="the regression check after each record "
                                                    "compares with this many good runs")
    device_timeout_s: float = setting(3600.0, minimum=1.0, help="a device process still "
                                                                "running after this is stopped")
    accept_new_host_key: bool = setting(False, help="trust SSH host keys seen for the first "
                                                    "time (a changed key is always refused)")

    def check(self, ctx: TableContext) -> None:
        if self.heartbeat_s >= self.lease_expiry_s:
            raise ctx.error("heartbeat_s", f"{self.heartbeat_s:g} must be below lease_expiry_s "
                                           f"({self.lease_expiry_s:g}), or every lease expires "
                                           "between two heartbeats; e.g. heartbeat_s = "
                                           f"{self.lease_expiry_s / 6:g}")


@dataclass(frozen=True)
class DeviceEntry:
    """[[device]]: one device of the farm."""

    name: str = setting(help="device profile name", example='"pi4-lab-1"')
    host: str = setting("", help="farm host that reaches the device (empty: any host / this "
                                 "one)")
    model: str = setting("", help="GEM model (empty: the profile's [run] model)")
    variants: list = setting([], help="artifact variants to run (empty: the profile's [run] "
                                      "variant)")
    budget: dict = setting({}, help="budget overrides for this device, e.g. "
                                    "{latency_p95_ms = 40}")
    enabled: bool = setting(True, help="false: listed but not run (e.g. lent out)")


@dataclass(frozen=True)
class Inventory:
    path: Path
    farm: FarmSettings
    devices: tuple[DeviceEntry, ...] = field(default_factory=tuple)

    @property
    def base(self) -> Path:
        return self.path.parent

    def resolve(self, value: str) -> Path | None:
        if not value:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    @property
    def targets_dir(self) -> Path | None:
        return self.resolve(self.farm.targets_dir)

    @property
    def report_root(self) -> Path:
        return self.resolve(self.farm.report_dir) or self.base / "reports"

    def history_url(self, override: str | None = None) -> str:
        from harness.history.store import default_url

        return override or self.farm.history or default_url(self.report_root)

    def device(self, name: str) -> DeviceEntry:
        for d in self.devices:
            if d.name == name:
                return d
        raise ConfigError(f"{self.path}: no [[device]] named {name!r}; the inventory lists "
                          f"{', '.join(d.name for d in self.devices) or '(none)'}")

    def for_host(self, host: str | None) -> list[DeviceEntry]:
        """The enabled devices a farm host serves (all when host is None)."""
        return [d for d in self.devices if d.enabled
                and (host is None or not d.host or d.host == host)]


def this_host() -> str:
    return socket.gethostname()


def load_inventory(path: Path | str, check_profiles: bool = True) -> Inventory:
    """Parse and check farm.toml; with check_profiles every device's profile loads too."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--inventory {path}: no such file; write a farm.toml "
                          "(docs/farm.md shows one)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = [k for k in raw if k not in ("farm", "device")]
    if unknown:
        raise unknown_keys_error(TableContext(path, ""), unknown, ["farm", "device"])
    farm_raw = raw.get("farm", {})
    if not isinstance(farm_raw, dict):
        raise ConfigError(f"{path}: farm must be a table: write [farm]")
    farm = parse_settings(FarmSettings, farm_raw, TableContext(path, "farm"))
    dev_raw = raw.get("device", [])
    if not isinstance(dev_raw, list) or not dev_raw:
        raise ConfigError(f"{path}: no devices; add one [[device]] table per device with "
                          'name = "<profile>"')
    devices: list[DeviceEntry] = []
    for i, d in enumerate(dev_raw, 1):
        label = f"device #{i}" + (f" ({d['name']})" if isinstance(d, dict) and
                                  isinstance(d.get("name"), str) else "")
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: [[device]] #{i} must be a table")
        entry = parse_settings(DeviceEntry, d, TableContext(path, label))
        if any(e.name == entry.name for e in devices):
            raise ConfigError(f"{path}: [{label}] name: {entry.name!r} is listed twice; "
                              "one [[device]] per device")
        devices.append(entry)
    inv = Inventory(path.resolve(), farm, tuple(devices))
    if check_profiles:
        check_devices(inv)
    return inv


def check_devices(inv: Inventory) -> None:
    """Every enabled device's profile loads and its variants and budgets are known."""
    from harness.budgets import parse_budget_override
    from harness.profiles import VARIANTS, load_profile

    targets = inv.targets_dir
    if targets is not None and not targets.is_dir():
        raise ConfigError(f"{inv.path}: [farm] targets_dir: {targets} is not a folder")
    for d in inv.devices:
        where = f"{inv.path}: [device {d.name}]"
        try:
            load_profile(d.name, targets, check_files=False)
        except ConfigError as exc:
            raise ConfigError(f"{where} name: {exc}") from None
        for v in d.variants:
            if v not in VARIANTS:
                raise ConfigError(f"{where} variants: {v!r} is not one of "
                                  f"{', '.join(VARIANTS)}")
        for k, v in d.budget.items():
            try:
                parse_budget_override(f"{k}={v}")
            except ConfigError as exc:
                raise ConfigError(f"{where} budget: {exc}") from None


def options_for(inv: Inventory, entry: DeviceEntry, variant: str | None) -> dict[str, Any]:
    """The RunPlan option values (harness.plan OPTIONS dests) for one device run."""
    return {
        "device": entry.name,
        "targets_dir": str(inv.targets_dir) if inv.targets_dir else None,
        "report_dir": str(inv.report_root),
        "budget": [f"{k}={v}" for k, v in entry.budget.items()],
        "gem_model": entry.model or None,
        "gem_variant": variant,
        "artifact_cache": str(inv.resolve(inv.farm.artifact_cache))
        if inv.farm.artifact_cache else None,
        "accept_new_host_key": inv.farm.accept_new_host_key,
    }
