"""Running a process of an app inside its pod, for both engines (docs/pods-design.md).

On the host, before any fork: the user, group and supplementary groups are resolved from the
app rootfs's own /etc/passwd and /etc/group (names; all-digit values as numbers when no entry
has that name; a value starting with "/" means the owner of that path in the rootfs), and the
environment is built: PATH (appc's default unless the app sets it), AC_APP_NAME,
AC_METADATA_URL, container=jetpack, then the app's own variables. Nothing comes from the host.

Paths inside a rootfs are resolved from the host with the rootfs as "/": every component is
looked at with lstat relative to its parent's fd, symlinks are followed inside the rootfs
(absolute targets start again at its top) and one that climbs out with ".." is refused.

spawn() forks; the child joins the app's limits (engine.join_limits: the Linux cgroup leaf), enters
the pod (engine.attach), forks once more when the engine needs it (Linux: a PID namespace applies to
children only), chroots into /app/<app>/rootfs, changes to the working directory, sets the app's
RLIMIT_NOFILE, drops to the resolved credentials (on Linux inside capabilities.apply, which leaves
the process the app's capability sets for its uid) and execs. Every process of an app, `jetpack
exec` as root included, goes this way, so none holds more than the app's capabilities. Until
execve succeeds, any error is written to a close-on-exec pipe and raised in the parent as a
JetpackError.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
from collections import namedtuple

from . import capabilities, cgroups
from .errors import InvalidInput, JetpackError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
METADATA_URL = ""  # a pod without a network has no metadata service (hostd.py)
EXECUTOR = "jetpack"
MAX_SYMLINKS = 40  # as the kernel's ELOOP limit
MAX_ACCOUNTS_FILE = 16 << 20

Credentials = namedtuple("Credentials", "uid gid groups")
# What a process of an app is held to besides its pod: credentials, RLIMIT_NOFILE (None: the
# host's) and the capabilities.Plan of its sets (None: the engine has no capabilities to narrow).
Confinement = namedtuple("Confinement", "credentials open_files capabilities")
ROOT = Credentials(0, 0, ())
PasswdEntry = namedtuple("PasswdEntry", "name uid gid")
GroupEntry = namedtuple("GroupEntry", "name gid members")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# --- environment ----------------------------------------------------------------------------
def build_environment(app: dict, metadata_url: str = METADATA_URL) -> dict:
    """Exactly what the app's processes get, in this order; appc's variables are the runtime's."""
    own = app.get("environment") or {}
    environment = {"PATH": own.get("PATH", DEFAULT_PATH), "AC_APP_NAME": app["name"],
                   "AC_METADATA_URL": metadata_url, "container": EXECUTOR}
    for name, value in own.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise InvalidInput("app %s: environment variable %r: a name must be non-empty without '=' and "
                               "neither name nor value may hold a NUL byte" % (app["name"], name),
                               field="environment")
        environment.setdefault(name, value)
    return environment


# --- paths inside a rootfs ------------------------------------------------------------------
def _parts(path: str) -> list:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_in_rootfs(rootfs: str, path: str):
    """(fd of the parent directory, last name) of path as seen inside rootfs; the name is no symlink.

    The caller closes the fd. OSError (FileNotFoundError...) when a component is missing.
    """
    stack = [os.open(rootfs, _DIR_FLAGS)]
    try:
        name = _walk(stack, _parts(path)[::-1], path)
        return stack.pop(), name
    finally:
        for fd in stack:
            os.close(fd)


def _walk(stack: list, pending: list, path: str) -> str:
    """Resolve `pending` (reversed components) from stack[-1]; leaves the parent on the stack."""
    links = 0
    name = "."
    while pending:
        name = pending.pop()
        if name == "..":
            if len(stack) == 1:
                raise InvalidInput("%s leads out of the rootfs through '..'" % path)
            os.close(stack.pop())
            name = "."
            continue
        info = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise InvalidInput("%s: too many levels of symlinks" % path)
            target = os.readlink(name, dir_fd=stack[-1])
            if target.startswith("/"):  # absolute: from the top of the rootfs, not the host's
                while len(stack) > 1:
                    os.close(stack.pop())
            pending.extend(_parts(target)[::-1])
            name = "."
        elif pending:
            stack.append(os.open(name, _DIR_FLAGS, dir_fd=stack[-1]))
            name = "."
    return name


def stat_in_rootfs(rootfs: str, path: str) -> os.stat_result:
    directory, name = resolve_in_rootfs(rootfs, path)
    try:
        return os.stat(name, dir_fd=directory, follow_symlinks=False)
    finally:
        os.close(directory)


def read_in_rootfs(rootfs: str, path: str):
    """The text of a regular file inside rootfs; None when it does not exist."""
    try:
        directory, name = resolve_in_rootfs(rootfs, path)
    except FileNotFoundError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    except FileNotFoundError:
        return None
    finally:
        os.close(directory)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput("%s is not a regular file" % path)
        data = f.read(MAX_ACCOUNTS_FILE + 1)
    if len(data) > MAX_ACCOUNTS_FILE:
        raise InvalidInput("%s is larger than %d bytes" % (path, MAX_ACCOUNTS_FILE))
    return data.decode("utf-8", "replace")


# --- users and groups -----------------------------------------------------------------------
def parse_passwd(text) -> list:
    """Entries of a passwd(5) file; comments, NIS (+/-) and malformed lines are skipped."""
    entries = []
    for fields in _records(text, 7):
        if fields[2].isdigit() and fields[3].isdigit():
            entries.append(PasswdEntry(fields[0], int(fields[2]), int(fields[3])))
    return entries


def parse_group(text) -> list:
    entries = []
    for fields in _records(text, 4):
        if fields[2].isdigit():
            members = tuple(m.strip() for m in fields[3].split(",") if m.strip())
            entries.append(GroupEntry(fields[0], int(fields[2]), members))
    return entries


def _records(text, count: int):
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) == count and fields[0] and not line.startswith(("#", "+", "-")):
            yield fields


class Accounts:
    """The users and groups of one rootfs, read from its own /etc files on first use."""

    def __init__(self, rootfs: str):
        self.rootfs = rootfs
        self._files = {}

    def _entries(self, path: str, parse) -> list:
        if path not in self._files:
            try:
                self._files[path] = parse(read_in_rootfs(self.rootfs, path))
            except (OSError, InvalidInput) as error:
                raise InvalidInput("cannot read %s of the image: %s; fix the image"
                                   % (path, describe(error))) from None
        return self._files[path]

    def user(self, name: str):
        return next((e for e in self._entries("/etc/passwd", parse_passwd) if e.name == name), None)

    def group(self, name: str):
        return next((e for e in self._entries("/etc/group", parse_group) if e.name == name), None)

    def groups_of(self, user: str) -> list:
        return [e.gid for e in self._entries("/etc/group", parse_group) if user in e.members]

    def owner(self, path: str) -> os.stat_result:
        try:
            return stat_in_rootfs(self.rootfs, path)
        except (OSError, InvalidInput) as error:
            raise InvalidInput("%s: %s" % (path, describe(error))) from None


def home_directory(rootfs: str, uid: int) -> str:
    """The home of uid in the rootfs's own /etc/passwd (its first entry); "/" when there is none."""
    try:
        text = read_in_rootfs(rootfs, "/etc/passwd")
    except (OSError, InvalidInput):
        return "/"
    for fields in _records(text, 7):
        if fields[2] == str(uid) and fields[5].startswith("/"):
            return fields[5]
    return "/"


def resolve_credentials(app: dict) -> Credentials:
    """uid, gid and supplementary groups of an app, from its own rootfs."""
    accounts = Accounts(app["rootfs"])
    try:
        uid, entry = _resolve_user(accounts, str(app.get("user") or "0"))
        gid = _resolve_group(accounts, str(app.get("group") or ""), entry)
    except InvalidInput as error:
        raise InvalidInput("app %s: %s" % (app["name"], error), field="user") from None
    groups = [int(g) for g in app.get("supplementary_gids") or ()]
    if entry is not None:
        groups += accounts.groups_of(entry.name)
    return Credentials(uid, gid, tuple(dict.fromkeys(groups)))


def _resolve_user(accounts: Accounts, value: str):
    if value.startswith("/"):
        return accounts.owner(value).st_uid, None
    entry = accounts.user(value)
    if entry is not None:
        return entry.uid, entry
    if _is_number(value):
        return int(value), None
    raise InvalidInput("user %r is not in the image's /etc/passwd; give a user of the image, a number, "
                       "or an absolute path whose owner to run as" % value)


def _resolve_group(accounts: Accounts, value: str, user) -> int:
    if not value:
        return user.gid if user is not None else 0
    if value.startswith("/"):
        return accounts.owner(value).st_gid
    entry = accounts.group(value)
    if entry is not None:
        return entry.gid
    if _is_number(value):
        return int(value)
    raise InvalidInput("group %r is not in the image's /etc/group; give a group of the image, a number, "
                       "or an absolute path whose group to run as" % value)


def _is_number(value: str) -> bool:
    return value.isascii() and value.isdigit()


# --- exec -----------------------------------------------------------------------------------
def exec_candidates(program: str, path: str) -> list:
    """Where execvp(3) would look for program, in order (an empty PATH entry is ".")."""
    if "/" in program:
        return [program]
    return [os.path.join(directory or ".", program) for directory in path.split(":")]


def _execute(argv: list, environment: dict) -> None:
    """execve the first candidate that exists, as execvp does; raise if none can run."""
    denied = None
    for candidate in exec_candidates(argv[0], environment["PATH"]):
        try:
            os.execve(candidate, argv, environment)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as error:
            denied = error
        except OSError as error:
            raise JetpackError("cannot execute %s: %s" % (candidate, error.strerror)) from None
    if denied is not None:
        raise JetpackError("cannot execute %s: %s; make it executable by the app's user"
                           % (denied.filename, denied.strerror))
    if "/" in argv[0]:
        raise JetpackError("cannot execute %s: no such file in the app's rootfs (or its interpreter is "
                           "missing); fix exec or the image" % argv[0])
    raise JetpackError("cannot execute %s: not found in PATH %s inside the app's rootfs; give a path or "
                       "set PATH in the app's environment" % (argv[0], environment["PATH"]))


# --- processes ------------------------------------------------------------------------------
def default_signals(blocked=()) -> None:
    """Default dispositions (an ignored signal survives execve) and exactly `blocked` blocked."""
    for number in range(1, signal.NSIG):
        try:  # not contextlib.suppress: a pod holder runs this and should touch few objects
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def close_other_fds(keep) -> None:
    """Close every fd but those in keep: nothing of the caller's may leak into a pod."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no procfs (FreeBSD): close by ranges between the kept fds
        low = 0
        for fd in sorted(set(keep)) + [os.sysconf("SC_OPEN_MAX")]:
            os.closerange(low, fd)
            low = fd + 1
        return
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def spawn(engine, record: dict, context: dict, app, argv=None, as_root: bool = False,
          stdout=None, stderr=None, stdin=None, action=None) -> int:
    """Start argv (default: the app's exec) in an app of a running pod; its host pid once exec'd.

    app: an entry of record["apps"] or its name. stdin/stdout/stderr: fds (default /dev/null).
    The caller reaps the pid; on engines that fork after attach (Linux) it is made a child
    subreaper so that the app is its child.

    action: a function the child calls instead of execve, once it is the app (in the pod, in the
    rootfs, with the app's credentials); the child exits 0 when it returns. Until then an error
    it raises is reported as any error before execve, so spawn() returns when the action is done.
    """
    app = _find_app(record, app)
    argv = list(app["exec"] if argv is None else argv)
    if not argv or not argv[0]:
        raise InvalidInput("app %s: nothing to run; give exec" % app["name"], field="exec")
    environment = build_environment(app, record.get("metadata_url") or METADATA_URL)
    credentials = ROOT if as_root else resolve_credentials(app)
    confinement = _confinement(engine, app, credentials)
    forks = getattr(engine, "fork_after_attach", False)
    if forks:
        engine.set_child_subreaper()
    read_end, write_end = os.pipe()
    # Where the intermediate process of a second fork tells the app's pid: a pipe of its own, as
    # the app may fail (and write to the report pipe) before its parent has written the pid.
    pid_read, pid_write = os.pipe() if forks else (None, None)
    pid = os.fork()
    if pid == 0:
        _child(engine, record, context, app, argv, environment, confinement, (stdin, stdout, stderr), write_end,
               pid_write, action)
    os.close(write_end)
    try:
        app_pid = pid
        if forks:
            os.close(pid_write)
            app_pid = int(_read_to_end(pid_read) or 0) or None
            _reap(pid)  # the intermediate process: it exits at once
        report = _read_to_end(read_end)
    finally:
        os.close(read_end)
        if forks:
            os.close(pid_read)
    return _outcome(app, app_pid, report)


def _confinement(engine, app: dict, credentials: Credentials) -> Confinement:
    """What the app's process is held to, whoever runs it (the app, its handlers, `jetpack exec` as the
    app's user or as root): its open files and, on Linux, its capability sets computed for the uid it
    runs as (docs/executor.md). Its cgroup is the engine's (join_limits)."""
    isolators = app.get("isolators") or {}
    plan = capabilities.compute(isolators, credentials.uid) if getattr(engine, "name", "") == "linux" else None
    return Confinement(credentials, isolators.get("open_files"), plan)


def _find_app(record: dict, app) -> dict:
    if isinstance(app, dict):
        return app
    for entry in record["apps"]:
        if entry["name"] == app:
            return entry
    raise InvalidInput("pod %s has no app %s" % (record["name"], app), field="app")


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _outcome(app: dict, app_pid, report: bytes) -> int:
    """The app's pid, or the error its child reported (every process involved reaped)."""
    if report or app_pid is None:
        if app_pid is not None:
            _reap(app_pid)
        reason = report.decode("utf-8", "replace") or "the process starting it died"
        raise JetpackError("app %s: %s" % (app["name"], reason))
    return app_pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _child(engine, record, context, app, argv, environment, confinement, fds, report, pid_report,
           action=None) -> None:
    """The forked child: enter the pod (then fork again when pid_report is given), become the app.
    Never returns."""
    try:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        # Copies above 2, so that dup2 onto 0..2 later cannot clobber one another.
        stdio = [fcntl.fcntl(null if fd is None else fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in fds]
        close_other_fds(stdio + [fd for fd in (report, pid_report) if fd is not None])
        join_limits = getattr(engine, "join_limits", None)
        if join_limits is not None:  # before attach: the pod's mount namespace hides /sys/fs/cgroup
            join_limits(record, app)
        engine.attach(record, context)
        if pid_report is not None:
            pid = os.fork()
            if pid:
                os.write(pid_report, b"%d" % pid)
                os._exit(0)
            os.close(pid_report)
        _become_app(app, argv, environment, confinement, stdio, action)
    except BaseException as error:  # noqa: B902 - the parent must hear about anything
        with contextlib.suppress(BaseException):
            os.write(report, describe(error).encode("utf-8", "replace"))
    finally:
        os._exit(127)


def _become_app(app, argv, environment, confinement, stdio, action=None) -> None:
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)  # inheritable
    default_signals()
    os.umask(0o022)
    rootfs = "/app/%s/rootfs" % app["name"]
    try:
        os.chroot(rootfs)
    except OSError as error:
        raise JetpackError("cannot enter its rootfs %s in the pod: %s" % (rootfs, error.strerror)) from None
    _enter_working_directory(app.get("working_directory") or "/")
    if confinement.open_files:
        cgroups.set_open_files(confinement.open_files)
    _drop_privileges(confinement)
    if action is not None:
        action()
        os._exit(0)
    _execute(argv, environment)


def _drop_privileges(confinement: Confinement) -> None:
    """Switch to the app's credentials; on Linux inside capabilities.apply, which narrows the sets around it."""
    credentials = confinement.credentials

    def switch():
        try:
            os.setgroups(list(credentials.groups))
            os.setgid(credentials.gid)
            os.setuid(credentials.uid)
        except OSError as error:
            raise JetpackError("cannot switch to uid %d, gid %d, groups %s: %s"
                               % (credentials.uid, credentials.gid, list(credentials.groups), error.strerror)) from None
    if confinement.capabilities is None:
        switch()
        return
    try:
        capabilities.apply(confinement.capabilities, switch)
    except OSError as error:
        raise JetpackError("cannot set the app's capabilities: %s" % describe(error)) from None


def _enter_working_directory(path: str) -> None:
    os.chdir("/")
    try:
        os.chdir(path)
    except (FileNotFoundError, NotADirectoryError):
        raise JetpackError("working directory %s does not exist in the app's rootfs; create it in the image "
                           "or set working_directory to an existing directory" % path) from None
    except OSError as error:
        raise JetpackError("cannot enter working directory %s: %s" % (path, error.strerror)) from None


def describe(error: BaseException) -> str:
    """An exception as one line for a user: an OSError names its file."""
    if isinstance(error, OSError) and error.strerror:
        return "%s: %s" % (error.filename, error.strerror) if error.filename else error.strerror
    return str(error) or type(error).__name__
