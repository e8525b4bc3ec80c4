"""The text editor of `code_execution` (its `text_editor_code_execution` sub-tool), run inside the
sandbox by the system's `python3 -I -S` (standard library only, Python 3.9 or later), so that the
paths the model names, symlinks included, resolve in the sandbox's view and never in the host's.

stdin: {"request": <the model's tool input>, "max_bytes": N}; stdout: the result content, one of

    {"type": "text_editor_code_execution_view_result", "file_type": "text", "content",
     "num_lines", "start_line", "total_lines"}
    {"type": "text_editor_code_execution_create_result", "is_file_update"}
    {"type": "text_editor_code_execution_str_replace_result", "old_start", "old_lines",
     "new_start", "new_lines", "lines"}
    {"type": "text_editor_code_execution_tool_result_error", "error_code", "error_message"}
        error_code: invalid_tool_input | file_not_found

Relative paths are relative to the workspace. `view` shows a file's text (at most N bytes of it, whole
lines) or a directory's entries two levels deep; `create` writes a file (and its parent
directories); `str_replace` replaces the one occurrence of old_str.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

WORKSPACE = "/workspace"
_BINARY_PROBE = 8192


class EditError(Exception):
    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def main() -> None:
    envelope = json.loads(sys.stdin.buffer.read())
    try:
        result = edit(envelope["request"], envelope["max_bytes"])
    except EditError as error:
        result = {
            "type": "text_editor_code_execution_tool_result_error",
            "error_code": error.error_code,
            "error_message": error.message,
        }
    sys.stdout.write(json.dumps(result))


def edit(request: Any, max_bytes: int) -> dict[str, Any]:
    if not isinstance(request, dict):
        raise EditError("invalid_tool_input", "the input must be an object")
    command, path = request.get("command"), request.get("path")
    if not isinstance(path, str) or not path or "\0" in path:
        raise EditError("invalid_tool_input", "`path` must be a non-empty string")
    full = os.path.join(WORKSPACE, path)
    try:
        if command == "view":
            return _view(full, path, request.get("view_range"), max_bytes)
        if command == "create":
            return _create(full, path, _text(request, "file_text"))
        if command == "str_replace":
            return _str_replace(full, path, _text(request, "old_str"), _text(request, "new_str", ""))
    except FileNotFoundError:
        raise EditError("file_not_found", f"{path} does not exist") from None
    except OSError as error:
        raise EditError("invalid_tool_input", f"{path}: {error.strerror}") from None
    raise EditError("invalid_tool_input", f"unknown command {command!r}: use view, create or str_replace")


def _text(request: dict[str, Any], field: str, default: str | None = None) -> str:
    value = request.get(field, default)
    if not isinstance(value, str):
        raise EditError("invalid_tool_input", f"`{field}` must be a string")
    return value


def _view(full: str, path: str, view_range: Any, max_bytes: int) -> dict[str, Any]:
    if os.path.isdir(full):
        lines = _listing(full, path)
        return _view_result("".join(lines), 1, len(lines), len(lines))
    lines = _read(full, path).splitlines(keepends=True)
    start, end = _range(view_range, len(lines))
    shown: list[str] = []
    room, cut = max_bytes, False
    for line in lines[start - 1 : end]:
        size = len(line.encode())
        if size > room:
            if not shown:  # a first line longer than the whole budget: its beginning
                shown.append(line.encode()[:room].decode(errors="ignore") + "\n")
            cut = True
            break
        shown.append(line)
        room -= size
    content = "".join(shown)
    if cut:
        last = start + len(shown) - 1
        content += f"[truncated: lines {start}-{last} of {len(lines)} shown; use view_range for more]\n"
    return _view_result(content, start, len(shown), len(lines))


def _view_result(content: str, start: int, count: int, total: int) -> dict[str, Any]:
    return {
        "type": "text_editor_code_execution_view_result",
        "file_type": "text",
        "content": content,
        "num_lines": count,
        "start_line": start,
        "total_lines": total,
    }


def _listing(full: str, path: str) -> list[str]:
    shown = path.rstrip("/") or "/"
    lines = [shown + "/\n"]
    for depth_one in _entries(full):
        child = os.path.join(full, depth_one)
        is_dir = os.path.isdir(child) and not os.path.islink(child)
        lines.append(f"{os.path.join(shown, depth_one)}{'/' if is_dir else ''}\n")
        if is_dir:
            for depth_two in _entries(child):
                marker = "/" if os.path.isdir(os.path.join(child, depth_two)) else ""
                lines.append(f"{os.path.join(shown, depth_one, depth_two)}{marker}\n")
    return lines


def _entries(directory: str) -> list[str]:
    try:
        return sorted(name for name in os.listdir(directory) if not name.startswith("."))
    except OSError:
        return []


def _read(full: str, path: str) -> str:
    with open(full, "rb") as file:
        data = file.read()
    if b"\0" in data[:_BINARY_PROBE]:
        raise EditError("invalid_tool_input", f"{path} is a binary file; inspect it with bash")
    return data.decode("utf-8", errors="replace")


def _range(view_range: Any, total: int) -> tuple[int, int]:
    if view_range is None:
        return 1, total
    valid = (
        isinstance(view_range, list)
        and len(view_range) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in view_range)
    )
    if not valid:
        raise EditError("invalid_tool_input", "`view_range` must be [start_line, end_line]")
    start, end = view_range
    end = total if end == -1 else end
    if total == 0 and (start, end) in ((1, 0), (1, 1)):
        return 1, 0
    if not 1 <= start <= end <= total:
        raise EditError(
            "invalid_tool_input",
            f"`view_range` {view_range} is outside the file's {total} lines (lines count from 1; "
            "end_line -1 means the last line)",
        )
    return start, end


def _create(full: str, path: str, text: str) -> dict[str, Any]:
    if os.path.isdir(full):
        raise EditError("invalid_tool_input", f"{path} is a directory")
    existed = os.path.lexists(full)
    parent = os.path.dirname(full)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(full, "w", encoding="utf-8") as file:
        file.write(text)
    return {"type": "text_editor_code_execution_create_result", "is_file_update": existed}


def _str_replace(full: str, path: str, old: str, new: str) -> dict[str, Any]:
    if not old:
        raise EditError("invalid_tool_input", "`old_str` must not be empty")
    if os.path.isdir(full):
        raise EditError("invalid_tool_input", f"{path} is a directory")
    with open(full, "rb") as file:
        try:
            text = file.read().decode("utf-8")
        except UnicodeDecodeError:
            raise EditError("invalid_tool_input", f"{path} is not UTF-8 text") from None
    count = text.count(old)
    if count != 1:
        where = "was not found" if count == 0 else f"occurs {count} times"
        raise EditError(
            "invalid_tool_input",
            f"old_str {where} in {path}; it must occur exactly once "
            "(include more of the surrounding lines to make it unique)",
        )
    at = text.index(old)
    with open(full, "w", encoding="utf-8", newline="") as file:
        file.write(text[:at] + new + text[at + len(old) :])
    start = text.count("\n", 0, at) + 1
    old_lines, new_lines = _lines(old), _lines(new)
    return {
        "type": "text_editor_code_execution_str_replace_result",
        "old_start": start,
        "old_lines": len(old_lines),
        "new_start": start,
        "new_lines": len(new_lines),
        "lines": ["-" + line for line in old_lines] + ["+" + line for line in new_lines],
    }


def _lines(text: str) -> list[str]:
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


if __name__ == "__main__":
    main()
