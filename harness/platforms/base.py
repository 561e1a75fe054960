"""The Platform contract used by the bench engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.profiles import DeviceProfile
    from harness.transports.base import Transport


class Platform:
    """Default behaviour for a POSIX device with a Python 3 for the agent."""

    name = "posix"

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

    def external_runner(self) -> str | None:
        """The name of a runner that times the model instead of the agent (e.g.
        Android's benchmark_model), or None: the agent runs."""
        return None

    def run_external(self, transport: Transport, manifest: dict[str, Any], remote_dir: str,
                     settings: Any) -> dict[str, Any]:
        """Run the external runner on the pushed artifact; agent-contract fields."""
        raise NotImplementedError(f"platform {self.name} has no external runner")
