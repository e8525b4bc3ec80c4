"""The database layer on real databases (SQLite, and PostgreSQL when configured): migrations from
an empty database, keys, the usage ledger, and the batch store's exactly-once bookkeeping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from sijo.store.audit import AuditLog
from sijo.store.batches import BatchStore, Owner
from sijo.store.db import connect, downgrade, migrate
from sijo.store.keys import KeyLimits, KeyStore
from sijo.store.ledger import UsageLedger
from sijo.usage import UsageRecord
from tests.databases import KINDS, empty_database

TABLES = {
    "alembic_version",
    "api_keys",
    "audit_log",
    "files",
    "message_batch_requests",
    "message_batches",
    "usage",
    "workspaces",
}
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OWNER = Owner("wrkspc_a", "wrkspc_a", "apikey_a")
LEASE = timedelta(seconds=15)


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with empty_database(request.param, tmp_path) as url:
        engine = connect(url)
        migrate(engine)
        yield engine
        engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_migrations_build_the_schema_from_empty_and_back(kind: str, tmp_path: Path) -> None:
    with empty_database(kind, tmp_path) as url:
        engine = connect(url)
        assert set(inspect(engine).get_table_names()) == set()
        migrate(engine)
        assert set(inspect(engine).get_table_names()) == TABLES
        migrate(engine)  # a second start finds nothing to do
        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        migrate(engine)
        assert set(inspect(engine).get_table_names()) == TABLES
        engine.dispose()


def test_keys_are_stored_hashed_and_verified_by_kind_and_status(database: Engine) -> None:
    store = KeyStore(database)
    key, secret = store.create("ci", workspace="team-a", limits=KeyLimits(requests_per_minute=7))
    admin, admin_secret = store.create("ops", kind="admin")
    with database.connect() as connection:
        stored = connection.exec_driver_sql("SELECT key_hash, hint FROM api_keys").all()
    assert all(secret not in row.key_hash and secret != row.hint for row in stored)
    assert store.verify(secret, "api") == key
    assert key.limits.requests_per_minute == 7 and key.workspace_id is not None
    assert store.workspace_name(key.workspace_id) == "team-a"
    assert store.verify(secret, "admin") is None  # an API key is not an admin key
    assert store.verify(admin_secret, "admin") == admin
    assert store.verify(secret + "x", "api") is None
    store.update(key.id, status="inactive")
    assert store.verify(secret, "api") is None
    assert [k.id for k in store.list(kind="api")] == [key.id]
    assert store.find("ci") is not None and store.any("api")


def test_ledger_returns_the_records_in_a_range(database: Engine) -> None:
    ledger = UsageLedger(database)
    records = [
        UsageRecord(NOW + timedelta(minutes=m), "apikey_a", None, "claude-sonnet-4-6", "standard", 10 * m, m)
        for m in range(5)
    ]
    for record in records:
        ledger.record(record)
    assert ledger.records(NOW + timedelta(minutes=1), NOW + timedelta(minutes=3)) == records[1:3]


def _batch(store: BatchStore, count: int) -> str:
    rows = [(f"r{i}", json.dumps({"i": i})) for i in range(count)]
    return store.create(OWNER, rows, NOW, NOW + timedelta(hours=24)).id


def test_each_request_is_answered_once_even_across_a_crash(database: Engine) -> None:
    store = BatchStore(database)
    batch_id = _batch(store, 3)
    first = store.claim("w1", NOW, LEASE)
    second = store.claim("w1", NOW, LEASE)
    assert first is not None and second is not None and first.custom_id == "r0"
    assert store.complete(first, "w1", "succeeded", '{"type":"succeeded"}', NOW)
    # the process dies with r1 running: while its lease holds nothing happens; once it lapses, r1 runs again
    assert store.recover(NOW + LEASE) == 0
    assert store.recover(NOW + LEASE + timedelta(seconds=1)) == 1
    again = store.claim("w2", NOW, LEASE)
    assert again is not None and again.custom_id == "r1"
    # the dead worker's write
    assert not store.complete(second, "w1", "succeeded", '{"type":"succeeded"}', NOW)
    assert store.complete(again, "w2", "errored", '{"type":"errored"}', NOW)
    last = store.claim("w2", NOW, LEASE)
    assert last is not None and store.claim("w2", NOW, LEASE) is None
    assert store.complete(last, "w2", "succeeded", '{"type":"succeeded"}', NOW)
    batch = store.get(batch_id, OWNER.workspace)
    assert batch is not None and batch.ended_at == NOW
    assert batch.counts == {"succeeded": 2, "errored": 1}
    assert [custom_id for custom_id, _ in store.results(batch_id, chunk=2)] == ["r0", "r1", "r2"]


def test_a_live_worker_keeps_its_requests(database: Engine) -> None:
    store = BatchStore(database)
    _batch(store, 1)
    assert store.claim("w", NOW, LEASE) is not None
    later = NOW + timedelta(seconds=10)
    store.renew("w", [], later, LEASE)  # renews only the requests it names
    store.renew("w", [1], later, LEASE)
    assert store.recover(NOW + LEASE + timedelta(seconds=1)) == 0  # renewed: still leased
    assert store.recover(later + LEASE + timedelta(seconds=1)) == 1


def test_two_requests_finishing_at_once_end_their_batch(database: Engine) -> None:
    """Each completion locks the batch, so the last one to commit sees the other and ends it."""
    import threading

    store = BatchStore(database)
    for _ in range(10):
        batch_id = _batch(store, 2)
        claimed = [store.claim("w", NOW, LEASE), store.claim("w", NOW, LEASE)]
        threads = [
            threading.Thread(target=store.complete, args=(c, "w", "succeeded", "{}", NOW)) for c in claimed
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        batch = store.get(batch_id, OWNER.workspace)
        assert batch is not None and batch.ended_at is not None


def test_cancel_and_expiry_settle_only_unstarted_requests(database: Engine) -> None:
    store = BatchStore(database)
    canceled = _batch(store, 3)
    running = store.claim("w", NOW, LEASE)
    assert running is not None
    batch = store.cancel(canceled, OWNER.workspace, NOW)
    assert batch is not None and batch.ended_at is None and batch.counts == {"canceled": 2, "running": 1}
    store.complete(running, "w", "succeeded", '{"type":"succeeded"}', NOW)
    batch = store.get(canceled, OWNER.workspace)
    assert batch is not None and batch.ended_at == NOW
    expiring = _batch(store, 2)
    assert store.expire(NOW + timedelta(hours=23)) == 0
    assert store.expire(NOW + timedelta(hours=24)) == 1
    batch = store.get(expiring, OWNER.workspace)
    assert batch is not None and batch.counts == {"expired": 2} and batch.ended_at is not None
    assert [json.loads(r) for _, r in store.results(expiring)] == [{"type": "expired"}] * 2


def test_batches_belong_to_their_workspace(database: Engine) -> None:
    store = BatchStore(database)
    batch_id = _batch(store, 1)
    assert store.get(batch_id, "other") is None
    assert store.ids("other") == [] and store.ids(OWNER.workspace) == [batch_id]
    assert store.cancel(batch_id, "other", NOW) is None
    assert not store.delete(batch_id, "other")
    assert [custom_id for custom_id, _ in store.results(batch_id)] == ["r0"]  # nothing of it deleted
    assert store.delete(batch_id, OWNER.workspace) and store.get(batch_id, OWNER.workspace) is None


def test_the_audit_log_keeps_actions_newest_first(database: Engine) -> None:
    log = AuditLog(database)
    log.record("admin key ...abcd", "console.sign_in")
    log.record("admin key ...abcd", "api_key.create", "apikey_1", "name 'ci'")
    entries = log.latest()
    assert [e.action for e in entries] == ["api_key.create", "console.sign_in"]
    assert entries[0].target == "apikey_1" and entries[0].at.tzinfo is not None


def test_workspaces_count_their_keys_and_last_use_comes_from_the_ledger(database: Engine) -> None:
    store = KeyStore(database)
    key, _ = store.create("one", workspace="team-a")
    store.create("two", workspace="team-a")
    store.create("ops", kind="admin", workspace="team-b")
    assert [(w.name, w.keys) for w in store.workspaces()] == [("team-a", 2), ("team-b", 0)]
    ledger = UsageLedger(database)
    for minutes in (5, 1):
        at = NOW - timedelta(minutes=minutes)
        ledger.record(UsageRecord(at, key.id, key.workspace_id, "claude-sonnet-4-6", "standard", 1, 1))
    assert ledger.last_used() == {key.id: NOW - timedelta(minutes=1)}
