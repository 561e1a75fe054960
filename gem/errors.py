"""Errors raised by the gem package.

gem/ knows nothing of devices and must not import harness, so it has its own
small hierarchy. Messages are written at the raise site and say what was wrong,
where (file, line, key, artifact folder) and how to fix it; the harness may
catch ``GemError`` and wrap it into its own ``ArtifactError``.
"""

from __future__ import annotations


class GemError(Exception):
    """Base of every error the gem package raises on purpose."""


class ConfigNotFoundError(GemError, ValueError):
    """get_config() was asked for a name that is not defined.

    Also a ValueError so callers that validate user input generically catch it.
    """


class DataError(GemError, ValueError):
    """A user's data file (JSONL) is malformed; the message names file and line."""


class BuildError(GemError):
    """Building an artifact failed (export, quantization, parity torch vs ONNX)."""


class ArtifactCorruptError(GemError):
    """An artifact folder on disk does not match its manifest (missing file,
    size or sha256 mismatch, unreadable manifest)."""
