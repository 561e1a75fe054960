"""Raw samples packed for the store: float64 little-endian, zlib-compressed.

A night of 8 boards x 20 000 samples is ~1.3 MB raw; zlib brings timings
(which share their exponent and leading mantissa bits) to roughly half, and
the codec name is stored beside each blob so a later codec can coexist.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

CODEC = "zlib+float64le"


def pack(values: Sequence[float]) -> bytes:
    return zlib.compress(np.asarray(values, dtype="<f8").tobytes(), 6)


def unpack(blob: bytes, codec: str = CODEC) -> list[float]:
    if codec != CODEC:
        raise ValueError(f"unknown sample codec {codec!r} (this gem-hil reads {CODEC})")
    return np.frombuffer(zlib.decompress(blob), dtype="<f8").tolist()
