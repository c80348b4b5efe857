"""Install the runtime core on the host, once per content, for processes that outlive a task.

Pod supervisors and the zygote must not run from AnsiballZ's temporary files (removed when the
module exits) nor from a checkout someone may edit. `ensure_installed()` hashes the source of
every .py file of this jetpack package (sorted relative path + bytes; the package may be a
directory or inside AnsiballZ's zip) and copies exactly those files to
`<base>/<hash>/jetpack/`: written to a temporary directory beside it, then renamed into place,
so a version directory either is complete or does not exist. The same content installs nothing:
one lstat of `<base>/<hash>`. Run a tool from it with `PYTHONPATH=<base>/<hash> python3 -m
jetpack.<tool>`.

Older versions are kept: running supervisors and the zygote use theirs. Removing the versions no
process uses is not done yet (it needs a record of which supervisors run which core).

AnsiballZ ships only the module_utils a module imports (at any depth, including imports inside
functions): a module that installs the core must reach every file a supervisor runs; a missing
one is refused here by name (REQUIRED).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time

from .errors import JetpackError

DEFAULT_BASE = "/var/lib/jetpack/core"
_INSTALLED = {}  # base -> the core directory of this process's own package
PACKAGE = "jetpack"
HASH_CHARS = 32
REQUIRED = ("__init__.py", "errors.py", "supervisor.py", "zygote.py", "execution.py", "engines/__init__.py",
            "cli.py", "boot.py", "hostd.py", "transfer.py")
STALE_TMP_SECONDS = 3600


def host_commands():
    """The modules the installed core runs on its own: the `jetpack` command (and what it runs) and
    the store's host service. Importing them here makes AnsiballZ ship them with every module that
    installs the core, which otherwise imports none of them."""
    from . import boot, cli, hostd, transfer
    return boot, cli, hostd, transfer


def package_dir() -> str:
    """Where this package's files are: a directory, or a path inside a zip archive."""
    return os.path.dirname(os.path.abspath(__file__))


def read_sources(source=None) -> dict:
    """{relative posix path: bytes} of every .py file of the package at `source` (default: this one)."""
    source = source or package_dir()
    if os.path.isdir(source):
        files = _read_directory(source)
    else:
        files = _read_zipped(source)
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise JetpackError("the jetpack core at %s lacks %s; a module that starts pods must import the modules "
                           "a supervisor runs (AnsiballZ ships only what is imported)" % (source, ", ".join(missing)))
    return files


def _read_directory(top: str) -> dict:
    files = {}
    for here, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for name in names:
            if not name.endswith(".py") or name.startswith("."):
                continue
            path = os.path.join(here, name)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            with open(path, "rb") as f:
                files[os.path.relpath(path, top).replace(os.sep, "/")] = f.read()
    return files


def _read_zipped(source: str) -> dict:
    """The package inside a zip archive: `source` is <archive>/<path inside the archive>."""
    archive, inner = source, ""
    while archive and not os.path.isfile(archive):
        archive, tail = os.path.split(archive)
        if not tail:
            break
        inner = tail + ("/" + inner if inner else "")
    if not os.path.isfile(archive):
        raise JetpackError("cannot find the jetpack core's files at %s" % source)
    import zipfile
    prefix = inner.rstrip("/") + "/"
    files = {}
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if name.startswith(prefix) and name.endswith(".py") and "/__pycache__/" not in name:
                relative = name[len(prefix):]
                if relative and not any(p in ("", ".", "..") for p in relative.split("/")):
                    files[relative] = z.read(name)
    return files


def content_hash(files: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        digest.update(b"%s\0%d\0" % (name.encode(), len(data)))
        digest.update(data)
    return digest.hexdigest()[:HASH_CHARS]


def ensure_installed(base: str = DEFAULT_BASE, source=None) -> str:
    """The installed core directory for this package's content (what PYTHONPATH names); installs
    it the first time. `source`: the package to install (default: the one this file is in)."""
    known = _INSTALLED.get(base) if source is None else None
    if known:  # this process read and hashed its own package already: it cannot have changed
        try:
            _check_owned(known, os.lstat(known))
            return known
        except FileNotFoundError:
            pass
    files = read_sources(source)
    target = os.path.join(base, content_hash(files))
    if source is None:
        _INSTALLED[base] = target
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        _install(base, target, files)
        write_command(os.path.join(os.path.dirname(base), "bin", "jetpack"), target)
        return target
    _check_owned(target, st)
    return target


def write_command(path: str, core_dir: str) -> None:
    """The `jetpack` command for people on the host, running the newest installed core."""
    import sys
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    script = ("#!/bin/sh\n# jetpack: pods and images on this host (written by the jetpack core installer)\n"
              "PYTHONPATH=%s exec %s -m jetpack.cli \"$@\"\n" % (core_dir, sys.executable or "/usr/bin/python3"))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(script)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


def _check_owned(path: str, st) -> None:
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise JetpackError("%s must be a directory owned by uid %d and writable by no one else; remove it and "
                           "run again" % (path, os.geteuid()))


def _install(base: str, target: str, files: dict) -> None:
    os.makedirs(base, mode=0o755, exist_ok=True)
    _check_owned(base, os.lstat(base))
    _remove_stale_tmp(base)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=base)
    try:
        root = os.path.join(tmp, PACKAGE)
        for name in sorted(files):
            path = os.path.join(root, *name.split("/"))
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(files[name])
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        for here, dirs, _files in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(here, d), 0o755)
            _fsync_dir(here)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):      # else: another process installed the same content
                raise
        _fsync_dir(base)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_tmp(base: str) -> None:
    """Temporary directories that an interrupted install left (old enough not to be in use)."""
    now = time.time()
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if name.startswith(".tmp-"):
            try:
                if now - os.lstat(path).st_mtime > STALE_TMP_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            except FileNotFoundError:
                pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
