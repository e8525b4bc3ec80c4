"""code_execution's containers: each a directory of files that persists between executions, owned
by one workspace, living `ttl` seconds past its last use (the API's 30 days by default).

    <root>/<container id>/container.json   {"workspace", "expires_at"}, beside the files: no
                                           sandbox ever sees it
    <root>/<container id>/workspace/       the files; the sandbox's WORKSPACE (sandbox.py streams
                                           them in and swaps in what comes back, using the
                                           container's directory for that)

An id is `container_` and 24 random base-62 characters; it is checked against that shape before it
names a path, and a container answers only to its own workspace. The files are the code's doing
(symlinks to host files included), so the host only ever reads them without following a symlink.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sijo.ids import new_id
from sijo.tools.code_execution.supervisor import WORKSPACE
from sijo.tools.code_execution.transfer import remove_tree

METADATA = "container.json"
FILES = "workspace"
_ID = re.compile(r"container_[0-9A-Za-z]{24}\Z")
_ORPHAN_SECONDS = 3600.0  # a directory without metadata this old is a crashed create or delete
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    workspace: str
    path: Path  # the host directory holding the files (the sandbox's WORKSPACE)
    expires_at: datetime  # UTC


@dataclass(frozen=True, slots=True)
class OutputFile:
    name: str  # relative to the container's files
    data: bytes


@dataclass(frozen=True, slots=True)
class Changes:
    """The files an execution created or modified: those read, and those over the size cap."""

    files: list[OutputFile]
    too_large: list[str]


class Containers:
    def __init__(self, root: Path, ttl_seconds: float, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def create(self, workspace: str) -> Container:
        container_id = new_id("container")
        directory = self.root / container_id
        directory.mkdir(mode=0o700)
        container = Container(container_id, workspace, directory / FILES, self._expiry())
        self._write_metadata(container)
        container.path.mkdir(mode=0o700)
        return container

    def get(self, workspace: str, container_id: str) -> Container | None:
        """The container, if it exists, is workspace's and has not expired (an expired one is
        deleted)."""
        if not _ID.match(container_id):
            return None
        container = self._read(container_id)
        if container is None or container.workspace != workspace:
            return None
        if container.expires_at.timestamp() <= self._clock():
            self._delete(container_id)
            return None
        return container

    def touch(self, container: Container) -> Container:
        """The container, used now: it expires ttl seconds from now."""
        touched = replace(container, expires_at=self._expiry())
        self._write_metadata(touched)
        return touched

    def sweep(self) -> int:
        """Deletes the expired containers; how many."""
        deleted = 0
        for entry in os.scandir(self.root):
            if _ID.match(entry.name):
                container = self._read(entry.name)
                expired = container is not None and container.expires_at.timestamp() <= self._clock()
                orphan = container is None and self._clock() - _mtime(entry) > _ORPHAN_SECONDS
                if expired or orphan:
                    self._delete(entry.name)
                    deleted += int(expired)
            elif entry.name.startswith(".deleted-"):
                remove_tree(Path(entry.path))  # a delete that did not finish
        return deleted

    # The files

    def snapshot(self, container: Container) -> dict[str, tuple[int, int]]:
        """Each regular file's (size, mtime_ns), by path relative to the files; never follows a
        symlink."""
        found: dict[str, tuple[int, int]] = {}
        for relative, info, _, _ in _regular_files(container.path):
            found[relative] = (info.st_size, info.st_mtime_ns)
        return found

    def changes(self, container: Container, before: dict[str, tuple[int, int]], max_bytes: int) -> Changes:
        """The regular files created or modified since `before` (a snapshot), read with O_NOFOLLOW;
        those over max_bytes are named in too_large instead."""
        files: list[OutputFile] = []
        too_large: list[str] = []
        for relative, info, name, directory_fd in _regular_files(container.path):
            if before.get(relative) == (info.st_size, info.st_mtime_ns):
                continue
            try:
                data = None if info.st_size > max_bytes else _read_file(name, directory_fd, max_bytes)
            except OSError:
                continue
            if data is None:
                too_large.append(relative)
            else:
                files.append(OutputFile(relative, data))
        return Changes(files, too_large)

    def place(self, container: Container, filename: str, data: bytes) -> str:
        """Puts an uploaded file (container_upload) among the container's files, replacing what had
        that name (a symlink is replaced, never written through); its path as the code sees it."""
        if not filename or filename in (".", "..") or "/" in filename or "\0" in filename:
            raise ValueError(f"not a file name: {filename!r}")
        directory_fd = os.open(container.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            partial = f".{secrets.token_hex(8)}.upload"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(partial, flags, 0o644, dir_fd=directory_fd), "wb") as file:
                file.write(data)
            try:
                os.rename(partial, filename, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
            except OSError:
                os.unlink(partial, dir_fd=directory_fd)
                raise
        finally:
            os.close(directory_fd)
        return f"{WORKSPACE}/{filename}"

    # Metadata

    def _expiry(self) -> datetime:
        return datetime.fromtimestamp(self._clock() + self.ttl_seconds, UTC)

    def _write_metadata(self, container: Container) -> None:
        directory = container.path.parent
        partial = directory / f".{METADATA}.{secrets.token_hex(8)}"
        metadata = {"workspace": container.workspace, "expires_at": container.expires_at.isoformat()}
        partial.write_text(json.dumps(metadata), encoding="utf-8")
        os.replace(partial, directory / METADATA)

    def _read(self, container_id: str) -> Container | None:
        directory = self.root / container_id
        try:
            with os.fdopen(os.open(directory / METADATA, _READ), encoding="utf-8") as file:
                metadata = json.load(file)
            expires_at = datetime.fromisoformat(metadata["expires_at"])
            return Container(container_id, str(metadata["workspace"]), directory / FILES, expires_at)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _delete(self, container_id: str) -> None:
        """Renamed away first, so that no one finds it half deleted."""
        doomed = self.root / f".deleted-{container_id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.root / container_id, doomed)
        except FileNotFoundError:
            return  # deleted meanwhile
        remove_tree(doomed)


def _mtime(entry: os.DirEntry[str]) -> float:
    return entry.stat(follow_symlinks=False).st_mtime


def _regular_files(root: Path) -> Iterator[tuple[str, os.stat_result, str, int]]:
    """(path relative to root, lstat, name, its directory's fd) of each regular file under root;
    the fd is valid until the next item. Names that are not UTF-8 are skipped: no file of the Files
    API could carry them."""
    for directory, _, files, directory_fd in os.fwalk(root, follow_symlinks=False):
        relative = os.path.relpath(directory, root)
        for name in sorted(files):
            path = name if relative == "." else f"{relative}/{name}"
            try:
                path.encode()
                info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
            except (UnicodeEncodeError, OSError):
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, info, name, directory_fd


def _read_file(name: str, directory_fd: int, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it holds more than max_bytes; OSError when it is no longer a
    regular file."""
    with os.fdopen(os.open(name, _READ, dir_fd=directory_fd), "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(f"{name} is not a regular file")
        data = file.read(max_bytes + 1)
    return None if len(data) > max_bytes else data
