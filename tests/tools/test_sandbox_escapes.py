"""The sandbox's guards, each tried by code that would get through without it: no network, no host
process or file, a read-only system, an unprivileged user, limits of time, memory, processes, file
and disk size, nothing outliving its execution, containers apart, and no symlink reaching a host
file through the text editor or through the files coming back.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sijo
from sijo.tools.code_execution import Containers, Sandbox, bwrap, transfer
from tests.tools.sandboxes import WORKSPACE_ID, make_sandbox


@pytest.fixture
def token() -> str:
    return secrets.token_hex(8)


def processes_with(marker: str, program: bytes | None = None) -> list[int]:
    """Host pids whose command line holds marker (and whose argv[0] is program, if given)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(marker.encode() in arg for arg in argv) and program in (None, argv[0]):
                found.append(int(entry.name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# What the code can reach


async def test_no_network_not_even_the_hosts_loopback(sandbox: Sandbox, workdir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        script = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('connected')\n"
            "except OSError as error:\n"
            "    print('refused', error.errno)\n"
        )
        result = await sandbox.bash(
            workdir, f'python3 -c "{script}"; cat /proc/net/dev | tail -n +3 | cut -d: -f1'
        )

    assert result.stdout.startswith("refused"), result
    assert result.stdout.split("\n")[1:] == ["    lo", ""]  # its own loopback, nothing else


async def test_no_abstract_unix_socket_of_the_host(sandbox: Sandbox, workdir: Path, token: str) -> None:
    name = f"\0sijo-test-{token}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(name)
        listener.listen()
        script = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({name!r}); print('connected')"
        result = await sandbox.bash(workdir, f'python3 -c "{script}"')

    assert "ConnectionRefusedError" in result.stderr and "connected" not in result.stdout


async def test_only_its_own_processes_are_visible(
    sandbox: Sandbox, workdir: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("SIJO_TEST_SECRET", token)
    script = (
        "import json, os\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "lines = [open(f'/proc/{p}/cmdline', 'rb').read() for p in pids]\n"
        "print(json.dumps([pids, any(b'py' b'test' in line for line in lines)]))\n"
    )
    result = await sandbox.bash(
        workdir,
        f"python3 -c \"{script}\"; cat /proc/*/environ | tr '\\0' '\\n' | grep -c {token}; env | grep -c {token}",
    )
    listed, environment, own_environment = result.stdout.splitlines()
    pids, pytest_seen = json.loads(listed)

    assert pids[0] == 1 and len(pids) < 10 and max(pids) < 100, pids  # pid 1 is the supervisor
    assert os.getpid() not in pids and not pytest_seen
    assert environment == own_environment == "0"


async def test_the_file_system_is_only_the_system_and_the_workspace(sandbox: Sandbox, workdir: Path) -> None:
    expected = {"dev", "etc", "proc", "tmp", "usr", "workspace"}
    expected |= {name for name in bwrap.TOP_LEVEL if os.path.lexists(f"/{name}")}

    result = await sandbox.bash(workdir, "ls -A /; echo; ls -A /etc; echo; ls -A /dev")
    top, etc, dev = (part.split() for part in result.stdout.split("\n\n"))

    assert set(top) == expected
    allowed_etc = {*bwrap.ETC_ENTRIES, *bwrap.etc_files(bwrap.Identity(1, 1, False))}
    assert set(etc) <= allowed_etc | {p.name for p in Path("/etc").glob("python3*")}, etc
    assert {"passwd", "ld.so.cache"} <= set(etc)
    assert "shadow" not in etc and "hostname" not in etc
    assert set(dev) <= {"console", "core", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr",
                        "stdin", "stdout", "tty", "urandom", "zero"}  # fmt: skip


async def test_host_files_are_out_of_sight(
    sandbox: Sandbox, workdir: Path, tmp_path: Path, token: str
) -> None:
    data_secret = tmp_path / "data" / f"secret-{token}.txt"
    data_secret.parent.mkdir()
    data_secret.write_text(token)
    home_secret = Path.home() / f".sijo-test-secret-{token}"
    home_secret.write_text(token)
    source = Path(sijo.__file__).parent
    try:
        paths = " ".join(
            str(p) for p in (data_secret, home_secret, source / "config.py", workdir, Path.home())
        )
        result = await sandbox.bash(
            workdir,
            f"for p in {paths}; do test -e $p && echo VISIBLE $p; done; cat {data_secret} {home_secret}; "
            f"find / -path /proc -prune -o -path /usr -prune -o -name '*{token}*' -print",
        )
    finally:
        home_secret.unlink()

    assert token not in result.stdout and "VISIBLE" not in result.stdout, result.stdout
    assert result.stderr.count("No such file or directory") == 2


async def test_the_system_is_read_only(sandbox: Sandbox, workdir: Path) -> None:
    result = await sandbox.bash(
        workdir,
        "for p in /usr /etc / /dev /proc; do touch $p/sijo-test 2>/dev/null && echo WROTE $p; done; "
        'awk \'$5 == "/usr" || $5 == "/" || $5 == "/dev" {print $5, $6}\' /proc/self/mountinfo',
    )

    assert "WROTE" not in result.stdout, result.stdout
    mounts = dict(line.split() for line in result.stdout.splitlines())
    assert mounts.keys() == {"/", "/usr", "/dev"}
    assert all(options.startswith("ro,") for options in mounts.values()), mounts
    assert not Path("/usr/sijo-test").exists()


async def test_tmp_is_its_own(sandbox: Sandbox, workdir: Path, token: str) -> None:
    host_file = Path("/tmp") / f"sijo-test-{token}"
    host_file.write_text(token)
    try:
        result = await sandbox.bash(
            workdir, f"ls /tmp; cat {host_file}; echo inside > /tmp/sijo-inside-{token}"
        )
    finally:
        host_file.unlink()

    assert token not in result.stdout and result.return_code == 0
    assert not Path(f"/tmp/sijo-inside-{token}").exists()


async def test_no_privilege(sandbox: Sandbox, workdir: Path) -> None:
    result = await sandbox.bash(
        workdir, "id -u; grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status | cut -f2 | sort -u"
    )

    uid, capabilities = result.stdout.split("\n", 1)
    assert uid != "0"
    assert capabilities == "0000000000000000\n"
    assert int(uid) == (bwrap.NOBODY if os.geteuid() == 0 else os.geteuid())


async def test_no_user_namespace_inside(sandbox: Sandbox, workdir: Path) -> None:
    result = await sandbox.bash(workdir, "unshare --user --map-root-user id -u")

    assert result.return_code != 0 and result.stdout == ""


async def test_a_session_of_its_own(sandbox: Sandbox, workdir: Path) -> None:
    result = await sandbox.bash(workdir, "python3 -c 'import os; print(os.getsid(0))'; exec 3<>/dev/tty")

    assert result.stdout == "1\n"  # the session of the sandbox's pid 1: no terminal of the host's
    assert "No such device or address" in result.stderr


# Limits


async def test_wall_clock(workdir: Path) -> None:
    sandbox = make_sandbox(wall_seconds=1.0)
    started = time.monotonic()

    result = await sandbox.bash(workdir, "echo before; sleep 30; echo after")

    assert time.monotonic() - started < 4
    assert (result.stdout, result.return_code, result.timed_out) == ("before\n", 137, True)


async def test_cpu_seconds(workdir: Path) -> None:
    sandbox = make_sandbox(cpu_seconds=1, wall_seconds=20.0)
    started = time.monotonic()

    result = await sandbox.bash(workdir, "python3 -c 'while True: pass'")

    assert time.monotonic() - started < 6
    assert result.timed_out and result.return_code in (128 + signal.SIGXCPU, 128 + signal.SIGKILL)


async def test_memory(workdir: Path) -> None:
    sandbox = make_sandbox(memory_mb=100)

    result = await sandbox.bash(workdir, "python3 -c 'b = bytearray(300 * 2**20); print(len(b))'")

    assert result.return_code == 1 and "MemoryError" in result.stderr, result


async def test_process_count(workdir: Path) -> None:
    sandbox = make_sandbox(max_processes=10)
    script = (
        "import subprocess\n"
        "started = []\n"
        "for _ in range(50):\n"
        "    try:\n"
        "        started.append(subprocess.Popen(['sleep', '5']))\n"
        "    except OSError as error:\n"
        "        print(error.strerror)\n"
        "        break\n"
        "print(len(started))\n"
    )

    result = await sandbox.bash(workdir, f'python3 -c "{script}"')

    refusal, count = result.stdout.split("\n")[:2]
    assert refusal == "Resource temporarily unavailable"
    assert int(count) <= 10


async def test_a_fork_bomb_stays_inside(workdir: Path) -> None:
    sandbox = make_sandbox(max_processes=32, wall_seconds=2.0)
    bomb = asyncio.create_task(sandbox.bash(workdir, "bomb() { bomb | bomb & }; bomb; sleep 10"))
    await asyncio.sleep(0.5)

    started = time.monotonic()
    done = await asyncio.create_subprocess_exec("true")
    await done.wait()
    host_spawn = time.monotonic() - started
    result = await bomb

    assert host_spawn < 1.0
    assert result.timed_out
    assert "Resource temporarily unavailable" in result.stderr


async def test_file_size(workdir: Path) -> None:
    sandbox = make_sandbox(max_file_bytes=1024 * 1024)

    result = await sandbox.bash(workdir, "head -c 2000000 /dev/zero > big; stat -c %s big")

    assert "File size limit exceeded" in result.stderr
    assert result.stdout == "1048576\n"


async def test_the_workspace_cannot_fill_the_disk(workdir: Path) -> None:
    sandbox = make_sandbox(workspace_bytes=8 * 1024 * 1024)

    result = await sandbox.bash(
        workdir, "for i in $(seq 100); do head -c 1000000 /dev/zero > f$i || break; done; echo stopped at $i"
    )

    assert "No space left on device" in result.stderr
    assert int(result.stdout.split()[-1]) < 10
    kept = sum(p.stat().st_size for p in workdir.rglob("*"))
    assert kept <= 8 * 1024 * 1024


@pytest.mark.parametrize("path", ["/tmp", "/dev/shm"])
async def test_scratch_space_is_capped(workdir: Path, path: str) -> None:
    sandbox = make_sandbox(tmp_bytes=4 * 1024 * 1024)

    result = await sandbox.bash(workdir, f"head -c 100000000 /dev/zero > {path}/big; stat -c %s {path}/big")

    assert "No space left on device" in result.stderr
    assert int(result.stdout) <= bwrap.SHM_BYTES


# Nothing outlives its execution


async def test_background_processes_end_with_the_execution(
    sandbox: Sandbox, workdir: Path, token: str
) -> None:
    marker = f"1000.{int(token, 16) % 10**6}"
    command = (
        f"sleep {marker} & setsid sleep {marker} & (sleep {marker} &) ; "
        f"nohup sleep {marker} > /dev/null 2>&1 & disown; (sleep 0.3; echo late > late.txt) & echo started"
    )
    started = time.monotonic()

    result = await sandbox.bash(workdir, command)
    try:
        assert time.monotonic() - started < 3
        assert result.stdout == "started\n"
        assert processes_with(marker) == []
    finally:
        kill_all(processes_with(marker))
    await asyncio.sleep(0.5)
    assert not (workdir / "late.txt").exists()
    assert "late" not in (await sandbox.bash(workdir, "ls")).stdout


async def test_a_cancelled_execution_leaves_nothing_running(
    sandbox: Sandbox, workdir: Path, token: str
) -> None:
    marker = f"1000.{int(token, 16) % 10**6}"
    run = asyncio.create_task(sandbox.bash(workdir, f"sleep {marker}"))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if processes_with(marker, b"sleep"):
            break
    run.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await run
        assert _until(lambda: processes_with(marker) == [], 2)
        assert sorted(p.name for p in workdir.parent.iterdir()) == ["container.json", "workspace"]
    finally:
        kill_all(processes_with(marker))


async def test_the_code_cannot_stop_the_supervisor(sandbox: Sandbox, workdir: Path) -> None:
    """Its pid 1 is immune to the code's signals, and its pipes out of reach."""
    result = await sandbox.bash(
        workdir,
        "echo kept > kept.txt; "
        "for p in /proc/[0-9]*; do [ ${p#/proc/} != $$ ] && kill -STOP ${p#/proc/} && kill -KILL ${p#/proc/}; done; "
        "ls /proc/1/fd > /dev/null && echo LISTED; for fd in /proc/1/fd/*; do echo '{}' > $fd && echo WROTE; done; "
        "echo alive",
    )

    assert result.stdout == "alive\n", result
    assert "Permission denied" in result.stderr
    assert (workdir / "kept.txt").read_text() == "kept\n"


async def test_the_host_kills_a_sandbox_that_overstays(workdir: Path) -> None:
    """The backstop: a supervisor that cannot keep time (stopped here from the host)."""
    sandbox = make_sandbox(wall_seconds=1.0, grace_seconds=1.0)
    run = asyncio.create_task(sandbox.bash(workdir, "sleep 30"))
    supervisors: list[int] = []
    for _ in range(100):
        await asyncio.sleep(0.02)
        supervisors = [
            pid for pid in processes_with("_kill_everyone_else") if _grandparent(pid) == os.getpid()
        ]
        if supervisors:
            break
    assert supervisors
    os.kill(supervisors[0], signal.SIGSTOP)
    try:
        result = await asyncio.wait_for(run, 10)
        assert result.timed_out and result.return_code == 137
        assert _until(lambda: not _alive(supervisors[0]), 3)
    finally:
        kill_all(supervisors)


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name: state, parent, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _grandparent(pid: int) -> int:
    try:
        return int(_stat(int(_stat(pid)[1]))[1])
    except (OSError, ValueError, IndexError):
        return -1


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def test_the_sandbox_dies_with_sijo(workdir: Path, token: str) -> None:
    marker = f"1000.{int(token, 16) % 10**6}"
    program = (
        "import asyncio, os, pathlib\n"
        "from sijo.config import SandboxConfig\n"
        "from sijo.tools.code_execution import Sandbox\n"
        "sandbox = Sandbox(SandboxConfig(wall_seconds=60))\n"
        "asyncio.run(sandbox.bash(pathlib.Path(os.environ['WORKDIR']), os.environ['COMMAND']))\n"
    )
    # The command travels in the environment: the marker is only ever in the sandbox's command line.
    environment = {**os.environ, "WORKDIR": str(workdir), "COMMAND": f"sleep {marker}"}
    sijo_process = subprocess.Popen([sys.executable, "-c", program], env=environment)
    try:
        # The sleep itself, not just bwrap: bwrap ties itself to its parent only once it has set up.
        assert _until(lambda: processes_with(marker, b"sleep") != [], 10), "the sandbox did not start"
        sijo_process.kill()
        sijo_process.wait()
        assert _until(lambda: processes_with(marker) == [], 3)
    finally:
        sijo_process.kill()
        kill_all(processes_with(marker))


def _until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


# Containers apart, and no symlink reaching the host


async def test_containers_cannot_see_each_other(sandbox: Sandbox, containers: Containers, token: str) -> None:
    first = containers.create(WORKSPACE_ID).path
    second = containers.create("wrkspc_other").path
    await sandbox.bash(first, f"echo {token} > secret-{token}.txt")

    writer, looker = await asyncio.gather(
        sandbox.bash(first, f"echo {token} > more-{token}.txt; sleep 1"),
        sandbox.bash(
            second, f"sleep 0.3; find / -path /proc -prune -o -path /usr -prune -o -name '*{token}*' -print"
        ),
    )

    assert writer.return_code == 0
    assert looker.stdout == "" and looker.return_code == 0


@pytest.fixture
def host_secret(tmp_path: Path, token: str) -> Iterator[Path]:
    secret = tmp_path / "host" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(f"host secret {token}\n")
    yield secret


async def test_the_editor_does_not_follow_links_to_the_host(
    sandbox: Sandbox, workdir: Path, host_secret: Path, token: str
) -> None:
    await sandbox.bash(
        workdir, f"ln -s /etc/shadow shadow; ln -s {host_secret} secret; ln -s {host_secret.parent} secrets"
    )

    views = [await sandbox.edit(workdir, {"command": "view", "path": name}) for name in ("shadow", "secret")]
    listing = await sandbox.edit(workdir, {"command": "view", "path": "secrets"})
    replaced = await sandbox.edit(
        workdir, {"command": "str_replace", "path": "secret", "old_str": "host", "new_str": "HACKED"}
    )
    created = await sandbox.edit(workdir, {"command": "create", "path": "secret", "file_text": "HACKED"})
    created_inside = await sandbox.edit(
        workdir, {"command": "create", "path": "secrets/new", "file_text": "x"}
    )

    assert [v["error_code"] for v in views] == ["file_not_found", "file_not_found"]
    assert token not in str(listing) and "secret.txt" not in str(listing)
    assert replaced["error_code"] == "file_not_found"
    assert created["type"] == created_inside["type"] == "text_editor_code_execution_tool_result_error"
    assert host_secret.read_text() == f"host secret {token}\n"
    assert sorted(p.name for p in host_secret.parent.iterdir()) == ["secret.txt"]


def h(path: str) -> str:
    """A path as the workspace stream writes it: the hex of its bytes."""
    return path.encode().hex()


def stream(*lines: str, data: bytes = b"") -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for line in lines:
        reader.feed_data(line.encode() + b"\n")
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@pytest.mark.parametrize(
    "lines",
    [
        [f"f {h('../escaped')} 420 0 0"],
        [f"f {h('/tmp/escaped')} 420 0 0"],
        [f"d {h('d/../..')} 493"],
        [f"l {h('link')} {h('OUTSIDE')}", f"f {h('link/escaped')} 420 0 0"],
        [f"l {h('link')} {h('OUTSIDE')}", f"d {h('link/escaped')} 493"],
        [f"l {h('link')} {h('OUTSIDE/escaped')}", f"f {h('link')} 420 0 0"],
        [f"d {h('d')} 493", f"l {h('d/link')} {h('OUTSIDE')}", f"l {h('d/link/escaped')} {h('x')}"],
        [f"f {h('a')} 420 -1 0"],
        ["f zz 420 0 0"],
        [f"f {h('a')} 420 0 0 extra"],
    ],
)
async def test_what_comes_back_cannot_write_outside(tmp_path: Path, lines: list[str]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "incoming"
    target.mkdir()
    resolved = [line.replace(h("OUTSIDE"), h(str(outside))) for line in lines]

    with pytest.raises((transfer.TransferError, OSError)):
        await transfer.receive(stream(*resolved, "e"), target, 1000)

    assert list(outside.iterdir()) == [] and not (tmp_path / "escaped").exists()


async def test_what_comes_back_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(transfer.TransferError, match="more than 1000 bytes"):
        await transfer.receive(stream(f"f {h('big')} 420 2000 0", data=bytes(2000)), tmp_path, 1000)

    monkeypatch.setattr(transfer, "MAX_ENTRIES", 3)
    (tmp_path / "many").mkdir()
    with pytest.raises(transfer.TransferError, match="more than 3 entries"):
        await transfer.receive(
            stream(*(f"d {h(f'd{n}')} 493" for n in range(5)), "e"), tmp_path / "many", 1000
        )

    reader = asyncio.StreamReader(limit=transfer.LINE_LIMIT)
    reader.feed_data(b"d " + b"61" * transfer.LINE_LIMIT)
    with pytest.raises(transfer.TransferError, match="broken line"):
        await transfer.receive(reader, tmp_path / "many", 1000)


async def test_what_comes_back_intact(tmp_path: Path) -> None:
    """The same stream, well formed, is written as it says."""
    lines = [
        f"d {h('d')} 488",
        f"f {h('d/x.txt')} 416 5 1700000000000000000",
        f"l {h('link')} {h('/etc/shadow')}",
        "e",
    ]

    await transfer.receive(
        stream(*lines[:2], data=b"hello" + "\n".join(lines[2:]).encode() + b"\n"), tmp_path, 1000
    )

    assert (tmp_path / "d" / "x.txt").read_bytes() == b"hello"
    assert oct((tmp_path / "d" / "x.txt").stat().st_mode & 0o777) == oct(0o640)
    assert (tmp_path / "d" / "x.txt").stat().st_mtime_ns == 1700000000000000000
    assert os.readlink(tmp_path / "link") == "/etc/shadow"
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == oct(0o750)
