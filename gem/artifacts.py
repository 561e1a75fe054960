"""Build, cache and verify GEM artifacts (the folder a device receives).

An artifact is a folder holding ``manifest.json`` (what the on-device agent
reads), ``reference.json`` (inputs + host outputs for parity checks) and the
model file(s) (``model.onnx``, possibly ``model.onnx.data``). The manifest
follows the published schema gem/schemas/artifact_manifest.schema.json
(gem/manifest.py): write_manifest() refuses to write one that does not,
load_manifest() refuses to read one.

Caching: the folder is keyed by a content hash of everything that determines
its bytes -- the gem/ package sources, the model config, variant, format, seed,
train steps and the versions of the packages that format's build uses
(gem.export.FORMAT_PACKAGES: torch/onnx/onnxscript/onnxruntime for onnx,
torch/litert-torch/ai-edge-litert/ai-edge-quantizer for tflite, torch/coremltools
for coreml). Computing the
key reads files and ``importlib.metadata`` only, so a cache hit never imports
torch and costs milliseconds (plus hashing the model files to detect
corruption). Builds happen in a temporary folder that is atomically renamed
into place, so a crash never leaves a half artifact that looks valid; a
corrupted cached artifact is detected by its sha256 and rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gem.config import get_config
from gem.errors import ArtifactCorruptError, BuildError
from gem.export import FORMAT_PACKAGES, FORMATS, BuildProgress
from gem.files import cache_root, sha256_file
from gem.manifest import MANIFEST_VERSION, manifest_problem

log = logging.getLogger(__name__)

KEY_VERSION = 1  # bump when the key recipe itself changes
REFERENCE_LENGTHS = (16, 32, 64, 128)
_PKG_DIR = Path(__file__).resolve().parent


def default_cache_dir() -> Path:
    """$GEM_HIL_CACHE/artifacts, else ~/.cache/gem-hil/artifacts."""
    return cache_root() / "artifacts"


def _package_versions(fmt: str = "onnx") -> dict[str, str]:
    out = {}
    for name in FORMAT_PACKAGES[fmt]:
        if name == "rknn-toolkit2":  # not in this environment: see gem.export.rknn
            from gem.export.rknn import toolkit_version

            out[name] = toolkit_version()
            continue
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _source_digests() -> dict[str, str]:
    """sha256 of every .py file of the gem package, by path relative to it."""
    return {
        p.relative_to(_PKG_DIR).as_posix(): sha256_file(p)
        for p in sorted(_PKG_DIR.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _corpus_fingerprint() -> dict[str, list[int]] | str:
    from gem.corpus import CorpusMissingError, fingerprint

    try:
        return fingerprint()
    except CorpusMissingError:
        return "missing"  # the build itself then fails, naming the package


def _validate(model: str, variant: str, fmt: str) -> None:
    get_config(model)  # raises ValueError listing names
    if fmt not in FORMATS:
        raise ValueError(
            f"unknown artifact format {fmt!r}; available: {', '.join(sorted(FORMATS))}"
        )
    if variant not in FORMATS[fmt]:
        raise ValueError(
            f"unknown variant {variant!r} for format {fmt}; available: {', '.join(FORMATS[fmt])}"
        )


def artifact_key(
    model: str = "tiny",
    variant: str = "int8",
    fmt: str = "onnx",
    seed: int = 0,
    train_steps: int | None = None,
) -> str:
    """Content hash (hex sha256) identifying the artifact these inputs build.

    ``train_steps=None`` means the config's default (``GemConfig.train_steps``)
    and gives the same key as passing that number explicitly.
    """
    _validate(model, variant, fmt)
    if train_steps is None:
        train_steps = get_config(model).train_steps
    recipe = {
        "key_version": KEY_VERSION,
        "sources": _source_digests(),
        "config": get_config(model).to_dict(),
        "variant": variant,
        "format": fmt,
        "seed": seed,
        "train_steps": train_steps,
        "versions": _package_versions(fmt),
        "corpus": _corpus_fingerprint(),
    }
    from gem.compress.spec import is_compressed, parse_variant

    if is_compressed(variant):  # every compression setting, not only the name, keys the cache
        recipe["compression"] = parse_variant(variant).to_dict()
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def files_digest(files: list[dict[str, Any]]) -> str:
    """The artifact's identity: sha256 over ``name\\0sha256\\n`` of the files sorted by name."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["name"]):
        h.update(f"{f['name']}\0{f['sha256']}\n".encode())
    return h.hexdigest()


def load_manifest(folder: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read ``folder/manifest.json``, check it against the published schema and
    (``verify``) every listed file's size and sha256 and the artifact digest.
    Raises ArtifactCorruptError naming the folder, the file, the key and the
    mismatch."""
    folder = Path(folder)
    path = folder / "manifest.json"
    fix = "delete the folder; build_artifact() rebuilds it"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactCorruptError(f"{path}: missing ({fix})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactCorruptError(f"{path}: not valid JSON: {exc} ({fix})") from None
    problem = manifest_problem(manifest, path)
    if problem:
        raise ArtifactCorruptError(f"{problem} ({fix})")
    files = manifest["files"]
    ref = manifest["reference"]
    if not verify:
        return manifest
    checked = list(files)
    if "sha256" in ref:  # the reference file is verified like the model files
        checked.append(
            {"name": ref["file"], "sha256": ref["sha256"], "size_bytes": ref.get("size_bytes")}
        )
    for f in checked:
        p = folder / f["name"]
        if not p.is_file():
            raise ArtifactCorruptError(
                f"{folder}: file {f['name']} listed in manifest is missing ({fix})"
            )
        size = p.stat().st_size
        if size != f.get("size_bytes"):
            raise ArtifactCorruptError(
                f"{p}: size {size} bytes, manifest says {f.get('size_bytes')} ({fix})"
            )
        digest = sha256_file(p)
        if digest != f.get("sha256"):
            raise ArtifactCorruptError(
                f"{p}: sha256 {digest[:16]}... does not match manifest "
                f"{str(f.get('sha256'))[:16]}... ({fix})"
            )
    if manifest.get("sha256") != files_digest(files):
        raise ArtifactCorruptError(f"{path}: artifact sha256 does not match its files ({fix})")
    return manifest


@contextlib.contextmanager
def _lock(cache_dir: Path, key: str) -> Iterator[None]:
    """Serialise builds of one key across processes (a farm builds in parallel)."""
    lock_dir = cache_dir / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"{key[:32]}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(folder: Path, key: str) -> bool:
    """True when ``folder`` holds a valid artifact for ``key``; a corrupt one is removed."""
    if not folder.exists():
        return False
    try:
        manifest = load_manifest(folder)
        if manifest.get("build", {}).get("cache_key") != key:
            raise ArtifactCorruptError(f"{folder}: manifest cache_key does not match {key[:16]}...")
        return True
    except ArtifactCorruptError as exc:
        log.warning("cached artifact is corrupt, rebuilding: %s", exc)
        trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}")
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return False


def build_artifact(
    model: str = "tiny",
    variant: str = "int8",
    fmt: str = "onnx",
    cache_dir: Path | None = None,
    seed: int = 0,
    train_steps: int | None = None,
    external_data: bool = False,
    progress: BuildProgress | None = None,
) -> Path:
    """Return the artifact folder for these inputs, building it on a cache miss.

    ``progress(stage, done, total)`` hears the build's stages and training
    steps (see gem.export.BuildProgress); it is never called on a cache hit.

    ``external_data=True`` stores weights in ``model.onnx.data`` (a two-file
    artifact); it is part of neither the key nor the defaults because it does
    not change what the model computes, only how it is laid out, so it is kept
    in a separate folder name.
    """
    if train_steps is None:
        _validate(model, variant, fmt)
        train_steps = get_config(model).train_steps
    key = artifact_key(model, variant, fmt, seed, train_steps)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    layout = "-ext" if external_data else ""
    folder = cache_dir / f"{model}-{variant}-{fmt}{layout}-{key[:20]}"
    if _cached(folder, key):
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _lock(cache_dir, key):
        if _cached(folder, key):  # another process built it while we waited
            return folder
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".tmp-{folder.name}-"))
        tmp.chmod(0o755)  # mkdtemp makes it 0700; artifacts are not secret
        try:
            common = {"model": model, "variant": variant, "seed": seed,
                      "train_steps": train_steps, "cache_key": key,
                      "versions": _package_versions(fmt), "progress": progress}
            if fmt == "tflite":
                if external_data:
                    raise ValueError("external_data applies to ONNX only; a .tflite is one file")
                from gem.export.build_tflite import build_tflite_artifact

                build_tflite_artifact(tmp, **common)
            elif fmt == "coreml":
                if external_data:
                    raise ValueError("external_data applies to ONNX only; a Core ML "
                                     "package keeps its weights in its own folder")
                from gem.export.build_coreml import build_coreml_artifact

                build_coreml_artifact(tmp, **common)
            elif fmt == "rknn":
                if external_data:
                    raise ValueError("external_data applies to ONNX only")
                from gem.export.build_rknn import build_rknn_artifact

                build_rknn_artifact(tmp, **common)
            else:
                from gem.export.build_onnx import build_onnx_artifact

                build_onnx_artifact(tmp, external_data=external_data, **common)
            load_manifest(tmp)  # what we wrote must verify before it becomes visible
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Check ``manifest`` against the published schema, then write folder/manifest.json.

    A manifest that fails is a bug in its writer (an export backend), so it
    is a BuildError naming the key, and nothing is written: a half-valid
    manifest would pass the cache and fail on the device.
    """
    path = Path(folder) / "manifest.json"
    problem = manifest_problem(manifest, path)
    if problem:
        raise BuildError(f"refusing to write an artifact manifest that breaks its schema: "
                         f"{problem} (fix the export backend that built it)")
    write_json(path, manifest)
    return path


def write_json(path: Path, obj: Any) -> None:
    """Write JSON with a trailing newline (stable bytes: sorted nothing, fixed indent)."""
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


def describe_files(folder: Path, names: list[str]) -> list[dict[str, Any]]:
    """Manifest ``files`` entries for ``names`` inside ``folder``."""
    return [
        {"name": n, "sha256": sha256_file(folder / n), "size_bytes": (folder / n).stat().st_size}
        for n in names
    ]


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = [
    "MANIFEST_VERSION",
    "BuildError",
    "artifact_key",
    "build_artifact",
    "default_cache_dir",
    "files_digest",
    "load_manifest",
    "write_manifest",
]
