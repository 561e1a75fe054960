"""Headless Chromium (Debian's package) for the dashboard tests: load a file,
let its scripts run, return the DOM; take a screenshot.

No network: the flags turn off every background fetch Chromium would make,
and each call gets a fresh profile folder so nothing carries over.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio"]
REPO = Path(__file__).resolve().parents[2]


def binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def unavailable_reason() -> str | None:
    if binary() is None:
        return "chromium not found: install Debian's chromium (scripts/debian-packages.txt)"
    return None


def artifacts_dir() -> Path:
    """Where tests keep screenshots: $GEM_HIL_TEST_ARTIFACTS or reports/test-artifacts."""
    d = Path(os.environ.get("GEM_HIL_TEST_ARTIFACTS") or REPO / "reports" / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run(args: list[str], timeout_s: float) -> tuple[str, float]:
    profile = tempfile.mkdtemp(prefix="gem-hil-chromium-")
    argv = [binary() or "chromium", *FLAGS, f"--user-data-dir={profile}", *args]
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         start_new_session=True, text=True)
    try:
        out, _ = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return out, time.perf_counter() - t0


def dump_dom(page: Path, timeout_s: float = 120, budget_ms: int = 20000) -> tuple[str, float]:
    """(the DOM after the page's scripts ran, wall seconds of the whole browser run)."""
    return _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()],
                timeout_s)


def screenshot(page: Path, out: Path, size: str = "1400,2000", timeout_s: float = 120) -> Path:
    _run(["--virtual-time-budget=20000", f"--window-size={size}", f"--screenshot={out}",
          page.resolve().as_uri()], timeout_s)
    return out
