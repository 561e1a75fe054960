"""History store URLs: a file path or sqlite:///FILE, or postgresql://... (psycopg 3).

Light on purpose (no SQLAlchemy): the CLI checks a URL before anything opens it.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import ConfigError


def normalize_url(url: str) -> str:
    """A bare path is a SQLite file; postgresql:// means psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{Path(url).resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise ConfigError(f"history URL {redact(url)}: expected sqlite:///FILE, a file path "
                          "or postgresql://USER@HOST:PORT/DB")
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"
