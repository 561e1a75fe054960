"""Linux boards (Pi 4, NPU boards, the QEMU VM, this host).

The agent reports kernel, governor and CPU itself, in the same process that
takes the samples, so the Linux platform needs no extra round trips.

The agent is supervised: it gets ``--watchdog-stdin`` (it exits within the
agent's WATCHDOG_PERIOD_S, 2 s, of the harness's end of its stdin closing: a
SIGKILLed harness, a dropped SSH session) and a lease (``--pid-file`` beside the
agent), which the next run hands to ``--stop-stale`` so an agent that outlived
its harness anyway (a link lost without the board's sshd noticing) is ended
before a new one starts.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from harness.platforms.base import Platform

#: The lease file's name, in the folder the agent was pushed to.
LEASE_NAME = "gem_agent.pid"


def lease_path(agent_remote: str) -> str:
    return posixpath.join(posixpath.dirname(agent_remote), LEASE_NAME)


class LinuxPlatform(Platform):
    name = "linux"

    def agent_argv(self, agent_remote: str, args: Sequence[str]) -> list[str]:
        return [self.profile.run.python, agent_remote, "--watchdog-stdin",
                "--pid-file", lease_path(agent_remote), *args]

    def stale_agent_argv(self, agent_remote: str) -> list[str] | None:
        # no lease (the last agent ended cleanly): answer from the shell, so the
        # common case costs no interpreter start on the device
        return ["sh", "-c", _STALE_SCRIPT, "sh", lease_path(agent_remote), self.profile.run.python,
                agent_remote]


#: $1 = lease, $2 = python, $3 = agent. Prints the agent's --stop-stale JSON line.
_STALE_SCRIPT = r"""if [ ! -e "$1" ]; then
  echo '{"ok": true, "mode": "stop_stale", "ended": [], "notes": []}'; exit 0
fi
exec "$2" "$3" --stop-stale --pid-file "$1"
"""
