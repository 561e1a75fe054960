"""The Platform contract used by the bench engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.artifacts import LocalArtifact
    from harness.profiles import DeviceProfile, RunSettings
    from harness.transports.base import Transport


@dataclass(frozen=True)
class ToolRun:
    """What a platform's own bench tool handed back (bench_tool() is not None):
    the agent's JSON contract, and how long the tool ran (the record's agent_wall_s)."""

    out: dict[str, Any]
    wall_s: float


class Platform:
    """Default behaviour for a POSIX device with a Python 3 for the agent."""

    name = "posix"
    #: why the platform's bench tool takes no sequential stopping rule (the record's
    #: why_not_sequential); only read when bench_tool() names one
    stop_rule_reason = ""
    #: the profile's sensors are read around a bench tool's run: True where the link's
    #: machine is the device (Android's sysfs and dumpsys), False where it is not (the
    #: Mac in front of an iPhone)
    tool_reads_sensors = True

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile

    def prepare(self, transport: Transport) -> dict[str, Any]:
        """Condition the device before a run; returns what was done (for the
        fingerprint), so a reader knows the state the numbers were taken in."""
        return {}

    def agent_argv(self, agent_remote: str, args: Sequence[str]) -> list[str]:
        return [self.profile.run.python, agent_remote, *args]

    def stale_agent_argv(self, agent_remote: str) -> list[str] | None:
        """The command that ends an agent an earlier, vanished harness left running
        (see LinuxPlatform), or None where agents are not supervised."""
        return None

    def finish(self, transport: Transport) -> dict[str, Any]:
        """Undo conditioning after a run; returns extra facts for the record."""
        return {}

    def bench_tool(self) -> str | None:
        """The platform's own tool that times the model instead of the project's agent
        (Android's benchmark_model, the iOS bench app), by name, or None: the agent
        runs. One hook for every such tool, so the engine has one path for them."""
        return None

    def run_tool(self, transport: Transport, artifact: LocalArtifact, remote_dir: str,
                 settings: RunSettings, stage: Callable[[str, str], None]) -> ToolRun:
        """Run the benchmark of the artifact pushed to remote_dir with bench_tool()
        (called only when it names one); ``stage(step, detail)`` names each step."""
        raise NotImplementedError(f"platform {self.name!r} runs the project's agent")
