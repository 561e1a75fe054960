"""Alembic environment for the history store.

Run by harness.history.store.migrate() with an open connection in
``config.attributes["connection"]`` (the store's own engine), or by the
alembic command with ``sqlalchemy.url`` set.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from harness.history.tables import Base

config = context.config


def _run(connection) -> None:
    # batch mode: SQLite cannot ALTER most things; Alembic rebuilds the table instead
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
