"""Exception hierarchy.

Every error a user can cause or meet says what was wrong, where (file, key,
device) and how to fix it, so messages are built at the raise site and the
classes only group them for callers that want to react by kind.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class ConfigError(HarnessError):
    """A profile, budget or command-line value is wrong."""


class UnknownDeviceError(ConfigError):
    """--device named a profile that does not exist."""


class UnknownMetricError(ConfigError):
    """A budget names a metric the harness does not measure."""


class TransportError(HarnessError):
    """Talking to the device failed."""


class ConnectError(TransportError):
    """The device could not be reached (refused, unreachable, timed out)."""


class HostKeyError(TransportError):
    """The device's host key is unknown or does not match known_hosts."""


class AuthError(TransportError):
    """The device refused our credentials."""


class CommandTimeout(TransportError):
    """A command on the device did not finish in its timeout."""


class TransferError(TransportError):
    """A pushed or pulled file did not arrive intact (size or sha256 mismatch)."""


class AgentError(HarnessError):
    """The on-device agent failed or printed something that is not a record.

    Carries the device's stderr tail and exit code as data, so the failure
    record keeps them without re-parsing the message."""

    def __init__(self, message: str, stderr_tail: str = "", exit_code: int | None = None
                 ) -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.exit_code = exit_code


class ArtifactError(HarnessError):
    """Building or loading a model artifact failed."""
