"""The device farm: every device of an inventory, each in its own process,
every night, into the history store (docs/farm.md).

inventory   farm.toml: the farm's settings and its devices
leases      who holds a device, renewed by heartbeat, expiring when not
health      LAVA's good/unknown/bad/maintenance and the check before each run
retry       bounded retries with backoff for transport errors (never for numbers)
device_run  the per-device process: lease, health, build, push, benchmarks
campaign    the parent: one process per device, live progress, the campaign row
queue       procrastinate over PostgreSQL: one queue per farm host
"""
