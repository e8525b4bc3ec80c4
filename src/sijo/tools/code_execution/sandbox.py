"""code_execution's sandbox: one bash command, or one text-editor request, run on a container's files
inside bubblewrap (bwrap.py says what the sandbox sees), keeping what it changed.

One execution, under a lock per container directory:
    1. the host streams the container's files into the sandbox's WORKSPACE, a size-limited tmpfs
       (transfer.send); the supervisor (supervisor.py, the sandbox's pid 1) writes them there
    2. the supervisor runs the program under rlimits (CPU seconds, address space, processes, file
       size); stdout and stderr come back read incrementally, each capped at max_output_bytes
    3. when the program exits, or at the wall-clock limit, the supervisor kills everything else in
       the sandbox; if WORKSPACE changed it streams it back, and the host writes it into a fresh
       directory beside the container's (transfer.receive, capped), then swaps it in
    4. a backstop: whatever happens inside, the host kills the sandbox (and with it the pid
       namespace) at wall_seconds + grace

Disk: the workspace tmpfs caps what code can write (workspace_bytes) and the host keeps at most that
much of it; /tmp (tmp_bytes) and /dev/shm are capped tmpfs too and are thrown away after each run.

Errors: SandboxUnavailableError when bubblewrap is missing or cannot start a sandbox (check() caches
the answer; bash() and edit() raise it too). Failures of the code are results, not errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sijo.config import SandboxConfig
from sijo.tools.code_execution import bwrap, supervision
from sijo.tools.code_execution.supervision import Job, Outcome

DEFAULT_WORKSPACE_BYTES = 1024 * 1024 * 1024
DEFAULT_TMP_BYTES = 256 * 1024 * 1024
DEFAULT_GRACE_SECONDS = 15.0
_PYTHONS = ("/usr/local/bin/python3", "/usr/bin/python3", "/bin/python3")
_INSTALL = "install it with `apt-get install bubblewrap` (or your system's package of bubblewrap)"
_USERNS = (
    "bubblewrap needs unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1 where "
    "that exists, and on Ubuntu 23.10 or later an AppArmor profile allowing bwrap (or sysctl "
    "kernel.apparmor_restrict_unprivileged_userns=0)"
)
_EDIT_RESULTS = frozenset(
    {
        "text_editor_code_execution_view_result",
        "text_editor_code_execution_create_result",
        "text_editor_code_execution_str_replace_result",
        "text_editor_code_execution_tool_result_error",
    }
)


class SandboxUnavailableError(Exception):
    """bubblewrap is missing, or cannot start a sandbox here; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Execution:
    stdout: str  # UTF-8, undecodable bytes replaced; cut at max_output_bytes, the cut said in the text
    stderr: str
    return_code: int  # 128 + N when a signal N ended it (137: killed at the wall-clock limit)
    timed_out: bool  # the wall-clock or the CPU limit ended it


class Sandbox:
    def __init__(
        self,
        config: SandboxConfig,
        *,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        tmp_bytes: int = DEFAULT_TMP_BYTES,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.config = config
        self.workspace_bytes = workspace_bytes
        self.tmp_bytes = tmp_bytes
        self.grace_seconds = grace_seconds
        self._identity = bwrap.Identity.for_this_process()
        self._etc = bwrap.etc_files(self._identity)
        self._system = bwrap.system_arguments()
        self._python = _find_python() or "/usr/bin/python3"
        self._setpriv = shutil.which("setpriv", path=bwrap.PATH)
        self._supervisor = _source("supervisor.py")
        self._editor = _source("editor.py")
        self._problem: SandboxUnavailableError | None = None
        self._checked = False
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # Availability

    def check(self) -> None:
        """Raises SandboxUnavailableError unless a sandbox can start here (asked once)."""
        if not self._checked:
            self._problem = self._probe()
            self._checked = True
        if self._problem is not None:
            raise self._problem

    def _probe(self) -> SandboxUnavailableError | None:
        executable = shutil.which(self.config.bwrap)
        if executable is None:
            return SandboxUnavailableError(f"bubblewrap ({self.config.bwrap!r}) was not found: {_INSTALL}")
        if _find_python() is None:
            return SandboxUnavailableError(f"the sandbox runs code with python3, and none is in {_PYTHONS}")
        if self._identity.switch and self._setpriv is None:
            return SandboxUnavailableError(
                "Sijo runs as root: it needs setpriv (util-linux) to start sandboxes as nobody"
            )
        with self._data_fds() as fds:
            try:
                done = subprocess.run(
                    self._command(fds, ["-c", "print('ok')"]),
                    capture_output=True,
                    timeout=30,
                    pass_fds=list(fds.values()),
                    cwd="/",
                    env={"PATH": bwrap.PATH},
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                return SandboxUnavailableError(f"bubblewrap ({executable}) cannot run: {error}")
        if done.returncode != 0 or done.stdout.strip() != b"ok":
            said = done.stderr.decode(errors="replace").strip()
            return SandboxUnavailableError(
                f"bubblewrap ({executable}) cannot start a sandbox: {said}. {_USERNS}"
            )
        return None

    # The two programs

    async def bash(self, workdir: Path, command: str) -> Execution:
        """`bash -c command` in the container whose files are in workdir."""
        job = Job(["/bin/bash", "-c", command], None, self.config.max_output_bytes)
        outcome = await self._execute(workdir, job)
        stderr = outcome.stderr.text()
        if outcome.problem is not None:
            stderr += f"\nsijo: the workspace could not be kept: {outcome.problem}\n"
        if outcome.status is not None:
            return_code = outcome.status.return_code
        else:  # the backstop killed it (128 + SIGKILL), or the supervisor died
            return_code = 137 if outcome.killed else (outcome.exit_code or 1)
        return Execution(outcome.stdout.text(), stderr, return_code, outcome.timed_out)

    async def edit(self, workdir: Path, request: dict[str, Any]) -> dict[str, Any]:
        """The text editor's result content for the model's tool input (editor.py), run inside the
        sandbox so that no path or symlink of the code's can reach a host file."""
        envelope = json.dumps({"request": request, "max_bytes": self.config.max_output_bytes})
        # Room for the content, JSON's escapes of it, and the rest of the result.
        cap = 8 * self.config.max_output_bytes + 65536
        program = [self._python, "-I", "-S", "-c", self._editor]
        outcome = await self._execute(workdir, Job(program, envelope.encode(), cap))
        if outcome.timed_out:
            return _edit_error("execution_time_exceeded", "the edit ran out of time")
        try:
            result = None if outcome.stdout.dropped else json.loads(outcome.stdout.data)
        except ValueError:
            result = None
        if not isinstance(result, dict) or result.get("type") not in _EDIT_RESULTS:
            said = outcome.stderr.text().strip()[-500:]
            return _edit_error("unavailable", f"the editor failed: {said or 'no result'}")
        if outcome.problem is not None:
            return _edit_error("unavailable", f"the file could not be kept: {outcome.problem}")
        return result

    # One run

    async def _execute(self, workdir: Path, job: Job) -> Outcome:
        await self._ensure_available()
        if not workdir.is_dir():
            raise FileNotFoundError(f"no container's files at {workdir}")
        deadline = self.config.wall_seconds + self.grace_seconds
        async with self._lock(workdir):
            start = functools.partial(self._start, job)
            return await supervision.run(start, workdir, job, deadline, self.workspace_bytes)

    async def _ensure_available(self) -> None:
        if not self._checked:
            await asyncio.to_thread(self.check)
        self.check()

    @contextlib.asynccontextmanager
    async def _lock(self, workdir: Path) -> AsyncIterator[None]:
        key = str(workdir.resolve())
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            yield

    async def _start(self, job: Job, status_fd: int) -> asyncio.subprocess.Process:
        config = self.config
        # max_processes + 1: the supervisor counts among the sandbox's processes
        limits = [config.cpu_seconds, config.memory_mb * 1024 * 1024, config.max_processes + 1]
        arguments = [status_fd, config.wall_seconds, *limits, config.max_file_bytes, len(job.given or b"")]
        supervisor = ["-c", self._supervisor, *map(str, arguments), "--", *job.program]
        with self._data_fds() as fds:
            return await asyncio.create_subprocess_exec(
                *self._command(fds, supervisor),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=[*fds.values(), status_fd],
                cwd="/",
                env={"PATH": bwrap.PATH},  # none of Sijo's environment, not even to bwrap
            )

    # Pieces

    def _command(self, fds: dict[str, int], python_arguments: list[str]) -> list[str]:
        """bwrap (started as the sandbox's user) running the sandbox's python."""
        executable = shutil.which(self.config.bwrap) or self.config.bwrap
        options = bwrap.arguments(self._system, fds, self.workspace_bytes, self.tmp_bytes)
        launcher = self._identity.launcher(self._setpriv or "setpriv")
        return [*launcher, executable, *options, "--", self._python, "-I", "-S", *python_arguments]

    @contextlib.contextmanager
    def _data_fds(self) -> Iterator[dict[str, int]]:
        """The /etc files written for the sandbox, each in a memfd for --ro-bind-data."""
        fds: dict[str, int] = {}
        try:
            for name, content in self._etc.items():
                fds[name] = os.memfd_create(f"sijo-etc-{name}", os.MFD_CLOEXEC)
                os.write(fds[name], content)
                os.lseek(fds[name], 0, os.SEEK_SET)
            yield fds
        finally:
            for fd in fds.values():
                os.close(fd)


def _source(name: str) -> str:
    return resources.files("sijo.tools.code_execution").joinpath(name).read_text(encoding="utf-8")


def _find_python() -> str | None:
    return next((path for path in _PYTHONS if os.access(path, os.X_OK)), None)


def _edit_error(code: str, message: str) -> dict[str, Any]:
    return {
        "type": "text_editor_code_execution_tool_result_error",
        "error_code": code,
        "error_message": message,
    }
