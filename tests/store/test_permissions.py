"""Sijo's state is private to the user it runs as: a new data directory is 0700, and the SQLite
database (with its -wal, -shm and -journal files) and the signing key are 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sijo.signing import load_or_create_secret
from sijo.store.db import connect, migrate
from sijo.store.keys import KeyStore

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture(autouse=True)
def _umask_022() -> Iterator[None]:
    """The usual umask, under which files are created world-readable unless made otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_database_and_key_are_private(tmp_path: Path) -> None:
    data = tmp_path / "state" / "sijo"
    engine = connect(f"sqlite:///{data / 'sijo.db'}")
    migrate(engine)
    KeyStore(engine).create("ci")  # a write: the -wal and -shm files exist while a connection is open
    load_or_create_secret(data / "thinking-signing.key")
    with engine.connect():
        files = sorted(data.glob("sijo.db*"))
        assert {"sijo.db", "sijo.db-wal", "sijo.db-shm"} <= {f.name for f in files}
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    engine.dispose()
    assert mode(data) == 0o700
    assert mode(data / "thinking-signing.key") == 0o600


def test_a_rollback_journal_is_private_too(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'data' / 'sijo.db'}")
    migrate(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=DELETE")
        connection.exec_driver_sql("CREATE TABLE t (x)")
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")  # the transaction's journal is open
        journal = tmp_path / "data" / "sijo.db-journal"
        assert journal.exists() and mode(journal) == 0o600
    engine.dispose()


def test_the_signing_key_makes_its_directory_private(tmp_path: Path) -> None:
    load_or_create_secret(tmp_path / "data" / "thinking-signing.key")
    assert mode(tmp_path / "data") == 0o700


def test_an_existing_database_keeps_its_owners_permissions(tmp_path: Path) -> None:
    """A database the user made (`database_url`) is theirs: Sijo only makes new files private."""
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    engine = connect(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    assert mode(path) == 0o640
