"""Run the peer as its own process (inside a network namespace, or for the
push benchmark): python -m tests.adb_peer --sandbox DIR --authorized-key K.pub

Prints "ADB_PEER_LISTENING <host>:<port>" once it accepts connections and
runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .server import AdbPeer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.adb_peer")
    ap.add_argument("--sandbox", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--authorized-key", type=Path, action="append", default=[])
    ap.add_argument("--no-auth", action="store_true")
    ap.add_argument("--accept-prompt", action="store_true")
    args = ap.parse_args(argv)
    peer = AdbPeer(args.sandbox, args.authorized_key, host=args.host, port=args.port,
                   accept_prompt=args.accept_prompt, require_auth=not args.no_auth)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    peer.start()
    print(f"ADB_PEER_LISTENING {peer.host}:{peer.port}", flush=True)
    done.wait()
    peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
