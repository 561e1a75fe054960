"""Farm parts without devices: inventory errors, leases, health states, retries."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("sqlalchemy", reason="needs the farm extra: pip install gem-hil[farm]")

from harness.errors import AgentError, ConfigError, HostKeyError, TransportError  # noqa: E402
from harness.farm import health, leases  # noqa: E402
from harness.farm.inventory import load_inventory  # noqa: E402
from harness.farm.retry import with_retries  # noqa: E402
from harness.history.store import open_store  # noqa: E402


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "h.sqlite"))
    yield s
    s.close()


def write(tmp_path, text):
    p = tmp_path / "farm.toml"
    p.write_text(text)
    return p


def test_inventory_loads_with_defaults(tmp_path):
    inv = load_inventory(write(tmp_path, '[farm]\nname = "n"\n[[device]]\nname = "local"\n'
                                         '[[device]]\nname = "pi4"\nhost = "h2"\n'
                                         'variants = ["fp32"]\n'))
    assert [d.name for d in inv.devices] == ["local", "pi4"]
    assert inv.farm.lease_expiry_s == 60 and inv.report_root == tmp_path / "reports"
    assert inv.history_url().endswith("reports/history.sqlite")
    assert [d.name for d in inv.for_host("h2")] == ["local", "pi4"]
    assert [d.name for d in inv.for_host("h1")] == ["local"]


@pytest.mark.parametrize("text,where", [
    ('[farm]\nlease_expiry = 5\n[[device]]\nname = "local"\n', "[farm] unknown key(s) "
     "lease_expiry (did you mean lease_expiry_s?)"),
    ('[[device]]\nname = "local"\nvariants = ["int9"]\n', "[device local] variants: 'int9'"),
    ('[[device]]\nname = "nope"\n', "[device nope] name"),
    ('[[device]]\nname = "local"\n[[device]]\nname = "local"\n', "listed twice"),
    ('[farm]\nheartbeat_s = 60\nlease_expiry_s = 30\n[[device]]\nname = "local"\n',
     "[farm] heartbeat_s"),
    ('[farm]\n', "no devices"),
    ('[[device]]\nhost = "x"\n', "[device #1] name: missing"),
    ('[[device]]\nname = "local"\nbudget = {latency_p96_ms = 3}\n', "[device local] budget"),
    ('[farm\n', "not valid TOML"),
])
def test_inventory_errors_name_file_key_device(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_inventory(path)
    msg = str(e.value)
    assert str(path) in msg and where in msg, msg


def test_missing_inventory(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_inventory(tmp_path / "farm.toml")


def test_lease_exclusive_until_expiry(store):
    assert leases.acquire(store, "d", "A", expiry_s=0.5)
    assert not leases.acquire(store, "d", "B", expiry_s=0.5)
    assert leases.acquire(store, "d", "A", expiry_s=0.5)  # the holder may re-take it
    assert leases.renew(store, "d", "A", 0.5) and not leases.renew(store, "d", "B", 0.5)
    time.sleep(0.7)
    assert not leases.renew(store, "d", "A", 0.5)  # expired: lost, not silently kept
    assert leases.acquire(store, "d", "B", expiry_s=5)
    assert leases.state(store, "d").holder == "B" and leases.state(store, "d").active
    assert not leases.release(store, "d", "A")  # not A's to release
    assert leases.release(store, "d")  # forced
    assert leases.state(store, "d").holder is None


def test_keeper_reports_a_lost_lease(store):
    lost = []
    assert leases.acquire(store, "d", "A", expiry_s=2)
    keeper = leases.LeaseKeeper(store, "d", "A", 2, 0.1, lost.append).start()
    time.sleep(0.3)
    assert not lost and leases.state(store, "d").active
    leases.release(store, "d")  # `gem-hil farm release d`
    deadline = time.monotonic() + 3
    while not lost and time.monotonic() < deadline:
        time.sleep(0.05)
    keeper.stop()
    assert lost and "lease lost" in lost[0] and keeper.lost == lost[0]


def test_health_states_and_quarantine(store):
    bad = health.HealthResult(False, True, ["unreachable: no route"])
    assert health.record(store, "d", health.HealthResult(True), 3) == "good"
    assert health.record(store, "d", bad, 3) == "unknown"
    assert health.record(store, "d", bad, 3) == "unknown"
    assert health.record(store, "d", bad, 3) == "bad"
    row = store.device("d")
    assert row.health_failures == 3 and "quarantined after 3" in row.health_note
    health.set_health(store, "d", "unknown", "returned")
    assert store.device("d").health_failures == 0
    health.record(store, "d", bad, 3)
    assert health.record(store, "d", health.HealthResult(True), 3) == "good"
    assert store.device("d").health_failures == 0  # a pass resets the count
    health.set_health(store, "d", "maintenance", "lent out")
    health.mark_unknown(store, "d", "transport error")
    assert store.device("d").health == "maintenance"  # a person's decision stays


def test_retries_transport_errors_only():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransportError("connection reset")
        return "ok"

    assert with_retries(flaky, 3, 0.5, sleep=waits.append) == "ok"
    assert waits == [0.5, 1.0]  # doubling backoff
    with pytest.raises(TransportError):
        with_retries(lambda: (_ for _ in ()).throw(TransportError("down")), 2, 0.1,
                     sleep=waits.append)
    assert waits[2:] == [0.1, 0.2]  # bounded: 2 retries then the error
    for exc in (HostKeyError("changed key"), AgentError("crashed")):
        n = []

        def once(exc=exc, n=n):
            n.append(1)
            raise exc

        with pytest.raises(type(exc)):
            with_retries(once, 5, 0, sleep=waits.append)
        assert len(n) == 1  # a refused host key or an agent's failure is never retried


@pytest.mark.parametrize("argv", [["farm"], ["farm", "run"], ["farm", "release", "--inventory",
                                                              "x.toml"],
                                  ["farm", "worker", "--inventory", "x.toml"]])
def test_farm_usage_errors_exit_64(argv, capsys):
    from harness.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 64


def test_worker_needs_postgresql(tmp_path, capsys):
    from harness.cli import main

    inv = write(tmp_path, '[[device]]\nname = "local"\n')
    assert main(["farm", "worker", "--inventory", str(inv), "--host-name", "h"]) == 3
    assert "need a PostgreSQL history store" in capsys.readouterr().err
