"""Path safety for anything a user names: ids, versions, folders to scan, DICOMDIR references,
the symlinks found on the way. The one place that decides what may be opened or written.

    from medviewer.core.paths import UnsafePath, require_component, require_inside, open_regular

What it offers:

    UnsafePath(path, reason)      the refusal; an OSError (callers that already turn OSError into
                                  their layer's error keep working), `.reason` is a sentence.
    component_problem(name)       why `name` is not a safe single path component, or None
    require_component(name, what) `name` itself, or UnsafePath saying why not (model ids,
                                  versions, anything joined onto a folder)
    escape_problem(root, path)    why `path` does not stay inside `root` once every symlink
                                  is resolved, or None
    require_inside(root, path)    the resolved path, or UnsafePath
    within(real_root, real_path)  both already resolved: is the path the root or below it
    kind_problem(mode)            why a stat mode is not a regular file or folder (a FIFO,
                                  socket or device), or None
    is_system(st, real=None)      True for what lives on /proc, /sys, /dev or another kernel
                                  pseudo file system (by device; `real`: also by real path)
    open_regular(path)            a binary file object of a regular file, or UnsafePath: never
                                  blocks on a FIFO, never opens a device, socket or kernel file

The policy: a symlink is followed only while it stays inside the folder the user chose; a link
out of it, into /proc, /sys or /dev, or back into a folder that holds it, is not followed and
is reported. FIFOs, sockets and devices are reported, never opened.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")
# kernel file systems whose files may block on read or never end (/proc/kmsg, trace_pipe)
PSEUDO_FILE_SYSTEMS = {
    "proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs", "cgroup",
    "cgroup2", "pstore", "bpf", "configfs", "fusectl", "efivarfs", "mqueue", "binfmt_misc",
    "rpc_pipefs", "nsfs", "autofs",
}
_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
}
_OCTAL = re.compile(r"\\([0-7]{3})")
_WINDOWS_RESERVED = set('<>:"|?*\\')
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


class UnsafePath(OSError):
    """A path refused by the safety rules, with a sentence saying why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(None, reason, os.fspath(path))
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.filename}: {self.reason}"


# --- names the user gives ---------------------------------------------------------------------


def component_problem(name: object) -> str | None:
    """Why `name` cannot be one folder or file name inside another folder; None when it can."""
    if not isinstance(name, str) or not name:
        return "it is empty or not text"
    if name in (".", "..") or name.startswith("."):
        return "it starts with a dot (a hidden or parent folder)"
    if "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        return "it contains a folder separator"
    if any(not c.isprintable() for c in name):
        return "it contains control characters"
    if _WINDOWS_RESERVED & set(name):
        return 'it contains one of < > : " | ? * \\'
    if name != name.strip():
        return "it starts or ends with a space"
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        return "it is longer than 255 bytes"
    return None


def require_component(name: object, what: str = "name") -> str:
    """`name` when it is a safe single path component; UnsafePath saying why not."""
    problem = component_problem(name)
    if problem is not None:
        raise UnsafePath(str(name), f"this {what} cannot be used as a folder name: {problem}")
    return name  # type: ignore[return-value]


# --- staying inside a chosen folder -----------------------------------------------------------


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(path))


def within(real_root: str, real_path: str) -> bool:
    """Both already resolved: is `real_path` `real_root` or below it."""
    return real_path == real_root or real_path.startswith(os.path.join(real_root, ""))


def escape_problem(root: str | os.PathLike, path: str | os.PathLike) -> str | None:
    """Why `path` leaves `root` once symlinks are resolved (a relative path counts from
    `root`); None when it stays inside."""
    real_root = _real(root)
    real = _real(os.path.join(real_root, os.fspath(path)))
    if not within(real_root, real):
        return f"it leads to {real}, outside {real_root}"
    return None


def require_inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """The resolved `path` (relative ones count from `root`), or UnsafePath when it leaves
    `root` through '..', an absolute path or a symlink."""
    problem = escape_problem(root, path)
    if problem is not None:
        raise UnsafePath(path, f"not used: {problem}")
    return Path(_real(os.path.join(_real(root), os.fspath(path))))


# --- what kind of thing a path is -------------------------------------------------------------


def kind_problem(mode: int) -> str | None:
    """Why a file of this stat mode is not read (FIFO, socket, device); None for a regular
    file or a folder."""
    kind = stat.S_IFMT(mode)
    if kind in (stat.S_IFREG, stat.S_IFDIR):
        return None
    return f"{_KINDS.get(kind, 'an unknown kind of file')}, not a regular file: not read"


@functools.lru_cache(maxsize=1)
def system_devices() -> frozenset[int]:
    """Devices (st_dev) of /proc, /sys, /dev and every kernel pseudo file system mounted."""
    places = list(SYSTEM_FOLDERS)
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 2 and fields[2] in PSEUDO_FILE_SYSTEMS:
                    places.append(_OCTAL.sub(lambda m: chr(int(m[1], 8)), fields[1]))  # \040: space
    except OSError:
        pass  # not Linux: the three folders by name
    devices = set()
    for place in places:
        try:
            devices.add(os.stat(place).st_dev)
        except OSError:
            continue
    return frozenset(devices)


def is_system(st: os.stat_result, real: str | None = None) -> bool:
    """On /proc, /sys, /dev or a kernel pseudo file system (by device); with `real`, the
    resolved path, also anything below those three folders."""
    if st.st_dev in system_devices():
        return True
    return real is not None and any(within(folder, real) for folder in SYSTEM_FOLDERS)


SYSTEM_REASON = "a system file (/proc, /sys, /dev or a kernel file system): not read"


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading. A FIFO, socket, device or kernel file raises
    UnsafePath before it is opened (O_NONBLOCK and a second check close the race with a file
    swapped in between); a missing or unreadable file raises the usual OSError."""
    st = os.stat(path)
    _refuse(path, st)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        _refuse(path, os.fstat(fd))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse(path: str | os.PathLike, st: os.stat_result) -> None:
    problem = kind_problem(st.st_mode)
    if problem is None and stat.S_ISDIR(st.st_mode):
        problem = "a folder, not a file"
    if problem is None and is_system(st):
        problem = SYSTEM_REASON
    if problem is not None:
        raise UnsafePath(path, problem)
