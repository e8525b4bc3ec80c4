"""The database schema, as SQLAlchemy 2 tables; migrations (`migrations/versions`) create and change it.

Times are stored as timezone-aware UTC and always come back aware, whatever the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect


class UtcDateTime(TypeDecorator[datetime]):
    """DateTime that refuses naive values and returns aware UTC ones (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("archived_at", UtcDateTime()),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # "api" | "admin"
    Column("name", String(500), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),  # SHA-256 hex of the whole key
    Column("hint", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # active | inactive | archived
    Column("workspace_id", String(64), ForeignKey("workspaces.id")),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("requests_per_minute", Integer),
    Column("input_tokens_per_minute", Integer),
    Column("output_tokens_per_minute", Integer),
)

batches = Table(
    "message_batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workspace", String(64), nullable=False),  # the owner's namespace ("default", a wrkspc_ id…)
    Column("api_key_id", String(64)),
    Column("workspace_id", String(64)),
    Column("request_count", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("cancel_initiated_at", UtcDateTime()),
    Column("ended_at", UtcDateTime()),
    Index("ix_message_batches_workspace_created", "workspace", "created_at"),
)

batch_requests = Table(
    "message_batch_requests",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("batch_id", String(64), ForeignKey("message_batches.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("custom_id", String(64), nullable=False),
    Column("params", Text, nullable=False),  # the request's JSON, validated when it runs
    Column("state", String(16), nullable=False),  # pending|running|succeeded|errored|canceled|expired
    Column("result", Text),  # the results line's `result` object, as JSON
    Column("worker", String(64)),  # which worker runs it; only that worker may write its result
    Column("lease_until", UtcDateTime()),  # a running request whose worker stopped renewing runs again
    UniqueConstraint("batch_id", "custom_id", name="uq_message_batch_requests_custom_id"),
    Index("ix_message_batch_requests_state", "state", "id"),
    Index("ix_message_batch_requests_position", "batch_id", "position"),
)

usage = Table(
    "usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False, index=True),
    Column("api_key_id", String(64)),
    Column("workspace_id", String(64)),
    Column("model", String(200), nullable=False),
    Column("service_tier", String(16), nullable=False),
    Column("uncached_input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_write_5m_tokens", BigInteger, nullable=False),
    Column("cache_write_1h_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("thinking_tokens", BigInteger, nullable=False),
    Column("web_search_requests", Integer, nullable=False),
    Index("ix_usage_api_key_at", "api_key_id", "at"),  # the Console's "last used"
)

files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workspace", String(64), nullable=False),  # the owner's namespace, as for batches
    Column("filename", String(255), nullable=False),
    Column("mime_type", String(255), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("downloadable", Boolean, nullable=False),  # produced by Sijo, not uploaded
    Column("storage_key", String(200), nullable=False),  # the bytes' path under data_dir/files
    Column("expires_at", UtcDateTime()),
    Index("ix_files_workspace_created", "workspace", "created_at", "id"),
    Index("ix_files_expires_at", "expires_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),  # who: "admin key ops (apikey_…)", never part of a key
    Column("action", String(64), nullable=False),  # what: "api_key.create", "console.sign_in", …
    Column("target", String(200)),  # the id it acted on, if any
    Column("detail", Text),  # a short description; never a secret
    Index("ix_audit_log_at", "at"),
)
