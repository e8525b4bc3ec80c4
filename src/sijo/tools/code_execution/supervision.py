"""The host's side of one run in a sandbox: bwrap started with the supervisor (supervisor.py), the
container's files fed in, stdout and stderr drained and capped, the status and the files coming back
collected, the backstop, and the swap that keeps the new files.

    run(start, workdir, job, deadline, max_bytes) -> Outcome
        start(status_fd) starts bwrap (the caller knows how), passing status_fd through
        workdir      the container's files on the host; what comes back is written beside it, into
                     a fresh directory that then takes its place (two renames)
        deadline     seconds after which the host kills the sandbox, whatever happens inside
        max_bytes    the most file bytes kept of what comes back (the workspace tmpfs's size)
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sijo.tools.code_execution import transfer
from sijo.tools.code_execution.supervisor import CHUNK

logger = logging.getLogger(__name__)

Start = Callable[[int], Awaitable[asyncio.subprocess.Process]]


@dataclass(frozen=True, slots=True)
class Job:
    """One program to run in a container: its argv, what it reads on stdin (None: /dev/null), and
    how many bytes of its stdout and of its stderr to keep."""

    program: list[str]
    given: bytes | None
    cap: int


@dataclass
class Capture:
    """Output read so far from one of the sandbox's pipes, up to a cap; the rest only counted."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def text(self) -> str:
        text = self.data.decode(errors="replace")
        if self.dropped:
            text += f"\n[output truncated: {self.dropped} more bytes]\n"
        return text


@dataclass
class Outcome:
    """What one run left: its outputs, the supervisor's status (None if it never came), whether
    the backstop ended it, and why the workspace could not be kept, if so."""

    stdout: Capture
    stderr: Capture
    status: transfer.Status | None = None
    killed: bool = False
    exit_code: int | None = None
    problem: str | None = None

    @property
    def timed_out(self) -> bool:
        return self.killed or (self.status is not None and self.status.timed_out)


async def run(start: Start, workdir: Path, job: Job, deadline: float, max_bytes: int) -> Outcome:
    status_read, status_write = os.pipe()
    try:
        process = await start(status_write)
    except BaseException:
        os.close(status_read)
        raise
    finally:
        os.close(status_write)  # the sandbox's now (bwrap keeps its number)
    staging = workdir.with_name(f".{workdir.name}.incoming-{secrets.token_hex(8)}")
    one = _Run(process, Outcome(Capture(job.cap), Capture(job.cap)), staging, max_bytes)
    reader, transport = await _pipe_reader(status_read)
    try:
        await one.supervise(reader, workdir, job.given, deadline)
        status = one.outcome.status
        if status is not None and status.changed and one.outcome.problem is None:
            _swap(workdir, staging)
    except OSError as error:
        one.outcome.problem = f"{error}"
    finally:
        transport.close()
        if staging.exists():
            transfer.remove_tree(staging)
    return one.outcome


@dataclass
class _Run:
    process: asyncio.subprocess.Process
    outcome: Outcome
    staging: Path
    max_bytes: int

    async def supervise(
        self, reader: asyncio.StreamReader, workdir: Path, given: bytes | None, deadline: float
    ) -> None:
        process = self.process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(
                    _feed(process.stdin, workdir, given),
                    _drain(process.stdout, self.outcome.stdout),
                    _drain(process.stderr, self.outcome.stderr),
                    self.collect(reader),
                )
                self.outcome.exit_code = await process.wait()
        except TimeoutError:
            self.outcome.killed = True
            logger.warning("a sandbox outlived its wall-clock limit and was killed from outside")
        finally:
            if process.returncode is None:
                # bwrap's monitor: --die-with-parent takes pid 1 along, and the pid namespace ends with it
                process.kill()
                self.outcome.exit_code = await process.wait()

    async def collect(self, reader: asyncio.StreamReader) -> None:
        """The supervisor's status, and the workspace it sends back written into staging."""
        try:
            self.outcome.status = await transfer.status(reader)
            if self.outcome.status.changed:
                self.staging.mkdir(mode=0o700)
                await transfer.receive(reader, self.staging, self.max_bytes)
        except (transfer.TransferError, OSError) as error:
            self.outcome.problem = str(error)
            if self.process.returncode is None:
                self.process.kill()


async def _pipe_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=transfer.LINE_LIMIT)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def _feed(stdin: asyncio.StreamWriter, workdir: Path, given: bytes | None) -> None:
    """The container's files, then the program's stdin."""
    try:
        await transfer.send(stdin, workdir)
        stdin.write(transfer.END)
        if given:
            stdin.write(given)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the supervisor stopped reading: the files did not fit (it says so), or it died
    finally:
        stdin.close()


async def _drain(stream: asyncio.StreamReader, capture: Capture) -> None:
    while chunk := await stream.read(CHUNK):
        room = capture.cap - len(capture.data)
        capture.data += chunk[:room]
        capture.dropped += max(0, len(chunk) - room)


def _swap(workdir: Path, staging: Path) -> None:
    """Puts staging in workdir's place (two renames: a container's directory is never half-written)."""
    old = workdir.with_name(f".{workdir.name}.old-{secrets.token_hex(8)}")
    os.rename(workdir, old)
    try:
        os.rename(staging, workdir)
    except OSError:
        os.rename(old, workdir)
        raise
    transfer.remove_tree(old)
