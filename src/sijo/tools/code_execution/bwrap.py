"""The bubblewrap command line of a sandbox: what it sees of the host, and as whom it runs.

    read-only   /usr, and /bin, /sbin, /lib* as the host has them (symlinks into /usr, or binds);
                of /etc only what programs need (the dynamic linker's cache, alternatives, the time
                zone, fonts, MIME types, Python's config); passwd, group, hosts and nsswitch.conf
                written for the sandbox; / and /dev themselves
    its own     /proc of its own pid namespace; a minimal /dev; tmpfs /tmp, /dev/shm and WORKSPACE,
                each of a fixed size (what the code writes lives in memory, so every byte is capped)
    nothing of  the network (its own empty namespace: not the host's loopback, not the host's
                abstract unix sockets), IPC, the host's hostname, further user namespaces, the
                terminal (a new session: nothing to push keystrokes into)
    as whom     Sijo's own user; nobody (65534) when Sijo runs as root: root holds capabilities in
                the sandbox and is exempt from RLIMIT_NPROC

No directory of the host is mounted: the container's files travel in and out through pipes
(transfer.py), so nothing the code does, symlinks included, reaches a host path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sijo.tools.code_execution.supervisor import WORKSPACE

NOBODY = 65534
SHM_BYTES = 64 * 1024 * 1024
# Read by common programs and libraries, and secret to no one. Missing ones are skipped.
ETC_ENTRIES = (
    "alternatives",
    "fonts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "magic",
    "magic.mime",
    "matplotlibrc",
    "mime.types",
    "os-release",
    "timezone",
)
TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOME = "/tmp"
ENVIRONMENT = {
    "PATH": PATH,
    "HOME": HOME,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "SHELL": "/bin/bash",
    "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the workspace, where it would be an output
    "MPLBACKEND": "Agg",  # no display
}


@dataclass(frozen=True, slots=True)
class Identity:
    """The host user a sandbox runs as (and is, inside); `switch`: Sijo runs as root and changes to
    it on the way to bwrap."""

    uid: int
    gid: int
    switch: bool

    @classmethod
    def for_this_process(cls) -> Identity:
        if os.geteuid() == 0:
            return cls(NOBODY, NOBODY, switch=True)
        return cls(os.geteuid(), os.getegid(), switch=False)

    def launcher(self, setpriv: str) -> list[str]:
        """What starts bwrap as this user: setpriv (util-linux), which switches and execs. (Asking
        subprocess to switch makes it fork() where it would vfork(): ~150 ms, not 1, beside a few
        GB of model memory.)"""
        if not self.switch:
            return []
        user = [f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--inh-caps=-all"]
        return [setpriv, *user, "--"]


def etc_files(identity: Identity) -> dict[str, bytes]:
    """The /etc files written for the sandbox rather than shown from the host."""
    users = [
        "root:x:0:0:root:/root:/usr/sbin/nologin",
        f"sandbox:x:{identity.uid}:{identity.gid}::{HOME}:/bin/bash",
    ]
    groups = ["root:x:0:", f"sandbox:x:{identity.gid}:"]
    if identity.uid != NOBODY:
        users.append(f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/usr/sbin/nologin")
        groups.append(f"nogroup:x:{NOBODY}:")
    return {
        "passwd": "\n".join(users).encode() + b"\n",
        "group": "\n".join(groups).encode() + b"\n",
        "hosts": b"127.0.0.1 localhost\n::1 localhost\n",
        "nsswitch.conf": b"passwd: files\ngroup: files\nhosts: files\n",
    }


def system_arguments(etc: Path = Path("/etc")) -> list[str]:
    """The read-only part of the host, as this host lays it out."""
    arguments = ["--ro-bind", "/usr", "/usr"]
    for name in TOP_LEVEL:
        path = Path("/") / name
        if path.is_symlink():
            arguments += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            arguments += ["--ro-bind", str(path), str(path)]
    names = [*ETC_ENTRIES, *sorted(p.name for p in etc.glob("python3*"))]
    for name in names:
        arguments += ["--ro-bind-try", str(etc / name), f"/etc/{name}"]
    return arguments


def arguments(system: list[str], data_fds: dict[str, int], workspace_bytes: int, tmp_bytes: int) -> list[str]:
    """bwrap's options, up to (not including) the program: `system` from system_arguments(),
    `data_fds` the files of etc_files() by name, each an fd to read it from."""
    options = [
        "--unshare-all",
        "--unshare-user",  # implied, but --disable-userns wants it said
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",  # the supervisor is pid 1: the code cannot kill it
        "--clearenv",
        "--hostname",
        "sandbox",
        *system,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        *["--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"],
        *["--size", str(tmp_bytes), "--tmpfs", "/tmp"],
        *["--size", str(workspace_bytes), "--tmpfs", WORKSPACE],
    ]
    for name, fd in data_fds.items():
        options += ["--ro-bind-data", str(fd), f"/etc/{name}"]
    for name, value in ENVIRONMENT.items():
        options += ["--setenv", name, value]
    # Last: the root and /dev tmpfs bwrap made are read-only once every mount point is in place
    # (else they are two more writable, unbounded tmpfs).
    return [*options, "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKSPACE]
