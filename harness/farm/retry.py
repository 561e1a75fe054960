"""Bounded retries with exponential backoff, for transport errors only.

A dropped SSH connection while connecting, pushing or checking health is the
link's fault and worth another try. A benchmark is never retried: its
failure is a recorded data point, and re-running it until it passes would
turn a flaky device into a good number.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from harness.errors import HostKeyError, TransportError

T = TypeVar("T")


def with_retries(fn: Callable[[], T], retries: int, backoff_s: float,
                 on_retry: Callable[[int, BaseException, float], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """fn(), retried up to `retries` more times on TransportError (not on a host
    key mismatch: that is a security refusal, not a flaky link)."""
    attempt = 0
    while True:
        try:
            return fn()
        except HostKeyError:
            raise
        except TransportError as exc:
            if attempt >= retries:
                raise
            wait = backoff_s * (2 ** attempt)
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            sleep(wait)
