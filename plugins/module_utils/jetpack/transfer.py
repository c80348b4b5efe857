"""Files into and out of an app of a running pod, written and read by a process inside it.

The host never opens a path inside a pod: a symlink the pod holds could point anywhere on the
host (the ansible-jailexec advisory). Instead execution.spawn() starts a child exactly as it
starts the app's processes (in the pod, chrooted into the app's rootfs, with the app's or the
chosen user's credentials), and that child opens the file and copies bytes between it and the fds
it was given. The kernel resolves every path within the app's root, checks permissions for that
user, and the walk below opens each directory with O_NOFOLLOW relative to its parent's fd, so
even /proc's magic links cannot lead elsewhere. No program of the image is needed: this works in
an image without a shell.
"""
from __future__ import annotations

import fcntl
import os
import posixpath
import stat

from . import execution
from .errors import InvalidInput, JetpackError

CHUNK = 1 << 20
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def put(engine, record: dict, context: dict, app: dict, path: str, source_fd: int, as_root: bool = False,
        mode=None) -> None:
    """Write what source_fd holds to path inside the app (created, or truncated and rewritten)."""
    check_path(path)
    _run(engine, record, context, app, as_root, lambda: _receive(path, mode), stdin=source_fd)


def get(engine, record: dict, context: dict, app: dict, path: str, target_fd: int, as_root: bool = False) -> None:
    """Copy the regular file at path inside the app to target_fd."""
    check_path(path)
    _run(engine, record, context, app, as_root, lambda: _send(path), stdout=target_fd)


def check_path(path: str) -> None:
    if not path.startswith("/") or "\0" in path:
        raise InvalidInput("%r: give an absolute path inside the app" % path, field="path")
    if posixpath.basename(path) in ("", ".", ".."):
        raise InvalidInput("%r: give the path of a file, not of a directory" % path, field="path")


def _run(engine, record, context, app, as_root, action, stdin=None, stdout=None) -> None:
    pid = execution.spawn(engine, record, context, app, as_root=as_root, stdin=stdin, stdout=stdout, action=action)
    _pid, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise JetpackError("app %s: the process copying the file ended with status %d"
                           % (app["name"], os.waitstatus_to_exitcode(status)))


# --- in the child, inside the app -----------------------------------------------------------
def _receive(path: str, mode) -> None:
    try:
        fd = _open_for_writing(path, 0o666 if mode is None else mode)
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            os.ftruncate(fd, 0)
            _copy(0, fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise JetpackError("cannot write %s: %s" % (path, error.strerror)) from None


def _send(path: str) -> None:
    try:
        directory, name = execution.resolve_in_rootfs("/", path)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=directory)
        finally:
            os.close(directory)
        try:
            _regular(fd, path)
            _copy(fd, 1)
        finally:
            os.close(fd)
    except OSError as error:
        raise JetpackError("cannot read %s: %s" % (path, error.strerror)) from None


def _open_for_writing(path: str, mode: int) -> int:
    """An fd of path opened for writing; an existing symlink is followed within the app's root."""
    directory, name = _parent_of(path)
    try:
        if _is_symlink(directory, name):
            os.close(directory)
            directory = None
            directory, name = execution.resolve_in_rootfs("/", path)
        fd = os.open(name, _WRITE_FLAGS, mode, dir_fd=directory)
    finally:
        if directory is not None:
            os.close(directory)
    try:
        _regular(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parent_of(path: str) -> tuple:
    """(fd of the directory holding path, path's last name), the directory resolved within the root."""
    parent, name = execution.resolve_in_rootfs("/", posixpath.dirname(path))
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent), posixpath.basename(path)
    finally:
        os.close(parent)


def _is_symlink(directory: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _regular(fd: int, path: str) -> None:
    """Refuse what is not a regular file (a FIFO would block, a device is no file to copy)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise JetpackError("%s is not a regular file" % path)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)


def _copy(source: int, target: int) -> None:
    while True:
        chunk = os.read(source, CHUNK)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view):]
