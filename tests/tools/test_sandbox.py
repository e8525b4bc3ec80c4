"""The code_execution sandbox as the tool uses it: bash and the text editor on a container's files,
state kept between runs, outputs capped, the event loop free. Its guards: test_sandbox_escapes.py.

These tests need bubblewrap; without it they fail (CI installs it) with a message saying so.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from sijo.config import SandboxConfig
from sijo.tools.code_execution import Containers, Sandbox, SandboxUnavailableError
from tests.tools.sandboxes import WORKSPACE_ID, make_sandbox


async def test_bash_runs_in_the_workspace(sandbox: Sandbox, workdir: Path) -> None:
    result = await sandbox.bash(workdir, "pwd; echo oops >&2; exit 3")

    assert result.stdout == "/workspace\n"
    assert result.stderr == "oops\n"
    assert (result.return_code, result.timed_out) == (3, False)


async def test_python_runs(sandbox: Sandbox, workdir: Path) -> None:
    result = await sandbox.bash(workdir, "python3 -c 'import json, sqlite3; print(json.dumps([1 + 1]))'")

    assert (result.stdout, result.return_code) == ("[2]\n", 0), result.stderr


async def test_files_persist_between_runs(sandbox: Sandbox, workdir: Path) -> None:
    (workdir / "given.txt").write_text("from the host\n")

    await sandbox.bash(
        workdir,
        "mkdir -p out/deep && echo made > out/deep/new.txt && rm given.txt && chmod +x out/deep/new.txt",
    )
    again = await sandbox.bash(
        workdir, "cat out/deep/new.txt; ls; test -x out/deep/new.txt && echo executable"
    )

    assert again.stdout == "made\nout\nexecutable\n"
    assert (workdir / "out/deep/new.txt").read_text() == "made\n"
    assert not (workdir / "given.txt").exists()
    assert sorted(p.name for p in workdir.parent.iterdir()) == ["container.json", "workspace"]


async def test_a_run_that_changes_nothing_leaves_the_files_alone(sandbox: Sandbox, workdir: Path) -> None:
    (workdir / "data.csv").write_text("a,b\n")
    before = (workdir.stat().st_ino, (workdir / "data.csv").stat().st_mtime_ns)

    await sandbox.bash(workdir, "cat data.csv > /dev/null; echo scratch > /tmp/x")

    assert (workdir.stat().st_ino, (workdir / "data.csv").stat().st_mtime_ns) == before


async def test_symlinks_and_modes_survive_the_round_trip(sandbox: Sandbox, workdir: Path) -> None:
    await sandbox.bash(workdir, "echo x > f && chmod 640 f && ln -s f link && mkdir d && chmod 750 d")
    result = await sandbox.bash(workdir, "stat -c '%n %a %F' f link d; readlink link")

    assert result.stdout == "f 640 regular file\nlink 777 symbolic link\nd 750 directory\nf\n"


async def test_files_the_code_made_unreadable_are_kept(sandbox: Sandbox, workdir: Path) -> None:
    await sandbox.bash(workdir, "mkdir d && echo inner > d/f && echo top > t && chmod 000 d/f t d")
    result = await sandbox.bash(workdir, "stat -c '%n %a' d t; chmod -R u+rwX . && cat d/f t")

    assert result.stdout.startswith("d 700\nt 600\n")  # owner access added on the way, nothing else
    assert result.stdout.endswith("inner\ntop\n")


async def test_stdout_is_capped_and_marked(workdir: Path) -> None:
    sandbox = make_sandbox(max_output_bytes=1000)

    result = await sandbox.bash(workdir, "head -c 5000000 /dev/zero | tr '\\0' a; echo done >&2")

    assert result.stdout.startswith("a" * 1000)
    assert "[output truncated: 4999000 more bytes]" in result.stdout
    assert result.stderr == "done\n"


async def test_endless_output_is_drained_not_kept(workdir: Path) -> None:
    sandbox = make_sandbox(max_output_bytes=100, wall_seconds=1.0)

    result = await sandbox.bash(workdir, "yes")

    assert result.timed_out
    assert len(result.stdout) < 200 and "output truncated" in result.stdout


async def test_output_that_is_not_utf8_is_replaced(sandbox: Sandbox, workdir: Path) -> None:
    result = await sandbox.bash(workdir, "printf 'caf\\xe9\\n'")

    assert result.stdout == "caf\ufffd\n"


async def test_a_signal_gives_128_plus_its_number(sandbox: Sandbox, workdir: Path) -> None:
    result = await sandbox.bash(workdir, "kill -TERM $$")

    assert (result.return_code, result.timed_out) == (143, False)


async def test_the_event_loop_keeps_running(sandbox: Sandbox, workdir: Path) -> None:
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    await sandbox.bash(workdir, "sleep 0.5; head -c 20000000 /dev/urandom > big.bin")
    await sandbox.edit(workdir, {"command": "create", "path": "more.txt", "file_text": "x" * 1_000_000})
    ticker.cancel()

    assert len(ticks) > 30
    assert max(later - earlier for earlier, later in itertools.pairwise(ticks)) < 0.2


async def test_containers_run_side_by_side(sandbox: Sandbox, containers: Containers) -> None:
    first, second = containers.create(WORKSPACE_ID).path, containers.create(WORKSPACE_ID).path

    results = await asyncio.gather(
        sandbox.bash(first, "sleep 0.5; echo one > mine.txt"),
        sandbox.bash(second, "sleep 0.5; echo two > mine.txt"),
    )

    assert [r.return_code for r in results] == [0, 0]
    assert ((first / "mine.txt").read_text(), (second / "mine.txt").read_text()) == ("one\n", "two\n")


async def test_runs_in_one_container_take_turns(sandbox: Sandbox, workdir: Path) -> None:
    await asyncio.gather(*(sandbox.bash(workdir, f"echo {n} >> log.txt") for n in range(5)))

    assert sorted((workdir / "log.txt").read_text().split()) == ["0", "1", "2", "3", "4"]


async def test_overhead_of_one_execution(sandbox: Sandbox, workdir: Path) -> None:
    await sandbox.bash(workdir, "true")
    started = time.perf_counter()
    for _ in range(20):
        await sandbox.bash(workdir, "true")
    mean = (time.perf_counter() - started) / 20

    assert mean < 0.5, f"{mean * 1000:.0f} ms per execution"


async def test_without_bwrap_nothing_runs(workdir: Path) -> None:
    sandbox = Sandbox(SandboxConfig(bwrap="/nonexistent/bwrap"))

    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        sandbox.check()
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        await sandbox.bash(workdir, "true")
    with pytest.raises(SandboxUnavailableError):
        await sandbox.edit(workdir, {"command": "view", "path": "."})


# The text editor


async def test_view_a_file(sandbox: Sandbox, workdir: Path) -> None:
    (workdir / "config.json").write_text('{\n  "setting": "value",\n  "debug": true\n}\n')

    result = await sandbox.edit(workdir, {"command": "view", "path": "config.json"})

    assert result == {
        "type": "text_editor_code_execution_view_result",
        "file_type": "text",
        "content": '{\n  "setting": "value",\n  "debug": true\n}\n',
        "num_lines": 4,
        "start_line": 1,
        "total_lines": 4,
    }


async def test_view_a_range_by_absolute_path(sandbox: Sandbox, workdir: Path) -> None:
    (workdir / "n.txt").write_text("".join(f"{n}\n" for n in range(1, 11)))

    part = await sandbox.edit(workdir, {"command": "view", "path": "/workspace/n.txt", "view_range": [3, 5]})
    tail = await sandbox.edit(workdir, {"command": "view", "path": "n.txt", "view_range": [9, -1]})
    outside = await sandbox.edit(workdir, {"command": "view", "path": "n.txt", "view_range": [12, 14]})

    assert (part["content"], part["start_line"], part["num_lines"], part["total_lines"]) == (
        "3\n4\n5\n",
        3,
        3,
        10,
    )
    assert tail["content"] == "9\n10\n"
    assert outside["error_code"] == "invalid_tool_input"


async def test_view_is_capped_by_whole_lines(workdir: Path) -> None:
    sandbox = make_sandbox(max_output_bytes=25)
    (workdir / "long.txt").write_text("".join(f"line {n}\n" for n in range(1, 100)))

    result = await sandbox.edit(workdir, {"command": "view", "path": "long.txt"})

    assert result["content"].startswith("line 1\nline 2\nline 3\n[truncated: lines 1-3 of 99")
    assert (result["num_lines"], result["total_lines"]) == (3, 99)


async def test_view_a_directory(sandbox: Sandbox, workdir: Path) -> None:
    await sandbox.bash(workdir, "mkdir -p src/pkg/deep && touch a.txt src/main.py src/pkg/deep/x .hidden")

    result = await sandbox.edit(workdir, {"command": "view", "path": "/workspace"})

    assert (
        result["content"]
        == "/workspace/\n/workspace/a.txt\n/workspace/src/\n/workspace/src/main.py\n/workspace/src/pkg/\n"
    )


async def test_create_then_update(sandbox: Sandbox, workdir: Path) -> None:
    created = await sandbox.edit(
        workdir, {"command": "create", "path": "dir/new.py", "file_text": "print(1)\n"}
    )
    updated = await sandbox.edit(
        workdir, {"command": "create", "path": "dir/new.py", "file_text": "print(2)\n"}
    )
    ran = await sandbox.bash(workdir, "python3 dir/new.py")

    assert created == {"type": "text_editor_code_execution_create_result", "is_file_update": False}
    assert updated["is_file_update"] is True
    assert ran.stdout == "2\n"
    assert (workdir / "dir/new.py").read_text() == "print(2)\n"


async def test_str_replace(sandbox: Sandbox, workdir: Path) -> None:
    (workdir / "config.json").write_text('{\n  "setting": "value",\n  "debug": true\n}\n')

    result = await sandbox.edit(
        workdir,
        {
            "command": "str_replace",
            "path": "config.json",
            "old_str": '"debug": true',
            "new_str": '"debug": false',
        },
    )

    assert result == {
        "type": "text_editor_code_execution_str_replace_result",
        "old_start": 3,
        "old_lines": 1,
        "new_start": 3,
        "new_lines": 1,
        "lines": ['-"debug": true', '+"debug": false'],
    }
    assert (workdir / "config.json").read_text() == '{\n  "setting": "value",\n  "debug": false\n}\n'


@pytest.mark.parametrize(
    ("old_str", "says"),
    [("absent", "was not found"), ("twice", "occurs 2 times"), ("", "must not be empty")],
)
async def test_str_replace_needs_exactly_one_match(
    sandbox: Sandbox, workdir: Path, old_str: str, says: str
) -> None:
    (workdir / "t.txt").write_text("twice twice\n")

    result = await sandbox.edit(
        workdir, {"command": "str_replace", "path": "t.txt", "old_str": old_str, "new_str": "x"}
    )

    assert result["type"] == "text_editor_code_execution_tool_result_error"
    assert result["error_code"] == "invalid_tool_input"
    assert says in result["error_message"]
    assert (workdir / "t.txt").read_text() == "twice twice\n"


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"command": "view", "path": "missing.txt"}, "file_not_found"),
        ({"command": "str_replace", "path": "missing.txt", "old_str": "a", "new_str": "b"}, "file_not_found"),
        ({"command": "delete", "path": "a.txt"}, "invalid_tool_input"),
        ({"command": "view"}, "invalid_tool_input"),
        ({"command": "create", "path": "a.txt"}, "invalid_tool_input"),
        ({"command": "create", "path": "/usr/bin/evil", "file_text": "x"}, "invalid_tool_input"),
        ({"command": "view", "path": "bin.dat"}, "invalid_tool_input"),
    ],
)
async def test_edit_errors(sandbox: Sandbox, workdir: Path, request_: dict[str, Any], code: str) -> None:
    (workdir / "bin.dat").write_bytes(b"\x00\x01\x02")

    result = await sandbox.edit(workdir, request_)

    assert result["type"] == "text_editor_code_execution_tool_result_error"
    assert result["error_code"] == code
    assert result["error_message"]


async def test_an_edit_that_runs_out_of_time(workdir: Path) -> None:
    sandbox = make_sandbox(wall_seconds=0.001)

    result = await sandbox.edit(workdir, {"command": "view", "path": "."})

    assert result["error_code"] == "execution_time_exceeded"
