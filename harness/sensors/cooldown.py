"""Wait for the device to cool down before a run, for a bounded time.

A board that just finished the previous benchmark starts the next one hot and
throttles sooner, so back-to-back runs are not comparable. The wait is bounded:
a device in a hot room must not hang the farm; it runs anyway and the record
says the threshold was not reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CooldownResult:
    threshold_c: float
    timeout_s: float
    reached: bool | None  # None: no temperature reading at all
    waited_s: float
    start_temp_c: float | None
    end_temp_c: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cooldown(read_temp_c: Callable[[], float | None], threshold_c: float,
             timeout_s: float = 120.0, poll_s: float = 2.0,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> CooldownResult:
    """Poll read_temp_c until it is below threshold_c or timeout_s has passed.

    clock and sleep are injectable so tests run a simulated cooling curve in
    microseconds instead of minutes.
    """
    if timeout_s < 0 or poll_s <= 0:
        raise ValueError(f"need timeout_s >= 0 and poll_s > 0 (got {timeout_s}, {poll_s})")
    t0 = clock()
    first = temp = read_temp_c()
    if first is None:
        return CooldownResult(threshold_c, timeout_s, None, 0.0, None, None,
                              "no temperature sensor: cooldown skipped")
    while temp is not None and temp >= threshold_c:
        waited = clock() - t0
        if waited >= timeout_s:
            return CooldownResult(threshold_c, timeout_s, False, waited, first, temp,
                                  f"still {temp:.1f} °C after {waited:.0f} s (threshold "
                                  f"{threshold_c:g} °C): running anyway; improve cooling "
                                  "or raise cooldown_timeout_s")
        sleep(min(poll_s, max(0.0, timeout_s - waited)))
        temp = read_temp_c()
    waited = clock() - t0
    if temp is None:
        return CooldownResult(threshold_c, timeout_s, None, waited, first, None,
                              "the temperature sensor stopped answering during cooldown")
    return CooldownResult(threshold_c, timeout_s, True, waited, first, temp,
                          f"{temp:.1f} °C < {threshold_c:g} °C after {waited:.1f} s")
