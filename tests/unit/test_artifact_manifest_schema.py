"""The artifact manifest's published JSON Schema, checked where written and where read.

Readers are gem.artifacts.load_manifest (the cache) and harness.artifacts.load_artifact
(what a device receives); the writer is gem.artifacts.write_manifest (every export
backend). Each broken manifest below must be refused by all three with a message
naming the manifest file and the failing key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gem.artifacts import load_manifest, write_manifest
from gem.errors import ArtifactCorruptError, BuildError
from gem.manifest import manifest_errors, manifest_problem, schema
from harness.artifacts import LocalArtifact, load_artifact
from harness.errors import ArtifactError

REPO = Path(__file__).resolve().parents[2]


def test_schema_is_a_valid_published_draft_2020_12_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema())
    on_disk = json.loads((REPO / "gem/schemas/artifact_manifest.schema.json").read_text())
    assert schema() == on_disk and schema()["title"] == "gem-hil artifact manifest"
    package_data = (REPO / "pyproject.toml").read_text()
    assert 'gem = ["schemas/*.json"]' in package_data  # it travels in the wheel


def test_fixture_artifact_manifest_is_valid(fixture_artifact: LocalArtifact) -> None:
    assert manifest_errors(fixture_artifact.manifest) == []
    assert load_artifact(fixture_artifact.folder).manifest == fixture_artifact.manifest


def test_real_built_tiny_artifact_manifest_is_valid() -> None:
    pytest.importorskip("torch", reason="building GEM tiny needs torch (pip install torch==2.13.0)")
    pytest.importorskip("onnx", reason="building GEM tiny needs onnx")
    from gem.artifacts import build_artifact
    from tests.support.corpus import require_corpus

    require_corpus()

    folder = build_artifact("tiny", "int8")  # the cache the device tests share
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest_errors(manifest) == []
    assert manifest_problem(manifest, folder / "manifest.json") is None
    assert load_manifest(folder) == manifest  # gem's reader, hashes included
    art = load_artifact(folder)  # the harness's reader
    assert art.label == "tiny-int8" and art.manifest["build"]["cache_key"]


def _drop(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        target = m
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return edit


def _set(value: Any, *keys: str | int) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        target = m
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


BROKEN = {
    "missing entrypoint": (_drop("entrypoint"), "key 'entrypoint' is missing"),
    "missing reference file": (_drop("reference", "file"), "key 'reference/file' is missing"),
    "missing inputs": (_drop("inputs"), "key 'inputs' is missing"),
    "size as a string": (_set("1234", "files", 0, "size_bytes"),
                         "key 'files/0/size_bytes' must be of type integer, got \"1234\""),
    "files as an object": (_set({}, "files"), "key 'files' must be of type array, got an object"),
    "atol as a string": (_set("1e-4", "reference", "atol"),
                         "key 'reference/atol' must be of type number"),
    "wrong version": (_set(2, "manifest_version"), "key 'manifest_version' must be 1"),
    "unknown format": (_set("gguf", "format"), "key 'format' must be one of onnx, tflite"),
    "escaping name": (_set("../model.onnx", "files", 0, "name"),
                      "key 'files/0/name' must be a plain file name"),
    "entrypoint not a file": (_set("other.onnx", "entrypoint"),
                              "key 'entrypoint' ('other.onnx') must name one of 'files'"),
}


@pytest.fixture
def broken_copy(fixture_artifact: LocalArtifact, tmp_path: Path,
                request: pytest.FixtureRequest) -> tuple[Path, str]:
    edit, expected = BROKEN[request.param]
    folder = tmp_path / "broken"
    folder.mkdir()
    for f in fixture_artifact.folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    manifest = copy.deepcopy(fixture_artifact.manifest)
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, expected


@pytest.mark.parametrize("broken_copy", list(BROKEN), indirect=True)
def test_broken_manifest_is_refused_by_both_readers(broken_copy: tuple[Path, str]) -> None:
    folder, expected = broken_copy
    path = folder / "manifest.json"
    with pytest.raises(ArtifactError) as harness_exc:
        load_artifact(folder)
    with pytest.raises(ArtifactCorruptError) as gem_exc:
        load_manifest(folder, verify=False)
    for exc in (harness_exc.value, gem_exc.value):
        assert str(exc).startswith(f"{path}: {expected}"), str(exc)
    assert "rebuild" in str(harness_exc.value)


@pytest.mark.parametrize("broken_copy", list(BROKEN), indirect=True)
def test_broken_manifest_is_never_written(broken_copy: tuple[Path, str], tmp_path: Path) -> None:
    folder, expected = broken_copy
    manifest = json.loads((folder / "manifest.json").read_text())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match="refusing to write") as exc:
        write_manifest(out, manifest)
    assert f"{out / 'manifest.json'}: {expected}" in str(exc.value)
    assert not (out / "manifest.json").exists()


def test_several_problems_are_counted(fixture_artifact: LocalArtifact) -> None:
    manifest = copy.deepcopy(fixture_artifact.manifest)
    del manifest["model"]
    manifest["files"][0]["sha256"] = "not-hex"
    problem = manifest_problem(manifest, "x/manifest.json")
    assert problem == "x/manifest.json: key 'model' is missing (and 1 more problem(s))"
    assert manifest_errors(manifest)[1].startswith(
        "key 'files/0/sha256' must be a lower-case hex sha256")
