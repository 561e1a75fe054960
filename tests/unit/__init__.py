"""Unit tests: no root, no network, no real device."""
