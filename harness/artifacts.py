"""Model artifacts as the harness sees them: a folder with a manifest.

Building goes through gem (and torch) only on a cache miss, and only when
asked: loading an existing artifact imports no torch, so a device-only run does
not pay for it. Loading checks the manifest against its published schema,
gem/schemas/artifact_manifest.schema.json: it lives in gem beside the writer
(gem must not import harness; the harness may use gem), and gem.manifest,
which checks it, is torch-free. See that module's docstring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import progress
from harness.errors import ArtifactError


@dataclass(frozen=True)
class LocalArtifact:
    folder: Path
    manifest: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.manifest["sha256"]

    @property
    def label(self) -> str:
        return f"{self.manifest['model']}-{self.manifest['variant']}"

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.manifest["files"]

    @property
    def size_bytes(self) -> int:
        return sum(int(f["size_bytes"]) for f in self.files) + sum(
            (self.folder / name).stat().st_size for name in ("manifest.json",
                                                              self.manifest["reference"]["file"]))

    def upload_list(self) -> list[tuple[Path, str | None]]:
        """Every file the device needs, with its known sha256 where the manifest has it."""
        out: list[tuple[Path, str | None]] = [(self.folder / f["name"], f["sha256"])
                                              for f in self.files]
        ref = self.manifest["reference"]
        out.append((self.folder / ref["file"], ref.get("sha256")))
        out.append((self.folder / "manifest.json", None))
        return out


def load_artifact(folder: Path, *, checked: bool = False) -> LocalArtifact:
    """Read folder/manifest.json and check it against its schema (hashes: when pushed).

    checked=True: gem has just checked this manifest (its build writes only valid
    ones, its cache hit reads it through the same schema), so it is not checked
    twice on every run's path.
    """
    from gem.manifest import manifest_problem  # torch-free; harness never imports gem at the top

    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the artifact manifest ({exc.strerror}); "
                            "build it with `gem-hil build`") from None
    except ValueError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}); rebuild the artifact") from None
    problem = None if checked else manifest_problem(manifest, path)
    if problem:
        raise ArtifactError(f"{problem}; rebuild the artifact (gem-hil build)")
    return LocalArtifact(Path(folder), manifest)


def build_artifact(model: str, variant: str, fmt: str = "onnx",
                   cache_dir: Path | None = None) -> LocalArtifact:
    """Build (or fetch from the content-hash cache) the GEM artifact.

    A build shows its stages and training steps on stderr (harness.progress);
    a cache hit prints nothing."""
    try:
        from gem.artifacts import build_artifact as gem_build
    except ImportError as exc:
        raise ArtifactError(
            f"building a {model}-{variant} {fmt} artifact needs the build extra ({exc}); "
            "install torch==2.13.0 first, then: pip install -e '.[build]'"
        ) from None
    from gem.errors import GemError

    try:
        with progress.task(f"build {model}-{variant} ({fmt})") as shown:
            folder = gem_build(model=model, variant=variant, fmt=fmt, cache_dir=cache_dir,
                               progress=shown)
    except (ValueError, GemError) as exc:
        raise ArtifactError(f"cannot build {model}-{variant} ({fmt}): {exc}") from None
    except OSError as exc:  # the cache folder: unwritable, full, or not a folder
        raise ArtifactError(f"cannot build {model}-{variant} ({fmt}): {exc}; check the "
                            "artifact cache folder (--artifact-cache or $GEM_HIL_CACHE)") \
            from None
    return load_artifact(folder, checked=True)  # gem checked it when it built or found it


def format_for_runtime(runtime: str) -> str:
    """The artifact format a runtime consumes, as its registration says."""
    from harness.registry import registry

    return str(registry.get("runtime", runtime).options["artifact_format"])


def validate_artifact(art: LocalArtifact) -> dict[str, Any] | None:
    """What this host can check of an artifact it cannot run, beyond its hashes:
    for Core ML, reload the package (unzipped to a temp folder) and compare its
    I/O, enumerated shapes, size and MIL op inventory with the manifest (gem
    checks the same when it builds; this covers a cached or copied folder).
    None for formats the host runs (their parity is the check)."""
    if art.manifest["format"] != "coreml":
        return None
    from gem.errors import GemError

    try:
        from gem.export.coreml import validate_artifact as validate_coreml

        return validate_coreml(art.folder, art.manifest)
    except GemError as exc:
        raise ArtifactError(f"{art.folder}: Core ML validation failed: {exc}") from None
