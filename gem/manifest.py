"""The artifact manifest's published contract: a JSON Schema, checked where written and read.

Where the schema lives, and why here: the manifest is written by gem
(gem/export/*, through :func:`gem.artifacts.write_manifest`) and read by gem
(gem/artifacts.py), by the harness (harness/artifacts.py) and by the on-device
agent. gem must not import harness (gem knows nothing of devices; a test
enforces it), while the harness already depends on gem to build artifacts. So
the schema sits beside its writer, as ``gem/schemas/artifact_manifest.schema.json``
(package data of the wheel, like harness/schemas/result_record.schema.json
for records), and the harness imports this module when it loads an artifact.
This module imports only the standard library at import time (jsonschema when
it first checks), never torch, so a device-only run with a cached artifact
still does not pay for it. The agent on the device stays stdlib-only and
checks just the keys it reads; it receives only manifests that passed here.

A problem is reported as one line naming the manifest file, the failing key
(a JSON path such as ``files/0/size_bytes``) and what that key must be, so a
person can open the file and fix or rebuild it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

MANIFEST_VERSION = 1
SCHEMA_RESOURCE = "schemas/artifact_manifest.schema.json"

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}


@cache
def schema() -> dict[str, Any]:
    """The published schema (read once from the package's data)."""
    return json.loads(resources.files("gem").joinpath(SCHEMA_RESOURCE).read_text("utf-8"))


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def _key(path: Any) -> str:
    return "/".join(str(p) for p in path)


def _describe(error: Any) -> list[str]:
    """``key 'a/b' must be ...`` lines for one jsonschema error, in the schema's own words."""
    if error.validator == "required":  # one line per missing key, not per error
        return [f"key '{_key([*error.absolute_path, k])}' is missing"
                for k in error.validator_value if k not in error.instance]
    key = f"key '{_key(error.absolute_path)}'" if error.absolute_path else "the manifest"
    got = error.instance
    shown = (json.dumps(got)[:60] if isinstance(got, str | int | float | bool)
             else _JSON_TYPES.get(type(got), type(got).__name__))
    if error.validator == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return [f"{key} must be of type {want}, got {shown}"]
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    if hint and error.validator in ("pattern", "const", "enum"):
        return [f"{key} {hint}, got {shown}"]
    return [f"{key}: {error.message}"]


def manifest_errors(manifest: Any) -> list[str]:
    """Every schema violation, one ``key '...' ...`` line each, outermost first."""
    errors = sorted(_validator().iter_errors(manifest),
                    key=lambda e: (len(e.absolute_path), _key(e.absolute_path)))
    return list(dict.fromkeys(line for e in errors for line in _describe(e)))


def manifest_problem(manifest: Any, path: str | Path) -> str | None:
    """The first violation as ``PATH: key '...' ...`` (plus how many more), or None.

    Callers raise their own error type with it (gem: BuildError on write,
    ArtifactCorruptError on read; the harness: ArtifactError) and add their fix.
    Checks the schema and what a schema cannot say: the entrypoint is one of
    the listed files.
    """
    errors = manifest_errors(manifest)
    if not errors and manifest["entrypoint"] not in [f["name"] for f in manifest["files"]]:
        errors = [f"key 'entrypoint' ({manifest['entrypoint']!r}) must name one of 'files'"]
    if not errors:
        return None
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{path}: {errors[0]}{more}"
