"""The workspace stream on the host's side (its format: supervisor.py): a container's files sent into
a sandbox, and what comes back (after the supervisor's status line) written into a fresh directory.

What comes back is the code's doing, so it is read as hostile: every line is checked field by field
(and capped in length), every path too (relative, no empty, "." or ".." part), every directory is
opened relative to its parent's descriptor with O_NOFOLLOW, every entry is created with O_EXCL
(nothing existing is ever written through), symlinks are created and never followed, and the bytes
and entries are capped. A stream that breaks a rule raises TransferError (or OSError, such as an
entry named twice), and the caller throws the directory away.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from sijo.tools.code_execution.supervisor import CHUNK

LINE_LIMIT = 20 * 1024  # bytes of one line: two hex paths of at most 4 KiB each, and numbers
MAX_ENTRIES = 200_000
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
END = b"e\n"


class TransferError(Exception):
    """A stream from a sandbox broke a rule; nothing of it is to be kept."""


@dataclass(frozen=True, slots=True)
class Status:
    """The supervisor's first line: how the program ended, and whether the workspace comes next."""

    return_code: int
    timed_out: bool
    changed: bool
    loaded: bool


# Host -> sandbox


async def send(writer: asyncio.StreamWriter, root: Path) -> None:
    """Writes the files under root (never following a symlink) as a workspace stream, without the
    final END line."""
    for directory, subdirectories, files, directory_fd in os.fwalk(root, follow_symlinks=False):
        relative = os.path.relpath(directory, root)
        for name in sorted([*subdirectories, *files]):
            path = _hex(name if relative == "." else f"{relative}/{name}")
            info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                writer.write(b"d %s %d\n" % (path, stat.S_IMODE(info.st_mode)))
            elif stat.S_ISLNK(info.st_mode):
                writer.write(b"l %s %s\n" % (path, _hex(os.readlink(name, dir_fd=directory_fd))))
            elif stat.S_ISREG(info.st_mode):
                await _send_file(writer, name, directory_fd, path)
            await writer.drain()


def _hex(path: str) -> bytes:
    return os.fsencode(path).hex().encode()


async def _send_file(writer: asyncio.StreamWriter, name: str, directory_fd: int, path: bytes) -> None:
    try:
        fd = os.open(name, _READ, dir_fd=directory_fd)
    except OSError:
        return
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return
        mode, left = stat.S_IMODE(info.st_mode), info.st_size
        writer.write(b"f %s %d %d %d\n" % (path, mode, left, info.st_mtime_ns))
        while left:
            chunk = file.read(min(CHUNK, left)) or bytes(min(CHUNK, left))  # keeps the framing
            writer.write(chunk)
            left -= len(chunk)
            await writer.drain()


# Sandbox -> host


async def status(reader: asyncio.StreamReader) -> Status:
    fields = await _line(reader, b"s", 4)
    return_code, *flags = (_number(field) for field in fields)
    if any(flag > 1 for flag in flags):
        raise TransferError("a status flag is 0 or 1")
    return Status(return_code, *(bool(flag) for flag in flags))


async def receive(reader: asyncio.StreamReader, target: Path, max_bytes: int) -> None:
    """Writes the stream (up to its END line) into target, an empty directory."""
    with _Tree(target) as tree:
        while True:
            kind, *fields = await _line(reader, None, None)
            if kind == b"e" and not fields:
                return
            tree.count()
            if kind == b"d" and len(fields) == 2:
                tree.directory(_path(fields[0]), _number(fields[1]))
            elif kind == b"l" and len(fields) == 2:
                tree.symlink(_path(fields[0]), _target(fields[1]))
            elif kind == b"f" and len(fields) == 4:
                path, (mode, size, mtime) = _path(fields[0]), (_number(f) for f in fields[1:])
                if tree.bytes + size > max_bytes:
                    raise TransferError(f"the workspace holds more than {max_bytes} bytes")
                tree.bytes += size
                fd = tree.create(path)
                try:
                    await _receive_file(reader, fd, size)
                    os.fchmod(fd, mode & 0o777 | 0o600)
                    os.utime(fd, ns=(mtime, mtime))
                finally:
                    os.close(fd)
            else:
                raise TransferError(f"not a workspace line: {kind!r} with {len(fields)} fields")


async def _line(reader: asyncio.StreamReader, kind: bytes | None, count: int | None) -> list[bytes]:
    """The next line's fields (its kind first), checked against kind and count when given."""
    try:
        line = await reader.readuntil(b"\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
        raise TransferError(f"a broken line: {error}") from None
    fields = line[:-1].split(b" ")
    if kind is not None and (fields[0] != kind or len(fields) != 1 + (count or 0)):
        raise TransferError(f"expected a {kind!r} line, not {line[:80]!r}")
    return fields if kind is None else fields[1:]


def _number(field: bytes) -> int:
    if not field.isdigit() or len(field) > 20:
        raise TransferError(f"not a number: {field[:40]!r}")
    return int(field)


def _decode(field: bytes) -> bytes:
    try:
        return bytes.fromhex(field.decode("ascii"))
    except ValueError:
        raise TransferError(f"not hex: {field[:40]!r}") from None


def _target(field: bytes) -> bytes:
    target = _decode(field)
    if not target or b"\0" in target:
        raise TransferError("a symlink's target must be a non-empty string")
    return target


def _path(field: bytes) -> tuple[bytes, ...]:
    """A path's parts: relative, none of them empty, "." or ".."."""
    path = _decode(field)
    parts = tuple(path.split(b"/"))
    if len(path) > 4096 or any(part in (b"", b".", b"..") or b"\0" in part for part in parts):
        raise TransferError(f"not a relative path: {path[:200]!r}")
    return parts


async def _receive_file(reader: asyncio.StreamReader, fd: int, size: int) -> None:
    left = size
    while left:
        chunk = await reader.read(min(CHUNK, left))
        if not chunk:
            raise TransferError("the stream ended inside a file")
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
        left -= len(chunk)


class _Tree:
    """A directory being filled from a stream, entry by entry, never following a symlink."""

    def __init__(self, root: Path) -> None:
        self.root_fd = os.open(root, _DIRECTORY)
        self.entries = 0
        self.bytes = 0
        self._parent: tuple[tuple[bytes, ...], int] | None = None  # the last parent opened
        self._modes: list[tuple[tuple[bytes, ...], int]] = []

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            for parts, mode in reversed(self._modes):  # children before their parents
                fd = self._open_parent(parts)
                os.chmod(parts[-1], mode & 0o777 | 0o700, dir_fd=fd)
        self._close_parent()
        os.close(self.root_fd)

    def count(self) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise TransferError(f"the workspace holds more than {MAX_ENTRIES} entries")

    def directory(self, parts: tuple[bytes, ...], mode: int) -> None:
        os.mkdir(parts[-1], 0o700, dir_fd=self._open_parent(parts))
        self._modes.append((parts, mode))

    def symlink(self, parts: tuple[bytes, ...], target: bytes) -> None:
        os.symlink(target, parts[-1], dir_fd=self._open_parent(parts))

    def create(self, parts: tuple[bytes, ...]) -> int:
        return os.open(parts[-1], _CREATE, 0o600, dir_fd=self._open_parent(parts))

    def _open_parent(self, parts: tuple[bytes, ...]) -> int:
        if not parts[:-1]:
            return self.root_fd
        if self._parent is not None and self._parent[0] == parts[:-1]:
            return self._parent[1]
        self._close_parent()
        fd = os.open(parts[0], _DIRECTORY, dir_fd=self.root_fd)
        try:
            for part in parts[1:-1]:
                inner = os.open(part, _DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = inner
        except OSError:
            os.close(fd)
            raise
        self._parent = (parts[:-1], fd)
        return fd

    def _close_parent(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None


# Whole directories


def remove_tree(path: Path) -> None:
    """Deletes a directory of workspace files, even one holding directories the code made
    unwritable (modes 0555 or 000 stop their non-root owner from deleting what is inside)."""
    if os.geteuid() != 0:
        os.chmod(path, 0o700)
        for _, subdirectories, _, directory_fd in os.fwalk(path, follow_symlinks=False):
            for name in subdirectories:  # before fwalk enters them; never a symlink
                os.chmod(name, 0o700, dir_fd=directory_fd)
    shutil.rmtree(path)
