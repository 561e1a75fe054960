"""Rules of the house that code review alone would let slip."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_roots(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.add((node.module or "").split(".")[0])
    return out


def test_gem_knows_nothing_of_devices():
    offenders = [p for p in (REPO / "gem").rglob("*.py") if "harness" in imported_roots(p)]
    assert offenders == []


#: gem modules the harness may import at module level: pure Python, no torch
#: (the one sha256 and cache root, the config names, the error classes)
TORCH_FREE_GEM = {"gem.files", "gem.config", "gem.errors", "gem.compress.spec"}


def top_level_gem_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "gem"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "gem":
            out.add(node.module or "")
    return out


def test_harness_never_imports_torch_at_module_level():
    offenders = [p for p in (REPO / "harness").rglob("*.py")
                 if "torch" in imported_roots(p, top_level_only=True)
                 or top_level_gem_modules(p) - TORCH_FREE_GEM]
    assert offenders == []
    code = ("import sys; import " + ", ".join(sorted(TORCH_FREE_GEM))
            + "; print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert res.stdout.strip() == "False", res.stderr


def test_importing_the_plugin_and_cli_does_not_load_torch():
    code = ("import sys, harness.pytest_plugin, harness.cli, harness.bench; "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it comes with the test extra: pip install -e .[test])")
    res = subprocess.run([ruff, "check", "--no-cache", "."], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stdout[-5000:]
