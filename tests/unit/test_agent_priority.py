"""The agent's real-time priority for its timing thread: applied when allowed,
recorded either way, and undone after the measurements (run in a child
process, so this test process never changes its own scheduling)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AGENT_DIR = Path(__file__).resolve().parents[2] / "firmware" / "agent"

PROBE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import gem_agent as a
prio = None if sys.argv[2] == "none" else int(sys.argv[2])
sched = a.raise_priority(prio)
during = os.sched_getscheduler(0)
a.restore_priority(sched)
print(json.dumps({"sched": {k: v for k, v in sched.items() if k != "previous_policy"},
                  "during": during, "after": os.sched_getscheduler(0),
                  "fifo": os.SCHED_FIFO, "other": os.SCHED_OTHER}))
"""


def probe(priority: str) -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE, str(AGENT_DIR), priority],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(res.stdout)




def test_not_requested_changes_nothing():
    out = probe("none")
    assert out["sched"] == {"policy": None, "priority": None, "applied": False,
                            "reason": "not requested"}
    assert out["during"] == out["other"] == out["after"]


def test_invalid_priority_is_recorded_not_raised():
    out = probe("0")  # SCHED_FIFO priorities are 1-99: the kernel refuses 0
    assert out["sched"]["applied"] is False
    assert "refused" in out["sched"]["reason"] or "one CPU" in out["sched"]["reason"]
    assert out["during"] == out["other"]


def test_applied_then_restored():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs: the agent refuses a real-time priority on one")
    out = probe("10")
    if os.geteuid() != 0:
        # unprivileged: whether it applies depends on RLIMIT_RTPRIO; either way
        # the record must say which, and a refusal must leave the policy alone
        if not out["sched"]["applied"]:
            assert "CAP_SYS_NICE" in out["sched"]["reason"]
            assert out["during"] == out["other"]
            return
    assert out["sched"] == {"policy": "SCHED_FIFO", "priority": 10, "applied": True,
                            "reason": None}
    assert out["during"] == out["fifo"]
    assert out["after"] == out["other"]
