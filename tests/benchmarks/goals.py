"""One way for every benchmark script to print a figure beside its goal.

A speed goal that is only written in the docs is a figure nobody checks: each
script prints ``<figure>  (goal <= X: PASS)`` on the line of the figure, and
ends with the number of goals met (see docs/performance.md for the goals).
"""

from __future__ import annotations


def met(value: float, goal: float, direction: str) -> bool:
    """direction "max": value must stay at or under goal; "min": at or over it."""
    if direction not in ("max", "min"):
        raise ValueError(f"direction {direction!r} must be 'max' or 'min'")
    return value <= goal if direction == "max" else value >= goal


def judge(value: float, goal: float, direction: str, unit: str = "") -> str:
    """``(goal <= 300 ms: PASS)``: what to print beside the figure."""
    sign = "<=" if direction == "max" else ">="
    return f"(goal {sign} {goal:g}{unit}: {'PASS' if met(value, goal, direction) else 'FAIL'})"


def word(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
