"""The harness's own tests, a package so helpers are imported by one name.

Test modules import their helpers as packages (``from tests.support.sshd_board
import SshdBoard``, ``from tests.adb_peer import AdbPeer``), never through a
sys.path entry: with this file (and one in each test folder) pytest puts only
the repository root on sys.path, and ``python -m tests.support.sshd_board`` or
``python -m tests.adb_peer`` work from the repository root too.
"""
