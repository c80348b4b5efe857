"""Path operations beneath a root directory that no symlink can redirect.

Pod roots and app rootfs trees hold whatever their images and apps put there, so the host never
resolves a path inside them with the kernel's usual rules: every component is opened relative to
its parent's fd with O_NOFOLLOW, and a symlink or file where a directory should be is refused.
"""
from __future__ import annotations

import contextlib
import errno
import os

from .errors import InvalidInput

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# What opening a symlink or a file as a directory with O_NOFOLLOW reports (FreeBSD: EMLINK).
_NOT_A_DIRECTORY = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def components(path: str) -> list:
    """The parts of an absolute in-pod path; `..` refused, `.` and empty parts dropped."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput("path %r must not contain '..'" % path)
    return parts


def open_dir(root: str, path: str, create: bool = False, mode: int = 0o755) -> int:
    """An fd of root/path (a directory), creating missing directories when asked."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for name in components(path):
            child = _child_dir(fd, name, create, mode, path)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _child_dir(parent: int, name: str, create: bool, mode: int, path: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as error:
        if error.errno in _NOT_A_DIRECTORY:
            raise InvalidInput("%r on the way to %s is a symlink or not a directory; "
                               "fix the image or choose another path" % (name, path)) from None
        raise
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=parent)
    return _child_dir(parent, name, False, mode, path)


def makedirs(root: str, path: str, mode: int = 0o755) -> None:
    """mkdir -p root/path without following any symlink on the way."""
    os.close(open_dir(root, path, create=True, mode=mode))
