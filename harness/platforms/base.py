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
    """What a platform's own bench tool handed back (runs_agent = False): the
    agent's JSON contract, and how long the tool ran (the record's agent_wall_s)."""

    out: dict[str, Any]
    wall_s: float


class Platform:
    """Default behaviour for a POSIX device with a Python 3 for the agent."""

    name = "posix"
    #: False: the benchmark runs in a tool of the platform's own (the iOS bench app),
    #: through run_tool(), instead of the project's agent started by agent_argv()
    runs_agent = True
    #: why such a tool takes no sequential stopping rule (the record's why_not_sequential)
    stop_rule_reason = ""

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

    def run_tool(self, transport: Transport, artifact: LocalArtifact, remote_dir: str,
                 settings: RunSettings, stage: Callable[[str, str], None]) -> ToolRun:
        """Run the benchmark of the artifact pushed to remote_dir with the platform's
        own tool (runs_agent = False only); ``stage(step, detail)`` names each step."""
        raise NotImplementedError(f"platform {self.name!r} runs the project's agent")
    def external_runner(self) -> str | None:
        """The name of a runner that times the model instead of the agent (e.g.
        Android's benchmark_model), or None: the agent runs."""
        return None

    def run_external(self, transport: Transport, manifest: dict[str, Any], remote_dir: str,
                     settings: Any) -> dict[str, Any]:
        """Run the external runner on the pushed artifact; agent-contract fields."""
        raise NotImplementedError(f"platform {self.name} has no external runner")
