"""The sandbox's pid 1: the program bubblewrap starts in every sandbox. The system's `python3 -I -S`
runs it, so it uses the standard library only, and little of it (imports are most of its start-up
time, which every execution waits for), and nothing of Sijo's (Python 3.9 or later).

    argv                      STATUS_FD WALL_SECONDS CPU_SECONDS MEMORY PROCESSES FILE INPUT_SIZE
                              -- PROGRAM [ARGS...]
    stdin (host -> it)        the container's files as a workspace stream, then INPUT_SIZE bytes
                              for the program's stdin (the program gets /dev/null when it is 0)
    the supervisor            writes the files into WORKSPACE (a size-limited tmpfs), runs the
                              program under the rlimits, its stdout and stderr going straight to
                              the host, and when it exits or the wall clock runs out kills every
                              other process in the sandbox
    STATUS_FD (it -> host)    "s RETURN_CODE TIMED_OUT CHANGED LOADED" (the flags 0 or 1), then,
                              when the workspace changed, the workspace stream

The workspace stream: one ASCII line per entry, parents before children, paths relative and
written as the hex of their bytes; a file's line is followed by exactly SIZE raw bytes.

    d PATH MODE                       a directory
    f PATH MODE SIZE MTIME_NS         a regular file
    l PATH TARGET                     a symlink (TARGET in hex too)
    e                                 the end

Being pid 1 of its own pid namespace, the supervisor cannot be killed or stopped by the code it
runs; it also makes itself non-dumpable, so that code can neither ptrace it nor open its file
descriptors (the status pipe) through /proc/1/fd.
"""

from __future__ import annotations

import os
import resource
import stat
import sys

TYPE_CHECKING = False  # not typing's: importing typing, like signal, costs milliseconds at each start
if TYPE_CHECKING:
    import signal
    from typing import IO
else:
    import _signal as signal  # the C module under `signal`, without the enums that take ~5 ms to build

WORKSPACE = "/workspace"
CHUNK = 1 << 16
_PR_SET_DUMPABLE = 4
_CPU_SLACK = 0.05  # seconds: a program that used its whole CPU budget, give or take the clock's tick

Snapshot = dict[bytes, tuple[int, int, int, int]]


def main(argv: list[str]) -> None:
    _make_undumpable()
    status_fd, wall, input_size = int(argv[0]), float(argv[1]), int(argv[6])
    cpu, memory, processes, file_size = (int(number) for number in argv[2:6])
    program = argv[8:]  # after "--"
    os.set_inheritable(status_fd, False)
    source = os.fdopen(0, "rb")
    loaded = _load(source)
    given = source.read(input_size) if input_size and loaded else None
    source.close()
    os.open(os.devnull, os.O_RDONLY)  # fd 0 again, so that no pipe of ours gets that number
    before = _scan(WORKSPACE)
    return_code, timed_out = _run(program, given, wall, (cpu, memory, processes, file_size))
    _kill_everyone_else()
    changed = loaded and _scan(WORKSPACE) != before
    try:
        with os.fdopen(status_fd, "wb") as sink:
            sink.write(b"s %d %d %d %d\n" % (return_code, timed_out, changed, loaded))
            if changed:
                _dump(sink, WORKSPACE)
            sink.write(b"e\n")
    except BrokenPipeError:
        pass  # the host stopped listening (it gave up on this execution)
    os._exit(min(return_code, 255))


def _make_undumpable() -> None:
    import ctypes  # only here: the sandbox has no use for it otherwise

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _say(message: str) -> None:
    os.write(2, f"sijo: {message}\n".encode(errors="replace"))


# The workspace, in and out


def _load(source: IO[bytes]) -> bool:
    """Writes the host's stream into WORKSPACE; False when it did not all fit (then nothing the run
    changes is kept, lest the container lose the files that did not fit)."""
    root = os.fsencode(WORKSPACE) + b"/"
    modes: list[tuple[bytes, int]] = []
    try:
        while True:
            kind, *fields = source.readline().split()
            if kind == b"e":
                return True
            path = root + bytes.fromhex(fields[0].decode())
            if kind == b"d":
                os.mkdir(path, 0o700)
                modes.append((path, int(fields[1])))
            elif kind == b"f":
                _write_file(source, path, int(fields[1]), int(fields[2]), int(fields[3]))
            elif kind == b"l":
                os.symlink(bytes.fromhex(fields[1].decode()), path)
    except OSError as error:
        _say(
            f"the container's files do not fit in {WORKSPACE} ({error.strerror}); "
            "what this run changes will not be kept"
        )
        return False
    finally:
        for path, mode in reversed(modes):
            try:
                os.chmod(path, mode & 0o7777)
            except OSError:
                pass


def _write_file(source: IO[bytes], path: bytes, mode: int, size: int, mtime_ns: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        while size:
            chunk = source.read(min(CHUNK, size))
            if not chunk:
                raise OSError(0, "the stream ended inside a file")
            _write_all(fd, chunk)
            size -= len(chunk)
        os.fchmod(fd, mode & 0o7777)
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _scan(root: str) -> Snapshot:
    """Every entry under root, by path: any change to an entry's content, metadata or identity
    moves its ctime or inode, and the code cannot set a ctime."""
    found: Snapshot = {}
    pending = [os.fsencode(root)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            found[entry.path] = (info.st_mode, info.st_ino, info.st_ctime_ns, info.st_size)
            if stat.S_ISDIR(info.st_mode):
                pending.append(entry.path)
    return found


def _dump(sink: IO[bytes], root: str) -> None:
    """Writes WORKSPACE as a workspace stream. Everything in it is the sandbox user's, who may have
    made directories or files unreadable: they are made readable (their stream lines keep the modes
    the code gave them)."""
    top = os.fsencode(root)
    os.chmod(top, 0o755)
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = entry.path[len(top) + 1 :].hex().encode()
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                sink.write(b"d %s %d\n" % (path, stat.S_IMODE(info.st_mode)))
                _readable(entry.path, info.st_mode, 0o700)
                pending.append(entry.path)  # its entries follow its own line
            elif stat.S_ISLNK(info.st_mode):
                sink.write(b"l %s %s\n" % (path, os.readlink(entry.path).hex().encode()))
            elif stat.S_ISREG(info.st_mode):
                _dump_file(sink, entry.path, path)
            # FIFOs, sockets and devices stay behind


def _dump_file(sink: IO[bytes], full: bytes, path: bytes) -> None:
    mode = stat.S_IMODE(os.lstat(full).st_mode)
    _readable(full, mode, 0o400)
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        size = info.st_size
        sink.write(b"f %s %d %d %d\n" % (path, mode, size, info.st_mtime_ns))
        while size:
            chunk = file.read(min(CHUNK, size)) or bytes(min(CHUNK, size))  # keeps the framing
            sink.write(chunk)
            size -= len(chunk)


def _readable(path: bytes, mode: int, needed: int) -> None:
    if mode & needed != needed:
        try:
            os.chmod(path, stat.S_IMODE(mode) | needed)
        except OSError:
            pass


# The program


def _run(
    program: list[str], given: bytes | None, wall: float, limits: tuple[int, int, int, int]
) -> tuple[int, bool]:
    """Runs the program; its return code (128 + N when killed by signal N), and whether a limit of
    time (wall clock or CPU) ended it."""
    feed = os.pipe() if given is not None else None
    pid = os.fork()
    if pid == 0:
        _exec_child(program, feed, limits)
    # The alarm kills rather than raises: an exception thrown into whatever line runs when it rings
    # (with a short limit on a loaded machine, even the line before a `try`) would kill pid 1 and
    # lose the status. Killing every process here makes the wait below return, and the feed's
    # write fail, wherever they are.
    rang: list[bool] = []
    signal.signal(signal.SIGALRM, lambda *_: _ring(rang))
    signal.setitimer(signal.ITIMER_REAL, wall)
    try:
        if feed is not None and given is not None:
            os.close(feed[0])
            _feed(feed[1], given)
        status, usage = _wait_for(pid)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if rang:
        return 128 + signal.SIGKILL, True
    if os.WIFSIGNALED(status):
        out_of_cpu = usage.ru_utime + usage.ru_stime >= limits[0] - _CPU_SLACK
        return 128 + os.WTERMSIG(status), os.WTERMSIG(status) == signal.SIGXCPU or out_of_cpu
    return os.WEXITSTATUS(status), False


def _ring(rang: list[bool]) -> None:
    """The wall clock ran out: every other process of the sandbox's pid namespace is killed."""
    rang.append(True)
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _feed(fd: int, data: bytes) -> None:
    try:
        _write_all(fd, data)
    except BrokenPipeError:
        pass  # the program did not read it all
    finally:
        os.close(fd)


def _wait_for(pid: int) -> tuple[int, resource.struct_rusage]:
    """Waits for the child, reaping the orphans that the sandbox's processes leave to pid 1 as it
    goes (zombies would count against the process limit)."""
    while True:
        reaped, status, usage = os.wait4(-1, 0)
        if reaped == pid:
            return status, usage


def _exec_child(program: list[str], feed: tuple[int, int] | None, limits: tuple[int, int, int, int]) -> None:
    try:
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)  # Python's own choices, not the program's
        if feed is None:
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        else:
            os.dup2(feed[0], 0)
            os.close(feed[1])
        _set_limits(*limits)
        os.execv(program[0], program)
    except BaseException as error:
        _say(f"cannot run {program[0]}: {error}")
    finally:
        os._exit(126)


def _set_limits(cpu: int, memory: int, processes: int, file_size: int) -> None:
    _set_limit(resource.RLIMIT_CPU, cpu, cpu + 1)
    _set_limit(resource.RLIMIT_AS, memory, memory)
    # The sandbox is its own user namespace, which counts its own processes: this limit is this
    # sandbox's alone, whatever else runs under the same host user.
    _set_limit(resource.RLIMIT_NPROC, processes, processes)
    _set_limit(resource.RLIMIT_FSIZE, file_size, file_size)
    _set_limit(resource.RLIMIT_CORE, 0, 0)


def _set_limit(which: int, soft: int, hard: int) -> None:
    _, ceiling = resource.getrlimit(which)
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(which, (soft, hard))


def _kill_everyone_else() -> None:
    """kill(-1) from a pid namespace's init reaches every other process in it; it is repeated
    until pid 1 has no child left, so that nothing forked meanwhile survives."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


if __name__ == "__main__":
    main(sys.argv[1:])
