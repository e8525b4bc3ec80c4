"""`sijo search add | list | remove`: the local index filled from the command line, with the settings
file naming where it lives, clear messages, and a nonzero exit when something named is not there."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sijo.cli import main
from sijo.tools.web_search.documents import file_url
from sijo.tools.web_search.local_index import LocalIndex


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sijo.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[media]\n"
        'fetch_allow = ["127.0.0.1"]\n'
        "[server_tools.search]\n"
        f'index_path = "{tmp_path / "index.db"}"\n'
    )
    return path


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "paris.md").write_text("# Paris\n\nParis is the capital of France.\n")
    (folder / "sub" / "berlin.html").write_text(
        "<title>Berlin</title><p>Berlin is the capital of Germany.</p>"
    )
    (folder / "notes.png").write_bytes(b"\x89PNG")
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_remove(
    capsys: pytest.CaptureFixture[str], config: Path, docs: Path, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "search", "--config", str(config), "add", str(docs))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"added    1  {file_url(docs / 'paris.md')}  (Paris, 40 characters)",
        f"added    2  {file_url(docs / 'sub' / 'berlin.html')}  (Berlin, 33 characters)",
    ]
    index = LocalIndex(tmp_path / "index.db")
    assert [d.title for d in index.documents()] == ["Paris", "Berlin"]

    # --config may also follow the action; adding again updates, for a workspace this time (by its
    # name; requests carry the workspace's id).
    for name in ("team", "other"):
        assert (
            run(capsys, "keys", "--config", str(config), "create", "--name", name, "--workspace", name)[0]
            == 0
        )
    code, out, err = run(
        capsys, "search", "add", str(docs / "paris.md"), "--workspace", "nobody", "--config", str(config)
    )
    assert code == 1 and "no workspace is named 'nobody'" in err
    code, out, _ = run(
        capsys, "search", "add", str(docs / "paris.md"), "--workspace", "team", "--config", str(config)
    )
    assert code == 0
    assert out.startswith("updated  1  ")

    code, out, _ = run(capsys, "search", "list", "--config", str(config))
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:3] == ["1", "team", "40"]
    assert lines[0].endswith(f"{file_url(docs / 'paris.md')}  Paris")
    assert lines[1].split()[:3] == ["2", "shared", "33"]
    code, out, _ = run(capsys, "search", "list", "--workspace", "other", "--config", str(config))
    assert [line.split()[0] for line in out.splitlines()] == ["2"]

    code, out, err = run(capsys, "search", "--config", str(config), "remove", "1", str(docs / "sub"))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"removed  1  {file_url(docs / 'paris.md')}",
        f"removed  2  {file_url(docs / 'sub' / 'berlin.html')}",
    ]
    code, out, err = run(capsys, "search", "--config", str(config), "list")
    assert (code, out) == (0, "")
    assert "no documents in" in err


def test_missing_paths_fail_but_the_rest_is_added(
    capsys: pytest.CaptureFixture[str], config: Path, docs: Path
) -> None:
    missing = str(docs / "nope.txt")
    code, out, err = run(capsys, "search", "--config", str(config), "add", missing, str(docs / "paris.md"))
    assert code == 1
    assert f"sijo: {missing}: no such file or folder" in err
    assert out.startswith("added    1  ")
    code, _, err = run(capsys, "search", "--config", str(config), "add", str(docs / "notes.png"))
    assert code == 1
    assert "unsupported file type" in err


def test_removing_what_is_not_there_fails(
    capsys: pytest.CaptureFixture[str], config: Path, docs: Path
) -> None:
    run(capsys, "search", "--config", str(config), "add", str(docs / "paris.md"))
    code, out, err = run(
        capsys, "search", "--config", str(config), "remove", "42", "https://nowhere.example/", "1"
    )
    assert code == 1
    assert "sijo: no document in the index is '42'" in err
    assert "'https://nowhere.example/'" in err
    assert out.startswith("removed  1  ")
    code, _, err = run(capsys, "search", "--config", str(config), "remove", str(docs / "paris.md"))
    assert code == 1


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<title>Served</title><p>Quince season</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet: no request lines on stderr."""


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urls_follow_the_media_fetch_policy(
    capsys: pytest.CaptureFixture[str], config: Path, site: str, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "search", "--config", str(config), "add", f"{site}/page")
    assert code == 0
    assert out == f"added    1  {site}/page  (Served, 13 characters)\n"
    closed = tmp_path / "closed.toml"
    closed.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    code, _, err = run(capsys, "search", "--config", str(closed), "add", f"{site}/page")
    assert code == 1
    assert "loopback" in err


def test_another_backend_is_pointed_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, docs: Path
) -> None:
    config = tmp_path / "brave.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[server_tools.search]\nbackend = "brave"\napi_key = "k"\n'
    )
    code, _, err = run(capsys, "search", "--config", str(config), "add", str(docs / "paris.md"))
    assert code == 0
    assert "uses the brave backend, not this index" in err
    assert (tmp_path / "data" / "search.db").exists()


def test_an_action_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["search"])
    assert exited.value.code == 2
    assert "add" in capsys.readouterr().err
