"""code_execution's containers: ids, ownership by workspace, expiry, and the host's reads and writes
of a container's files, which never follow the code's symlinks."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sijo.tools.code_execution import Container, Containers, OutputFile

WORKSPACE_ID = "wrkspc_test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def containers(tmp_path: Path, clock: Clock) -> Containers:
    return Containers(tmp_path / "containers", 3600, clock=clock)


@pytest.fixture
def container(containers: Containers) -> Container:
    return containers.create(WORKSPACE_ID)


def test_a_new_container(containers: Containers, container: Container, clock: Clock) -> None:
    assert re.fullmatch(r"container_[0-9A-Za-z]{24}", container.id)
    assert container.workspace == WORKSPACE_ID
    assert container.path.is_dir() and list(container.path.iterdir()) == []
    assert container.expires_at == datetime.fromtimestamp(clock.now + 3600, UTC)
    assert containers.get(WORKSPACE_ID, container.id) == container
    assert containers.create(WORKSPACE_ID).id != container.id


def test_the_metadata_is_beside_the_files_not_among_them(container: Container) -> None:
    metadata = json.loads((container.path.parent / "container.json").read_text())

    assert metadata["workspace"] == WORKSPACE_ID
    assert sorted(p.name for p in container.path.parent.iterdir()) == ["container.json", "workspace"]


def test_another_workspace_cannot_use_it(containers: Containers, container: Container) -> None:
    assert containers.get("wrkspc_other", container.id) is None
    assert containers.get(WORKSPACE_ID, container.id) is not None


@pytest.mark.parametrize(
    "container_id",
    [
        "",
        "container_",
        "../container_aaaaaaaaaaaaaaaaaaaaaaaa",
        "container_aaaaaaaaaaaaaaaaaaaaaaa/",
        "container_unknownunknownunknownu",
    ],
)
def test_ids_that_name_nothing(containers: Containers, container_id: str) -> None:
    assert containers.get(WORKSPACE_ID, container_id) is None


def test_an_id_cannot_name_a_path(containers: Containers, container: Container) -> None:
    """The code could lay out a container's metadata among its own files: an id naming it is refused."""
    fake = container.path / "fake"
    (fake / "workspace").mkdir(parents=True)
    (fake / "container.json").write_text(
        json.dumps({"workspace": WORKSPACE_ID, "expires_at": "2100-01-01T00:00:00+00:00"})
    )

    assert containers.get(WORKSPACE_ID, f"{container.id}/workspace/fake") is None
    assert containers.get(WORKSPACE_ID, f"../{containers.root.name}/{container.id}/workspace/fake") is None


def test_an_expired_container_is_gone(containers: Containers, container: Container, clock: Clock) -> None:
    clock.now += 3601

    assert containers.get(WORKSPACE_ID, container.id) is None
    assert not container.path.parent.exists()


def test_touch_moves_the_expiry(containers: Containers, container: Container, clock: Clock) -> None:
    clock.now += 3000
    touched = containers.touch(container)
    clock.now += 3000

    assert touched.expires_at == datetime.fromtimestamp(clock.now - 3000 + 3600, UTC)
    assert containers.get(WORKSPACE_ID, container.id) == touched


def test_sweep(containers: Containers, container: Container, clock: Clock) -> None:
    clock.now += 1800
    fresh = containers.create(WORKSPACE_ID)
    (container.path / "file").write_text("x")
    clock.now += 1801

    assert containers.sweep() == 1
    assert not container.path.parent.exists()
    assert containers.get(WORKSPACE_ID, fresh.id) == fresh
    assert containers.sweep() == 0


def test_sweep_removes_unwritable_directories(
    containers: Containers, container: Container, clock: Clock
) -> None:
    locked = container.path / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "f").write_text("x")
    os.chmod(locked / "inner", 0o000)
    os.chmod(locked, 0o555)
    clock.now += 3601

    assert containers.sweep() == 1
    assert list(containers.root.iterdir()) == []


# The files


def test_snapshot_and_changes(containers: Containers, container: Container) -> None:
    (container.path / "same.txt").write_text("same")
    (container.path / "edited.txt").write_text("old")
    before = containers.snapshot(container)
    (container.path / "edited.txt").write_text("new content")
    (container.path / "out").mkdir()
    (container.path / "out" / "chart.png").write_bytes(b"\x89PNG")
    (container.path / "same.txt").unlink()

    assert before.keys() == {"same.txt", "edited.txt"} and before["same.txt"][0] == 4
    assert containers.changes(container, before, 1000).files == [
        OutputFile("edited.txt", b"new content"),
        OutputFile("out/chart.png", b"\x89PNG"),
    ]


def test_files_over_the_cap_are_named_not_read(containers: Containers, container: Container) -> None:
    before = containers.snapshot(container)
    (container.path / "small").write_bytes(b"x" * 10)
    (container.path / "big").write_bytes(b"x" * 11)

    changes = containers.changes(container, before, 10)

    assert changes.files == [OutputFile("small", b"x" * 10)]
    assert changes.too_large == ["big"]


def test_symlinks_to_host_files_are_never_followed(
    containers: Containers, container: Container, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("host secret")
    before = containers.snapshot(container)
    (container.path / "key").symlink_to(secret / "key")
    (container.path / "dir").symlink_to(secret)
    os.mkfifo(container.path / "fifo")  # would block a reader that opened it

    assert containers.snapshot(container) == {}
    assert containers.changes(container, before, 1000).files == []
    assert containers.changes(container, before, 1000).too_large == []


def test_place_an_upload(containers: Containers, container: Container) -> None:
    path = containers.place(container, "data.csv", b"a,b\n1,2\n")

    assert path == "/workspace/data.csv"
    assert (container.path / "data.csv").read_bytes() == b"a,b\n1,2\n"
    assert [p.name for p in container.path.iterdir()] == ["data.csv"]


def test_place_replaces_a_symlink_rather_than_writing_through_it(
    containers: Containers, container: Container, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    (container.path / "data.csv").symlink_to(secret)

    containers.place(container, "data.csv", b"uploaded")

    assert secret.read_text() == "host secret"
    assert not (container.path / "data.csv").is_symlink()
    assert (container.path / "data.csv").read_bytes() == b"uploaded"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "/etc/passwd", "nul\0name"])
def test_place_refuses_names_that_are_not_one_file(
    containers: Containers, container: Container, name: str
) -> None:
    with pytest.raises(ValueError, match="not a file name"):
        containers.place(container, name, b"x")

    assert list(container.path.iterdir()) == []
