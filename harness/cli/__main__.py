"""`python -m harness.cli ...` is `gem-hil ...`."""

from harness.cli import entry

entry()
