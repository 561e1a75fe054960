"""gem-hil: the device-agnostic engine and pytest plugin.

Nothing here imports torch at module import time: a run against a device whose
artifact is already cached must not pay for it.
"""

__version__ = "0.1.0"
