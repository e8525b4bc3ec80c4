"""The Files API through the real server and the official SDK, beta and GA: upload (bytes and a
path), metadata, list with the SDK's own paging, the download refusal, delete and the 404 after it.

The shared server serves the default workspace, which other tests may fill too: every check looks
for the files this module made, never at the whole list."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import anthropic
import pytest

from tests.conftest import Server


def test_beta_files_upload_retrieve_list_delete(sdk: anthropic.Anthropic) -> None:
    uploaded = sdk.beta.files.upload(file=("a.txt", b"hello from the files api", "text/plain"))
    assert uploaded.id.startswith("file_") and uploaded.type == "file"
    assert (uploaded.filename, uploaded.mime_type, uploaded.size_bytes) == ("a.txt", "text/plain", 24)
    assert uploaded.downloadable is False and uploaded.expires_at is None
    assert sdk.beta.files.retrieve_metadata(uploaded.id) == uploaded
    assert uploaded.id in {f.id for f in sdk.beta.files.list()}
    with pytest.raises(anthropic.BadRequestError, match="not downloadable"):
        sdk.beta.files.download(uploaded.id)
    deleted = sdk.beta.files.delete(uploaded.id)
    assert (deleted.id, deleted.type) == (uploaded.id, "file_deleted")
    with pytest.raises(anthropic.NotFoundError, match=uploaded.id):
        sdk.beta.files.retrieve_metadata(uploaded.id)
    with pytest.raises(anthropic.NotFoundError):
        sdk.beta.files.delete(uploaded.id)
    assert uploaded.id not in {f.id for f in sdk.beta.files.list()}


def test_ga_files_page_through_every_file_and_expire(sdk: anthropic.Anthropic, tmp_path: Path) -> None:
    path = tmp_path / "données.csv"
    path.write_text("x,y\n1,2\n")
    made = [sdk.files.upload(file=path, expires_in_seconds=3600)]
    made += [sdk.files.upload(file=(f"{n}.txt", b"n", "text/plain")) for n in range(2)]
    assert (made[0].filename, made[0].mime_type, made[0].size_bytes) == ("données.csv", "text/csv", 8)
    assert made[0].expires_at is not None and made[0].expires_at > made[0].created_at
    ids = [f.id for f in made]
    listed = [f.id for f in sdk.files.list(limit=1)]  # the SDK follows next_page, a page at a time
    assert len(listed) == len(set(listed)) and [i for i in listed if i in ids] == ids[::-1]
    assert sorted(f.id for f in sdk.files.list(ids=[ids[0], ids[2], "file_unknown"])) == sorted(
        [ids[0], ids[2]]
    )
    with pytest.raises(anthropic.BadRequestError, match="expires_in_seconds"):
        sdk.files.upload(file=("b.txt", b"b", "text/plain"), expires_in_seconds=60)
    for file_id in ids:
        sdk.files.delete(file_id)
    with pytest.raises(anthropic.NotFoundError):
        sdk.files.retrieve_metadata(ids[0])


def test_a_client_that_hangs_up_mid_upload_leaves_no_bytes(server: Server, sdk: anthropic.Anthropic) -> None:
    files = server.log.parent / "data" / "files"  # start_server's data directory
    head = b'--cut\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    address = urlsplit(server.base_url)
    with socket.create_connection((address.hostname, address.port)) as connection:
        connection.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nanthropic-version: 2023-06-01\r\n"
            b"Content-Type: multipart/form-data; boundary=cut\r\nContent-Length: 10000000\r\n\r\n" + head
        )
        for _ in range(48):  # 3 MB of the 10 promised: past the staging buffer, so bytes reach disk
            connection.sendall(b"x" * 65536)
        deadline = time.monotonic() + 10
        while not list(files.rglob(".upload-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(files.rglob(".upload-*")) != []  # the upload is being staged
    deadline = time.monotonic() + 10
    while list(files.rglob(".upload-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(files.rglob(".upload-*")) == []
    assert all(f.filename != "big.bin" for f in sdk.beta.files.list())
