"""The databases tests run against: SQLite always, PostgreSQL too when SIJO_TEST_DATABASE_URL is set
(`.ci/run` sets it). Each use gets an empty database: a new SQLite file, or a new PostgreSQL schema
(dropped afterwards), so tests never see each other's rows."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

POSTGRES = os.environ.get("SIJO_TEST_DATABASE_URL")
KINDS = ["sqlite", "postgresql"] if POSTGRES else ["sqlite"]


@contextmanager
def empty_database(kind: str, tmp: Path) -> Iterator[str]:
    """An SQLAlchemy URL of an empty database of `kind`."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'sijo-{secrets.token_hex(4)}.db'}"
        return
    assert POSTGRES is not None
    schema = f"sijo_test_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES else "?"
    try:
        yield f"{POSTGRES}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
