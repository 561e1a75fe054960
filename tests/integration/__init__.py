"""Integration tests against real components (sshd, ADB peer, QEMU)."""
