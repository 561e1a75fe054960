"""The agent names ARM cores from /proc/cpuinfo (what a Pi 4 prints)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "firmware" / "agent" / "gem_agent.py"
PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def load_agent():
    spec = importlib.util.spec_from_file_location("gem_agent_under_test", AGENT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pi4_cpuinfo_names_the_board_and_core(monkeypatch):
    agent = load_agent()
    monkeypatch.setattr(agent, "read_text",
                        lambda p: PI4_CPUINFO if p == "/proc/cpuinfo" else None)
    facts = agent.host_facts()
    assert facts["cpu_model"] == "Cortex-A72"
    assert facts["cpu_part"] == "0xd08"
    assert facts["board"] == "Raspberry Pi 4 Model B Rev 1.4"


def test_x86_cpuinfo_keeps_its_model_name(monkeypatch):
    agent = load_agent()
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\n"
    monkeypatch.setattr(agent, "read_text", lambda p: text if p == "/proc/cpuinfo" else None)
    facts = agent.host_facts()
    assert facts["cpu_model"] == "Intel(R) Xeon(R) CPU" and facts["cpu_part"] is None


def test_bare_arm_cpuinfo_maps_the_part_number(monkeypatch):
    agent = load_agent()
    bare = "\n".join(ln for ln in PI4_CPUINFO.splitlines()
                     if not ln.startswith(("Hardware", "Model", "Revision")))
    monkeypatch.setattr(agent, "read_text", lambda p: bare if p == "/proc/cpuinfo" else None)
    assert agent.host_facts()["cpu_model"] == "Cortex-A72"
