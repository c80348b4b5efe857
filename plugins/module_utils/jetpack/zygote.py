"""The zygote: one fork server per store that forks pod supervisors sharing its memory.

Server: `python3 -m jetpack.zygote --socket PATH`, with PYTHONPATH pointing at the core installed
on the host (install.ensure_installed), never at an Ansible temporary directory. It imports once
what a supervisor needs, freezes the garbage collector's view of those objects (gc.freeze(), so
forked children do not touch the shared pages), holds `PATH.lock` (flock) for its life and listens
on the unix socket PATH (mode 0600). Forked supervisors share its pages copy-on-write: that is how
a pod costs little memory on the host.

Protocol: one JSON object per line, one request per connection.
    {"start": "/abs/path/pod.json", "core": "/var/lib/jetpack/core/<hash>"}
        -> {"pid": N}                        the supervisor reported every app started
        -> {"error": "...", "pid": N}        it failed (after its teardown)
        -> {"retired": "<its core>"}         the zygote runs another core: it has removed its
                                             socket and exits; start a new one and ask again
    {"ping": true} -> {"pid": zygote pid, "core": its core}
A supervisor is a child of the zygote, in a session of its own; the zygote reaps it when it ends.

Client: `start_pod(record_path, socket_path, core_dir) -> pid` asks the zygote, starting it first
(detached: its own session, re-parented to init) when nothing answers on the socket.

Note for the host: a zygote started from an Ansible task lives in that task's cgroup (on systemd,
the ssh session's scope); a host that kills session scopes should run the zygote from a unit.
"""
from __future__ import annotations

import fcntl
import gc
import json
import os
import select
import signal
import socket
import sys
import time

from .daemon import spawn_detached
from .errors import JetpackError
from .supervisor import close_quietly, drain, wake_only

SOCKET_DIR = "/var/run/jetpack"
MAX_REQUEST = 1 << 16
REQUEST_TIMEOUT = 5.0        # for a client to send its request line
START_TIMEOUT = 300.0        # for a pod's pre-start handlers and apps to be started
LAUNCH_TIMEOUT = 30.0        # for a new zygote to answer
LOG_ROTATE_BYTES = 1 << 20


def socket_path_for(store_root: str, directory: str = SOCKET_DIR) -> str:
    """The zygote socket of a store: /var/run/jetpack/<root with / as _>.sock."""
    return os.path.join(directory, store_root.replace("/", "_") + ".sock")


def own_core() -> str:
    """The directory holding this jetpack package (what PYTHONPATH names)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- server --------------------------------------------------------------------------------------
class Zygote:
    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.core = os.path.realpath(own_core())
        self.listener = None
        self.lock_fd = -1
        self.socket_ino = None
        self.wake_r = self.wake_w = -1
        self.poller = select.poll()
        self.pending = {}          # ready pipe fd -> [conn, pid, buffer]
        self.stop = False
        self.retiring = False

    def bind(self) -> bool:
        """Take the lock and the socket; False when another zygote holds them."""
        directory = os.path.dirname(self.socket_path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.lock_fd = os.open(self.socket_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                               0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.lock_fd)
            self.lock_fd = -1
            return False
        try:
            os.unlink(self.socket_path)          # a stale socket of a zygote that died
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.socket_path)
        finally:
            os.umask(old)
        os.chmod(self.socket_path, 0o600)
        self.socket_ino = os.stat(self.socket_path).st_ino
        listener.listen(64)
        listener.setblocking(False)
        self.listener = listener
        return True

    def serve(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, wake_only)
        signal.signal(signal.SIGHUP, wake_only)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        self.poller.register(self.wake_r, select.POLLIN)
        self.poller.register(self.listener.fileno(), select.POLLIN)
        while not (self.stop or (self.retiring and not self.pending)):
            try:
                events = self.poller.poll()
            except InterruptedError:
                events = ()
            for fd, _event in events:
                if fd == self.wake_r:
                    drain(fd)
                elif self.listener is not None and fd == self.listener.fileno():
                    self._accept()
                elif fd in self.pending:
                    self._ready(fd)
            self._reap()
        self._give_up_socket()

    def _on_stop_signal(self, signum, frame):
        self.stop = True

    def _reap(self):
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _give_up_socket(self):
        """Remove our socket (not a successor's), close it and release the lock."""
        if self.listener is None:
            return
        self.poller.unregister(self.listener.fileno())
        try:
            if os.stat(self.socket_path).st_ino == self.socket_ino:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self.listener.close()
        self.listener = None
        os.close(self.lock_fd)
        self.lock_fd = -1

    # --- requests -------------------------------------------------------------------------------
    def _accept(self):
        try:
            conn, _address = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            conn.setblocking(True)
            conn.settimeout(REQUEST_TIMEOUT)
            if not _peer_allowed(conn):
                _reply(conn, {"error": "only root may ask the jetpack zygote"})
                conn.close()
                return
            request = json.loads(_read_line(conn) or b"null")
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except (OSError, ValueError) as e:
            _reply(conn, {"error": "bad request: %s" % e})
            conn.close()
            return
        if request.get("ping"):
            _reply(conn, {"pid": os.getpid(), "core": self.core})
            conn.close()
        elif "start" in request:
            self._start(conn, request)
        else:
            _reply(conn, {"error": "unknown request; expected start or ping"})
            conn.close()

    def _start(self, conn, request):
        core = request.get("core")
        if core and os.path.realpath(core) != self.core:
            self.retiring = True
            self._give_up_socket()
            _reply(conn, {"retired": self.core})
            conn.close()
            return
        path = request["start"]
        problem = _check_record_path(path)
        if problem:
            _reply(conn, {"error": problem})
            conn.close()
            return
        conn.settimeout(None)
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            self._child(conn, ready_r, ready_w, path)        # never returns
        os.close(ready_w)
        self.pending[ready_r] = [conn, pid, b""]
        self.poller.register(ready_r, select.POLLIN)

    def _child(self, conn, ready_r, ready_w, path):
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            for fd in [ready_r, self.wake_r, self.wake_w, self.lock_fd] + list(self.pending):
                close_quietly(fd)
            conn.close()
            for other, _pid, _buffer in self.pending.values():
                other.close()
            if self.listener is not None:
                self.listener.close()
            os.setsid()
            from . import supervisor
            code = supervisor.run(path, ready_fd=ready_w)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except JetpackError as e:
            os.write(2, ("jetpack supervisor for %s: %s\n" % (path, e)).encode(errors="replace"))
        except BaseException as e:
            try:
                import traceback
                traceback.print_exc()
            except BaseException:
                os.write(2, ("jetpack supervisor for %s: %r\n" % (path, e)).encode(errors="replace"))
        finally:
            os._exit(code)

    def _ready(self, fd):
        entry = self.pending[fd]
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        entry[2] += data
        if data and b"\n" not in entry[2] and len(entry[2]) < MAX_REQUEST:
            return
        conn, pid = entry[0], entry[1]
        del self.pending[fd]
        self.poller.unregister(fd)
        os.close(fd)
        try:
            message = json.loads(entry[2].split(b"\n", 1)[0])
        except ValueError:
            message = {"error": "the supervisor (pid %d) ended before the pod was ready; see %s"
                                % (pid, _log_path(self.socket_path))}
        if message.get("ready"):
            reply = {"pid": pid}
        else:
            reply = {"error": message.get("error") or "the pod did not start", "pid": pid}
        _reply(conn, reply)
        conn.close()


def _check_record_path(path) -> str:
    """Why this pod.json must not be used, or ''."""
    if not isinstance(path, str) or not os.path.isabs(path) or os.path.basename(path) != "pod.json":
        return "start needs the absolute path of a pod.json, not %r" % (path,)
    try:
        st = os.lstat(path)
    except OSError as e:
        return "cannot use %s: %s" % (path, e.strerror)
    import stat
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return "%s must be a regular file owned by uid %d and writable by no one else" % (path, os.geteuid())
    return ""


def _peer_allowed(conn) -> bool:
    if not hasattr(socket, "SO_PEERCRED"):
        return True           # FreeBSD: the socket's mode 0600 is the check
    import struct
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid in (0, os.geteuid())


def _read_line(conn) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.split(b"\n", 1)[0]


def _reply(conn, message) -> None:
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass


def _log_path(socket_path: str) -> str:
    base = socket_path[:-5] if socket_path.endswith(".sock") else socket_path
    return base + ".log"


def preload() -> None:
    """Import what a supervisor uses, so that forked supervisors share it. A module that fails
    to import is reported, not fatal: the supervisor meets the same error and reports it."""
    from . import supervisor  # noqa: F401
    for load in (_load_engine, _load_execution):
        try:
            load()
        except Exception as e:
            sys.stderr.write("jetpack zygote: preload: %s: %s\n" % (type(e).__name__, e))
    import traceback  # noqa: F401  (used by a failing child)
    import stat  # noqa: F401
    import struct  # noqa: F401


def _load_engine():
    from . import engines
    engines.for_host()


def _load_execution():
    from . import execution  # noqa: F401


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--socket" or not os.path.isabs(args[1]):
        sys.stderr.write("usage: python3 -m jetpack.zygote --socket /ABSOLUTE/PATH.sock\n")
        return 2
    os.chdir("/")
    os.umask(0o022)
    zygote = Zygote(args[1])
    if not zygote.bind():
        return 0               # another zygote serves this socket
    preload()
    gc.collect()
    gc.freeze()
    zygote.serve()
    return 0


# --- client --------------------------------------------------------------------------------------
def request(socket_path: str, message: dict, timeout: float = REQUEST_TIMEOUT) -> dict:
    """One request; FileNotFoundError/ConnectionRefusedError when no zygote listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(socket_path)
        s.sendall(json.dumps(message).encode() + b"\n")
        try:
            line = _read_line(s)
        except socket.timeout:
            raise JetpackError("the jetpack zygote (%s) did not answer within %d s; check the pod's status "
                               "and logs, and %s" % (socket_path, timeout, _log_path(socket_path)))
    if not line:
        raise JetpackError("the jetpack zygote (%s) closed the connection without answering; see %s"
                           % (socket_path, _log_path(socket_path)))
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise JetpackError("the jetpack zygote (%s) answered %r, not a JSON object" % (socket_path, line[:200]))
    return reply


def ping(socket_path: str):
    """The zygote's {"pid", "core"}, or None when nothing answers."""
    try:
        return request(socket_path, {"ping": True})
    except (OSError, ValueError, JetpackError):
        return None


def start_pod(record_path: str, socket_path: str, core_dir: str, timeout: float = START_TIMEOUT) -> int:
    """Have the zygote of socket_path fork a supervisor for this pod.json; its pid once the pod is up.

    Starts the zygote from core_dir (an installed core) when none answers, or when the one that
    answers runs another core. Raises JetpackError with the supervisor's message when the pod fails
    to start (its teardown is then done).
    """
    message = {"start": os.path.abspath(record_path), "core": core_dir}
    for _attempt in range(3):
        try:
            reply = request(socket_path, message, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            launch(socket_path, core_dir)
            continue
        if "retired" in reply:
            continue
        if "pid" in reply and not reply.get("error"):
            return int(reply["pid"])
        raise JetpackError(reply.get("error") or "the jetpack zygote refused to start the pod")
    raise JetpackError("could not reach a jetpack zygote on %s; see %s" % (socket_path, _log_path(socket_path)))


def launch(socket_path: str, core_dir: str, timeout: float = LAUNCH_TIMEOUT) -> None:
    """Start a zygote from core_dir, detached (own session, re-parented to init); wait until it answers."""
    if not os.path.isfile(os.path.join(core_dir, "jetpack", "zygote.py")):
        raise JetpackError("%s is not an installed jetpack core (no jetpack/zygote.py); "
                           "use install.ensure_installed()" % core_dir)
    if len(os.fsencode(socket_path)) > 100:
        raise JetpackError("the zygote socket path %s is too long for a unix socket (at most 100 bytes)"
                           % socket_path)
    os.makedirs(os.path.dirname(socket_path), mode=0o700, exist_ok=True)
    log = _log_path(socket_path)
    _rotate_small(log)
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    python = sys.executable or "/usr/bin/python3"
    argv = [python, "-m", "jetpack.zygote", "--socket", socket_path]
    try:
        status = spawn_detached(argv, core_dir, log_fd, log_fd)
    finally:
        os.close(log_fd)
    if status != 0:
        raise JetpackError("could not run %s; see %s" % (" ".join(argv), log))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(socket_path):
            return
        time.sleep(0.05)
    raise JetpackError("the jetpack zygote did not come up on %s within %d s: %s"
                       % (socket_path, timeout, _tail(log)))


def _rotate_small(path):
    try:
        if os.stat(path).st_size > LOG_ROTATE_BYTES:
            os.replace(path, path + ".1")
    except FileNotFoundError:
        pass


def _tail(path, size=2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace").strip() or "(its log %s is empty)" % path
    except OSError as e:
        return "cannot read its log %s: %s" % (path, e.strerror)


if __name__ == "__main__":
    raise SystemExit(main())
