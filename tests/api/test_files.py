"""The Files API in-process, over SQLite (and PostgreSQL when configured): upload, both pagination
styles, metadata, the content refusal, delete, workspace isolation, the size limit and quota, expiry,
and that no bytes stay on disk after a delete or a refused upload."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import inspect

from sijo.app import create_app
from sijo.config import FilesConfig, Settings
from sijo.engines.fake import FakeEngine
from sijo.ratelimit import LocalRateLimiter
from sijo.store.db import connect, downgrade, migrate
from sijo.store.files import FileStore
from sijo.store.keys import KeyStore
from tests.databases import KINDS, empty_database

VERSION = {"anthropic-version": "2023-06-01"}
BETA = {"anthropic-beta": "files-api-2025-04-14"}
BOUNDARY = "sijo-test-boundary"
FORM = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
METADATA_KEYS = {
    "id",
    "type",
    "filename",
    "mime_type",
    "size_bytes",
    "created_at",
    "downloadable",
    "expires_at",
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Api:
    app: FastAPI
    clock: Clock
    keys: dict[str, str]  # name → secret
    workspaces: dict[str, str]  # name → the key's workspace
    root: Path  # where the files' bytes live

    def client(self, key: str = "a") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        headers = {**VERSION, "x-api-key": self.keys[key]}
        return httpx.AsyncClient(transport=transport, base_url="http://sijo.localhost", headers=headers)

    @property
    def store(self) -> FileStore:
        store: FileStore = self.app.state.files
        return store

    def on_disk(self) -> list[Path]:
        """Every file (staging files included) under the files root."""
        return sorted(p for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else []


@asynccontextmanager
async def serve(
    tmp: Path, limits: FilesConfig | None = None, database_url: str | None = None
) -> AsyncIterator[Api]:
    settings = Settings(data_dir=tmp, database_url=database_url, files=limits or FilesConfig())
    database = connect(settings.database)
    migrate(database)
    store = KeyStore(database)
    made = {"a": store.create("a", workspace="alpha"), "a2": store.create("a2", workspace="alpha")}
    made["b"] = store.create("b", workspace="beta")
    database.dispose()
    clock = Clock()
    app = create_app(
        settings, engines={"default": FakeEngine()}, clock=clock, limiter=LocalRateLimiter(clock.seconds)
    )
    async with app.router.lifespan_context(app):
        keys = {name: secret for name, (_, secret) in made.items()}
        workspaces = {name: str(key.workspace_id) for name, (key, _) in made.items()}
        yield Api(app, clock, keys, workspaces, tmp / "files")


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def api(tmp_path: Path, database_url: str) -> AsyncIterator[Api]:
    async with serve(tmp_path, database_url=database_url) as running:
        yield running


async def upload(
    client: httpx.AsyncClient,
    name: str = "a.txt",
    data: bytes = b"hello",
    mime: str | None = "text/plain",
    **fields: str,
) -> httpx.Response:
    file = (name, data) if mime is None else (name, data, mime)
    return await client.post("/v1/files", files={"file": file}, data=fields, headers=BETA)


def raw_form(*parts: tuple[str, bytes], close: bool = True) -> bytes:
    """A multipart/form-data body from (header lines, data) parts, for what clients do not send."""
    body = b"".join(f"--{BOUNDARY}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n" for headers, data in parts)
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def refused(response: httpx.Response, status: int, error_type: str, starts: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type and error["message"].startswith(starts), error
    return str(error["message"])


async def test_upload_answers_file_metadata_that_retrieve_and_list_repeat(api: Api) -> None:
    async with api.client() as client:
        response = await upload(client, "notes.txt", b"hello files")
        assert response.status_code == 200, response.text
        created = response.json()
        assert set(created) == METADATA_KEYS
        assert created["id"].startswith("file_") and created["type"] == "file"
        assert (created["filename"], created["mime_type"], created["size_bytes"]) == (
            "notes.txt",
            "text/plain",
            11,
        )
        assert created["created_at"] == "2026-11-24T12:00:00Z"
        assert created["downloadable"] is False and created["expires_at"] is None
        # the GA client sends no beta header; the beta one adds ?beta=true
        assert (await client.get(f"/v1/files/{created['id']}")).json() == created
        assert (await client.get(f"/v1/files/{created['id']}?beta=true", headers=BETA)).json() == created
        listed = (await client.get("/v1/files")).json()
    assert listed == {
        "data": [created],
        "has_more": False,
        "first_id": created["id"],
        "last_id": created["id"],
        "next_page": None,
    }
    stored = await api.store.read(api.workspaces["a"], created["id"])
    assert stored is not None and (stored.filename, stored.mime_type, stored.data) == (
        "notes.txt",
        "text/plain",
        b"hello files",
    )
    assert await api.store.read(api.workspaces["b"], created["id"]) is None


@pytest.mark.parametrize(
    ("headers", "expected_name", "expected_type"),
    [
        (
            'Content-Disposition: form-data; name="file"; filename="report.pdf"',
            "report.pdf",
            "application/pdf",
        ),
        (
            'Content-Disposition: form-data; name="file"; filename="scan.png"\r\nContent-Type: application/octet-stream',
            "scan.png",
            "image/png",
        ),
        (
            'Content-Disposition: form-data; name="file"; filename="x.bin"\r\nContent-Type: Text/Markdown; charset=utf-8',
            "x.bin",
            "text/markdown",
        ),
        ('Content-Disposition: form-data; name="file"; filename="dir/sub/a.txt"', "a.txt", "text/plain"),
        (
            'Content-Disposition: form-data; name="file"; filename="C:\\\\Users\\\\b.txt"',
            "b.txt",
            "text/plain",
        ),
        (
            'Content-Disposition: form-data; name="file"\r\nContent-Type: text/plain',
            "unnamed.txt",
            "text/plain",
        ),
        ('Content-Disposition: form-data; name="file"', "unnamed", "application/octet-stream"),
        (
            'Content-Disposition: form-data; name="file"; filename="ete.txt"; filename*=utf-8\'\'%C3%A9t%C3%A9.txt',
            "été.txt",
            "text/plain",
        ),
    ],
)
async def test_the_filename_and_mime_type_come_from_the_part(
    api: Api, headers: str, expected_name: str, expected_type: str
) -> None:
    async with api.client() as client:
        response = await client.post("/v1/files", content=raw_form((headers, b"data")), headers=FORM)
    assert response.status_code == 200, response.text
    assert (response.json()["filename"], response.json()["mime_type"]) == (expected_name, expected_type)


@pytest.mark.parametrize("name", ["a<b.txt", "what?.txt", "pipe|.txt", "co:lon", "bell\x07.txt", "x" * 256])
async def test_a_filename_the_api_refuses_is_a_400(api: Api, name: str) -> None:
    part = (f'Content-Disposition: form-data; name="file"; filename="{name}"', b"data")
    async with api.client() as client:
        response = await client.post("/v1/files", content=raw_form(part), headers=FORM)
    refused(response, 400, "invalid_request_error", "file: invalid filename")
    assert api.on_disk() == []


@pytest.mark.parametrize(
    ("body", "headers", "starts"),
    [
        (
            b'{"file": "aGk="}',
            {"content-type": "application/json"},
            "file: the body must be multipart/form-data",
        ),
        (
            raw_form(('Content-Disposition: form-data; name="expires_in_seconds"', b"3600")),
            FORM,
            "file: Field required",
        ),
        (
            raw_form(('Content-Disposition: form-data; name="file"; filename="a.txt"', b"")),
            FORM,
            "file: the file is empty",
        ),
        (
            raw_form(
                ('Content-Disposition: form-data; name="file"; filename="a.txt"', b"one"),
                ('Content-Disposition: form-data; name="file"; filename="b.txt"', b"two"),
            ),
            FORM,
            "file: an upload carries one file",
        ),
        (
            raw_form(
                ('Content-Disposition: form-data; name="file"; filename="a.txt"', b"one"),
                ('Content-Disposition: form-data; name="purpose"', b"assistants"),
            ),
            FORM,
            "purpose: Extra inputs are not permitted",
        ),
        (
            raw_form(('Content-Disposition: form-data; name="file"; filename="a.txt"', b"cut"), close=False),
            FORM,
            "file:",
        ),
        (b"not a form at all", FORM, "file: the multipart/form-data body is malformed"),
        (
            raw_form(
                (
                    'Content-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: nonsense',
                    b"x",
                )
            ),
            FORM,
            "file: invalid content type",
        ),
    ],
)
async def test_a_bad_form_is_a_400_naming_the_field_and_leaves_nothing(
    api: Api, body: bytes, headers: dict[str, str], starts: str
) -> None:
    async with api.client() as client:
        response = await client.post("/v1/files", content=body, headers=headers)
        refused(response, 400, "invalid_request_error", starts)
        assert (await client.get("/v1/files")).json()["data"] == []
    assert api.on_disk() == []


async def test_beta_pagination_is_newest_first_both_ways(api: Api) -> None:
    async with api.client() as client:
        ids = []
        for n in range(5):
            ids.append((await upload(client, f"{n}.txt")).json()["id"])
            api.clock.tick()
        newest = ids[::-1]
        first = (await client.get("/v1/files", params={"limit": 2})).json()
        assert [f["id"] for f in first["data"]] == newest[:2] and first["has_more"] is True
        assert (first["first_id"], first["last_id"]) == (newest[0], newest[1])
        second = (await client.get("/v1/files", params={"limit": 2, "after_id": first["last_id"]})).json()
        assert [f["id"] for f in second["data"]] == newest[2:4] and second["has_more"] is True
        third = (await client.get("/v1/files", params={"limit": 2, "after_id": second["last_id"]})).json()
        assert [f["id"] for f in third["data"]] == newest[4:] and third["has_more"] is False
        assert third["next_page"] is None
        back = (await client.get("/v1/files", params={"limit": 2, "before_id": second["first_id"]})).json()
        assert [f["id"] for f in back["data"]] == newest[:2] and back["has_more"] is False
        assert back["next_page"] is None  # the GA cursor only goes forward
        back = (await client.get("/v1/files", params={"limit": 1, "before_id": third["first_id"]})).json()
        assert [f["id"] for f in back["data"]] == newest[3:4] and back["has_more"] is True
        assert [f["id"] for f in (await client.get("/v1/files")).json()["data"]] == newest  # limit 20


async def test_ga_page_tokens_walk_every_file_once_even_created_in_the_same_instant(api: Api) -> None:
    async with api.client() as client:
        ids = {(await upload(client, f"{n}.txt")).json()["id"] for n in range(5)}  # the clock stands still
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            page = (await client.get("/v1/files", params=params)).json()
            seen += [f["id"] for f in page["data"]]
            if page["next_page"] is None:
                assert page["has_more"] is False
                break
            assert page["has_more"] is True
            params = {"limit": 2, "page": page["next_page"]}
    assert sorted(seen) == sorted(ids) and len(seen) == len(ids)


async def test_ids_select_files_in_one_page(api: Api) -> None:
    async with api.client() as client, api.client("b") as other:
        mine = [(await upload(client, f"{n}.txt")).json()["id"] for n in range(3)]
        theirs = (await upload(other)).json()["id"]
        params = [("ids", mine[0]), ("ids[]", mine[2]), ("ids", f"{theirs},file_unknown")]
        page = (await client.get("/v1/files", params=params)).json()
        assert sorted(f["id"] for f in page["data"]) == sorted([mine[0], mine[2]])
        assert page["has_more"] is False and page["next_page"] is None
        response = await client.get("/v1/files", params={"ids": mine[0], "limit": 5})
        refused(response, 400, "invalid_request_error", "ids: cannot be combined")
        many = [("ids", f"file_{n:03d}") for n in range(101)]
        refused(await client.get("/v1/files", params=many), 400, "invalid_request_error", "ids: at most 100")
        assert (await client.get("/v1/files", params={"scope_id": "sesn_1"})).json()["data"] == []


@pytest.mark.parametrize(
    ("params", "starts"),
    [
        ({"limit": 0}, "limit:"),
        ({"limit": 1001}, "limit:"),
        ({"limit": "many"}, "limit:"),
        ({"after_id": "file_x", "before_id": "file_y"}, "after_id: cannot be combined with before_id"),
        ({"after_id": "file_unknown"}, "after_id: unknown file id file_unknown"),
        ({"before_id": "nope"}, "before_id: unknown file id nope"),
        ({"page": "page_!!!"}, "page: invalid page token"),
        ({"page": "garbage"}, "page: invalid page token"),
        ({"page": "page_bm90fGF0b2tlbg"}, "page: invalid page token"),
        ({"page": "page_x", "after_id": "file_x"}, "page: cannot be combined"),
    ],
)
async def test_bad_list_parameters_are_400s_naming_the_field(
    api: Api, params: dict[str, Any], starts: str
) -> None:
    async with api.client() as client:
        refused(await client.get("/v1/files", params=params), 400, "invalid_request_error", starts)


async def test_only_files_sijo_produced_can_be_downloaded(api: Api) -> None:
    async with api.client() as client:
        uploaded = (await upload(client)).json()["id"]
        message = refused(
            await client.get(f"/v1/files/{uploaded}/content", headers={"accept": "application/binary"}),
            400,
            "invalid_request_error",
            "file_id:",
        )
        assert uploaded in message and "not downloadable" in message
        produced = await api.store.add(api.workspaces["a"], "chart é.csv", "text/csv", b"x,y\n1,2\n")
        assert produced.downloadable
        response = await client.get(f"/v1/files/{produced.id}/content")
        assert response.status_code == 200 and response.content == b"x,y\n1,2\n"
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"] == "attachment; filename*=utf-8''chart%20%C3%A9.csv"
        assert (await client.get(f"/v1/files/{produced.id}")).json()["downloadable"] is True
    async with api.client("b") as other:
        refused(
            await other.get(f"/v1/files/{produced.id}/content"),
            404,
            "not_found_error",
            "file_id: File not found",
        )


async def test_delete_removes_the_row_and_the_bytes(api: Api) -> None:
    async with api.client() as client:
        kept = (await upload(client, "kept.txt")).json()["id"]
        gone = (await upload(client, "gone.txt")).json()["id"]
        assert len(api.on_disk()) == 2
        response = await client.delete(f"/v1/files/{gone}", headers=BETA)
        assert response.status_code == 200 and response.json() == {"id": gone, "type": "file_deleted"}
        for answer in [await client.get(f"/v1/files/{gone}"), await client.delete(f"/v1/files/{gone}")]:
            message = refused(answer, 404, "not_found_error", "file_id: File not found")
            assert gone in message
        assert [f["id"] for f in (await client.get("/v1/files")).json()["data"]] == [kept]
    assert [p.name for p in api.on_disk()] == [kept]
    assert await api.store.read(api.workspaces["a"], gone) is None


async def test_files_are_invisible_to_other_workspaces(api: Api) -> None:
    async with api.client("a") as a, api.client("b") as b, api.client("a2") as same:
        file_id = (await upload(a)).json()["id"]
        for response in [
            await b.get(f"/v1/files/{file_id}"),
            await b.get(f"/v1/files/{file_id}/content"),
            await b.delete(f"/v1/files/{file_id}"),
        ]:
            assert file_id in refused(response, 404, "not_found_error", "file_id: File not found")
        assert (await b.get("/v1/files")).json()["data"] == []
        refused(
            await b.get("/v1/files", params={"after_id": file_id}), 400, "invalid_request_error", "after_id:"
        )
        assert (await same.get(f"/v1/files/{file_id}")).status_code == 200  # another key of the workspace
        assert (await a.get(f"/v1/files/{file_id}")).status_code == 200  # b's delete did nothing


async def test_a_message_cannot_use_another_workspaces_file(api: Api) -> None:
    async with api.client("a") as a, api.client("b") as b, api.client("a2") as same:
        file_id = (await upload(a, "notes.txt", b"Rivers flow to the sea.")).json()["id"]
        document = {"type": "document", "source": {"type": "file", "file_id": file_id}}
        body = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": [document]}]}
        message = refused(await b.post("/v1/messages/count_tokens", json=body), 400, "invalid_request_error", "")
        assert message == f"messages.0.content.0.source.file_id: File not found: {file_id}"
        counted = await same.post("/v1/messages/count_tokens", json=body)
        assert counted.status_code == 200, counted.text  # the same workspace reads it


@pytest.mark.parametrize("file_id", ["nope", "file_", "file_" + "x" * 300, "file_abc%21", "msgbatch_01abc"])
async def test_unknown_and_malformed_ids_are_404s(api: Api, file_id: str) -> None:
    async with api.client() as client:
        for response in [
            await client.get(f"/v1/files/{file_id}"),
            await client.get(f"/v1/files/{file_id}/content"),
            await client.delete(f"/v1/files/{file_id}"),
        ]:
            refused(response, 404, "not_found_error", "file_id: File not found")


async def test_bytes_without_a_row_are_not_a_file(api: Api) -> None:
    async with api.client() as client:
        real = (await upload(client)).json()["id"]
        stray = api.on_disk()[0].with_name("file_01strayBytesWithoutARow")
        stray.write_bytes(b"orphan")
        assert (await client.get(f"/v1/files/{stray.name}")).status_code == 404
        assert [f["id"] for f in (await client.get("/v1/files")).json()["data"]] == [real]


async def test_the_size_limit_is_a_413_and_leaves_nothing_on_disk(tmp_path: Path) -> None:
    async with serve(tmp_path, FilesConfig(max_file_bytes=100)) as api, api.client() as client:
        assert (await upload(client, data=b"x" * 100)).status_code == 200
        on_disk = api.on_disk()
        response = await upload(client, data=b"x" * 101)  # refused as it streams
        assert (
            refused(response, 413, "request_too_large", "file: ") == "file: File exceeds the 100 bytes limit"
        )
        response = await upload(client, data=b"x" * 200_000)  # refused by its Content-Length
        refused(response, 413, "request_too_large", "file: File exceeds the 100 bytes limit")
        assert api.on_disk() == on_disk
        assert len((await client.get("/v1/files")).json()["data"]) == 1


async def test_the_workspace_quota_is_a_403_until_files_are_deleted(tmp_path: Path) -> None:
    limits = FilesConfig(max_file_bytes=1024, workspace_quota_bytes=2048)
    async with serve(tmp_path, limits) as api, api.client() as client, api.client("b") as other:
        first = (await upload(client, data=b"x" * 1024)).json()["id"]
        assert (await upload(client, data=b"x" * 1000)).status_code == 200
        message = refused(await upload(client, data=b"x" * 100), 403, "permission_error", "file: ")
        assert "2 KB storage limit" in message
        assert (await upload(other, data=b"x" * 1024)).status_code == 200  # another workspace's own quota
        on_disk = api.on_disk()
        assert (await client.delete(f"/v1/files/{first}")).status_code == 200
        assert (await upload(client, data=b"x" * 1024)).status_code == 200
        refused(await upload(client, data=b"x" * 100), 403, "permission_error", "file: ")
        assert len(api.on_disk()) == len(on_disk)


async def test_uploads_at_once_cannot_both_take_the_last_room(tmp_path: Path, database_url: str) -> None:
    limits = FilesConfig(max_file_bytes=1000, workspace_quota_bytes=1500)
    async with serve(tmp_path, limits, database_url) as api, api.client() as one, api.client("a2") as two:
        answers = await asyncio.gather(upload(one, data=b"1" * 1000), upload(two, data=b"2" * 1000))
        assert sorted(response.status_code for response in answers) == [200, 403]
        assert len(api.on_disk()) == 1


@pytest.mark.parametrize("value", ["3599", "7776001", "soon", "-3600", "3600.5", ""])
async def test_expires_in_seconds_out_of_range_is_a_400(api: Api, value: str) -> None:
    async with api.client() as client:
        response = await upload(client, expires_in_seconds=value)
    refused(
        response, 400, "invalid_request_error", "expires_in_seconds: must be an integer from 3600 to 7776000"
    )
    assert api.on_disk() == []


async def test_an_expired_file_is_invisible_then_swept(api: Api) -> None:
    async with api.client() as client:
        lasting = (await upload(client, "lasting.txt")).json()["id"]
        created = (await upload(client, "brief.txt", expires_in_seconds="3600")).json()
        assert created["expires_at"] == "2026-11-24T13:00:00Z"
        assert (await client.get(f"/v1/files/{created['id']}")).json()["expires_at"] == "2026-11-24T13:00:00Z"
        api.clock.tick(3600)
        refused(await client.get(f"/v1/files/{created['id']}"), 404, "not_found_error", "file_id:")
        assert await api.store.read(api.workspaces["a"], created["id"]) is None
        assert len(api.on_disk()) == 2  # invisible at once, its bytes removed lazily
        assert [f["id"] for f in (await client.get("/v1/files")).json()["data"]] == [lasting]
    assert [p.name for p in api.on_disk()] == [lasting]


async def test_a_stale_staging_file_is_removed(api: Api) -> None:
    folder = api.root / api.workspaces["a"]
    folder.mkdir(parents=True)
    stale = folder / ".upload-left-by-a-dead-process"
    stale.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    fresh = folder / ".upload-in-flight-elsewhere"
    fresh.write_bytes(b"partial")
    async with api.client() as client:
        assert (await client.get("/v1/files")).json()["data"] == []  # the process's first sweep
    assert not stale.exists() and fresh.exists()


async def test_the_upload_is_documented_as_a_multipart_form(api: Api) -> None:
    async with api.client() as client:
        document = (await client.get("/openapi.json")).json()
    upload_operation = document["paths"]["/v1/files"]["post"]
    content = upload_operation["requestBody"]["content"]["multipart/form-data"]
    assert content["schema"] == {"$ref": "#/components/schemas/FileUploadParams"}
    form = document["components"]["schemas"]["FileUploadParams"]
    assert form["properties"]["file"]["format"] == "binary" and form["required"] == ["file"]
    success = upload_operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert success == {"$ref": "#/components/schemas/FileMetadata"}
    listed = document["paths"]["/v1/files"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    assert listed == {"$ref": "#/components/schemas/FileMetadataPage"}


def test_the_files_migration_goes_up_and_down(database_url: str) -> None:
    engine = connect(database_url)
    migrate(engine)
    assert "files" in inspect(engine).get_table_names()
    downgrade(engine, "0001")
    assert "files" not in inspect(engine).get_table_names()
    migrate(engine)
    assert {i["name"] for i in inspect(engine).get_indexes("files")} == {
        "ix_files_workspace_created",
        "ix_files_expires_at",
    }
    engine.dispose()


async def test_a_workspace_header_must_name_the_keys_own_workspace(api: Api) -> None:
    async with api.client() as client:
        own = {"anthropic-workspace-id": api.workspaces["a"]}
        assert (await client.get("/v1/files", headers=own)).status_code == 200
        other = {"anthropic-workspace-id": api.workspaces["b"]}
        refused(
            await client.get("/v1/files", headers=other), 403, "permission_error", "anthropic-workspace-id:"
        )
