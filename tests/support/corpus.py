"""The real corpus for tests, loaded once per session, or a skip naming the
missing Debian package (GEM_HIL_REQUIRE=1 turns the skip into a failure)."""

from __future__ import annotations

import functools

import pytest


def require_corpus() -> None:
    """Skip the calling test when a corpus package is not installed."""
    from gem.corpus import available

    reason = available()
    if reason:
        pytest.skip(f"needs GEM's corpus packages: {reason}")


@functools.cache
def _docs():
    from gem.corpus import load_docs

    return load_docs()


def corpus_docs():
    """Every labelled document (cached for the session); skips when absent."""
    require_corpus()
    return _docs()
