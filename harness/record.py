"""Result records: one JSON object per (device, artifact, benchmark).

Written to disk the moment a benchmark ends, so a crash later in the session
loses nothing already measured. The JSON Schema beside this module is the
published contract; every record is validated against it before it is written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.0"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@cache
def schema() -> dict[str, Any]:
    text = resources.files("harness").joinpath("schemas/result_record.schema.json").read_text()
    return json.loads(text)


@cache
def validator() -> Any:
    """The compiled record schema, built once (tens of milliseconds with the import)."""
    import jsonschema

    return jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate(record: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError with the failing path when the record is off."""
    validator().validate(record)


def schema_errors(record: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator().iter_errors(record)]


def record_filename(record: dict[str, Any]) -> str:
    art = record["artifact"]
    parts = [record["device"]["name"], f"{art['model']}-{art['variant']}",
             record["benchmark"]["name"], record["record_id"][:8]]
    return "__".join(_SAFE.sub("_", p) for p in parts) + ".json"


def write_record(record: dict[str, Any], report_dir: Path) -> Path:
    """Validate, then write atomically (tmp + rename): a reader never sees half a record."""
    validate(record)
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / record_filename(record)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@cache
def harness_git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the harness runs from; (None, None) outside git.

    Rows from many runs are only comparable when each says which code made it.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None
