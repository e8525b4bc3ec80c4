"""The database: an SQLAlchemy engine for the configured URL, migrated to the latest schema at start.

SQLite (the default, a file under the data directory) runs in WAL mode with a busy timeout, so the
server's request handlers and its batch worker write without "database is locked"; PostgreSQL is
used as given. A new SQLite database and its directory are private to the user Sijo runs as. Calls
are synchronous and short; async callers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def connect(url: str) -> Engine:
    """An engine for `url` (a `sqlite:///` file that does not exist yet is created private)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
            _create_private(Path(parsed.database))
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _create_private(path: Path) -> None:
    """The database file made 0600 in a 0700 directory, unless they exist: it holds key digests,
    the prompts and results of batches, and usage. SQLite gives the `-wal`, `-shm` and `-journal`
    files it makes beside a database the main file's permissions, so they are private too."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # An empty file is an empty SQLite database.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # an existing database keeps the permissions its owner gave it


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (several processes starting at once take turns on PostgreSQL)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7235001)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
