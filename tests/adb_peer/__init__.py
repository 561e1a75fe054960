"""An ADB-protocol device peer (an emulated Pixel 6) for the harness's tests.

See server.py for what it speaks and sandbox.py for how device paths and
Android tools are emulated on this host.
"""

from .server import AdbPeer, PeerStats

__all__ = ["AdbPeer", "PeerStats"]
