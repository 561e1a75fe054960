"""Helpers the tests share: real components and artifacts they stand on.

``sshd_board``: a real OpenSSH sshd on loopback standing in for an SSH board
(also a command line: ``python -m tests.support.sshd_board --help``).
``onnx_artifact``: a tiny real ONNX artifact written without torch.

This file imports nothing, so ``python -m tests.support.sshd_board`` runs the
module once (as __main__) and not a second time through the package.
"""
