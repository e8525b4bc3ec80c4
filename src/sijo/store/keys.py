"""API keys and admin keys in the database, and the workspaces keys belong to.

A key is shown once, at creation; the database keeps its SHA-256 digest (keys are 256 random bits,
so a fast hash is safe) and a hint of its ends. A presented key is looked up by its digest and the
digests compared again in constant time; a key that is not active does not authenticate.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, Row, func, insert, select, update

from sijo.ids import new_id
from sijo.store.tables import api_keys, workspaces

KeyKind = Literal["api", "admin"]
KeyStatus = Literal["active", "inactive", "archived"]
_PREFIXES: dict[KeyKind, str] = {"api": "sk-sijo-api01-", "admin": "sk-sijo-admin01-"}


@dataclass(frozen=True, slots=True)
class KeyLimits:
    requests_per_minute: int | None = None
    input_tokens_per_minute: int | None = None
    output_tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    kind: KeyKind
    name: str
    hint: str
    status: KeyStatus
    workspace_id: str | None
    created_at: datetime
    limits: KeyLimits


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _hint(key: str, prefix: str) -> str:
    return f"{key[: len(prefix) + 4]}...{key[-4:]}"


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        kind=row.kind,
        name=row.name,
        hint=row.hint,
        status=row.status,
        workspace_id=row.workspace_id,
        created_at=row.created_at,
        limits=KeyLimits(row.requests_per_minute, row.input_tokens_per_minute, row.output_tokens_per_minute),
    )


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str
    created_at: datetime
    keys: int


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        name: str,
        *,
        kind: KeyKind = "api",
        workspace: str | None = None,
        limits: KeyLimits = KeyLimits(),
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once). `workspace` is a workspace name, created if new."""
        prefix = _PREFIXES[kind]
        secret = prefix + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        key_id = new_id("apikey")
        with self.engine.begin() as connection:
            workspace_id = self._workspace_id(connection, workspace, now) if workspace else None
            connection.execute(
                insert(api_keys).values(
                    id=key_id,
                    kind=kind,
                    name=name,
                    key_hash=digest(secret),
                    hint=_hint(secret, prefix),
                    status="active",
                    workspace_id=workspace_id,
                    created_at=now,
                    requests_per_minute=limits.requests_per_minute,
                    input_tokens_per_minute=limits.input_tokens_per_minute,
                    output_tokens_per_minute=limits.output_tokens_per_minute,
                )
            )
        found = self.get(key_id)
        assert found is not None
        return found, secret

    def _workspace_id(self, connection: Any, name: str, now: datetime) -> str:
        found = connection.execute(select(workspaces.c.id).where(workspaces.c.name == name)).scalar()
        if found is not None:
            return str(found)
        workspace_id = new_id("wrkspc")
        connection.execute(insert(workspaces).values(id=workspace_id, name=name, created_at=now))
        return workspace_id

    def verify(self, presented: str, kind: KeyKind) -> ApiKey | None:
        """The active key of `kind` that `presented` is, or None."""
        wanted = digest(presented)
        with self.engine.connect() as connection:
            row = connection.execute(select(api_keys).where(api_keys.c.key_hash == wanted)).first()
        if row is None or not hmac.compare_digest(row.key_hash, wanted):
            return None
        key = _key(row)
        return key if key.kind == kind and key.status == "active" else None

    def any(self, kind: KeyKind) -> bool:
        """Whether any key of `kind` was ever made (then every request must present one)."""
        with self.engine.connect() as connection:
            count = connection.execute(select(func.count()).where(api_keys.c.kind == kind)).scalar()
        return bool(count)

    def get(self, key_id: str) -> ApiKey | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return None if row is None else _key(row)

    def find(self, id_or_name: str) -> ApiKey | None:
        """By id, or by name when exactly one key has it (for the CLI)."""
        found = self.get(id_or_name)
        if found is not None:
            return found
        named = [key for key in self.list() if key.name == id_or_name]
        return named[0] if len(named) == 1 else None

    def list(
        self, *, kind: KeyKind | None = None, status: str | None = None, workspace_id: str | None = None
    ) -> list[ApiKey]:
        """Newest first."""
        query = select(api_keys).order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
        if kind is not None:
            query = query.where(api_keys.c.kind == kind)
        if status is not None:
            query = query.where(api_keys.c.status == status)
        if workspace_id is not None:
            query = query.where(api_keys.c.workspace_id == workspace_id)
        with self.engine.connect() as connection:
            return [_key(row) for row in connection.execute(query)]

    def update(
        self, key_id: str, *, name: str | None = None, status: KeyStatus | None = None
    ) -> ApiKey | None:
        changes: dict[str, Any] = {k: v for k, v in {"name": name, "status": status}.items() if v is not None}
        if changes:
            with self.engine.begin() as connection:
                connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(**changes))
        return self.get(key_id)

    def workspace_id(self, name: str) -> str | None:
        """The id of the workspace called `name` (what requests of its keys are scoped by)."""
        with self.engine.connect() as connection:
            found = connection.execute(select(workspaces.c.id).where(workspaces.c.name == name)).scalar()
        return None if found is None else str(found)

    def workspace_name(self, workspace_id: str) -> str | None:
        with self.engine.connect() as connection:
            name = connection.execute(
                select(workspaces.c.name).where(workspaces.c.id == workspace_id)
            ).scalar()
        return None if name is None else str(name)

    def workspaces(self) -> builtins.list[Workspace]:
        """Every workspace, oldest first, with how many API keys it holds."""
        count = (
            select(func.count())
            .where(api_keys.c.workspace_id == workspaces.c.id, api_keys.c.kind == "api")
            .scalar_subquery()
        )
        query = select(workspaces, count.label("keys")).order_by(workspaces.c.created_at, workspaces.c.id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [Workspace(row.id, row.name, row.created_at, int(row.keys)) for row in rows]
