"""The history store: every campaign, run, raw sample and failure of the farm.

SQLAlchemy 2 over a SQLite file by default (one host, nothing to run) or
PostgreSQL by URL (several farm hosts sharing one database). The schema is
created and upgraded by the Alembic migrations shipped in this package
(harness/history/migrations), never by ``create_all``, so a store written by an
older gem-hil is upgraded in place rather than silently diverging.

Modules: store (HistoryStore, open_store), tables (the schema), baseline (the
gate's baseline from the store), samples (the raw-sample codec), url (URL
checks, importable without SQLAlchemy).
"""
