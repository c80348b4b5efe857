"""The per-pod supervisor: one host process per running pod, outside the pod, in its own session.

`run(record_path)` loads pod.json, creates the pod context (engine.start), then for each app in
order runs its pre-start handler (as root; the app starts only when it exits 0) and spawns the
app through execution.spawn. Apps' stdout and stderr go through one pipe per app into
`logs/<app>.log`, raw bytes, rotated at a size (`<app>.log.1` is the newest old part). Every change
of state is written to `run/status.json` (temp file + rename). Apps are restarted per the pod's
restart policy with back-off. SIGTERM or SIGINT stops the pod: SIGTERM to every app, SIGKILL
after `stop_timeout`, post-stop handlers, engine.stop, exit 0. The supervisor also exits, after
the same teardown, once every app has ended for good.

Process model: apps are spawned through a double fork (the Linux PID namespace needs it); the
supervisor is a child subreaper (PR_SET_CHILD_SUBREAPER) so the apps are reparented to it and it
reaps them. No threads: one poll() loop over the log pipes and a signal wake-up pipe.

Files of the pod directory it uses:
    run/supervisor.pid   this process's pid, locked (flock) while it runs; removed at exit
    run/context.json     what engine.start returned; removed once engine.stop succeeded
    run/status.json      {"state", "pid", "started", "finished", "error", "apps": {name: {...}}}
    logs/<app>.log[.N]   app and handler output

The restart policy (record["restart"]): "no"; "on-failure": restart after a non-zero exit or a
signal, at most `max_retries` times in a row (the count resets once the app stayed up
RESET_AFTER seconds); "always": restart after any exit, without limit. The delay before a restart
starts at 1 s and doubles up to 30 s; it resets to 1 s after RESET_AFTER seconds of uptime. The
pre-start handler runs before every start, restarts included; the post-stop handler runs once the
app has ended and will not be restarted, or when the pod stops.

App states: starting (pre-start running or waiting for its turn), running, restarting (waiting
for the back-off delay), exited (ended with status 0, or was stopped with the pod), failed (ended
with a failure and will not be restarted, or could not be started).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import sys
import time

from .errors import JetpackError

LOG_MAX_BYTES = 10 << 20
LOG_KEEP = 3
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
RESET_AFTER = 10.0          # seconds of uptime after which back-off and failure count reset
KILL_GRACE = 5.0            # how long to wait for processes to be reaped after SIGKILL
READ_SIZE = 65536
PR_SET_CHILD_SUBREAPER = 36
FINAL = ("exited", "failed")


# --- pure policy ---------------------------------------------------------------------------------
def next_delay(delay: float) -> float:
    """The back-off delay after `delay`: doubling, at most MAX_DELAY."""
    return min(delay * 2, MAX_DELAY)


def should_restart(policy: str, failed: bool, failures: int, max_retries: int) -> bool:
    """Whether an app that just ended is restarted; `failures`: failed runs in a row before this one."""
    if policy == "always":
        return True
    if policy == "on-failure":
        return failed and failures < max_retries
    return False


def plan_restart(policy: str, max_retries: int, failed: bool, uptime: float, failures: int, delay: float):
    """What follows the end of an app's run: (restart?, seconds to wait first, failures in a row,
    delay for the next time). A run of RESET_AFTER seconds or more resets back-off and failures."""
    if uptime >= RESET_AFTER:
        delay, failures = FIRST_DELAY, 0
    if not should_restart(policy, failed, failures, max_retries):
        return False, 0.0, failures, delay
    return True, delay, (failures + 1 if failed else 0), next_delay(delay)


def stop_budget(record: dict, engine_stop: float = 10.0) -> float:
    """The longest a supervisor's stop sequence may take (SIGTERM, SIGKILL, post-stop handlers,
    engine.stop taking at most engine_stop): how long to wait before killing the supervisor."""
    timeout = float(record.get("stop_timeout", 10))
    handlers = sum(1 for app in record.get("apps") or () if (app.get("handlers") or {}).get("post-stop"))
    return (timeout + KILL_GRACE) * (2 + handlers) + engine_stop


def running_pid(pod_dir: str):
    """The pid of the pod's supervisor while one runs (it holds a lock on run/supervisor.pid), else None.
    Unlike a pid check, this cannot be fooled by a reused pid after a crash."""
    path = os.path.join(pod_dir, "run", "supervisor.pid")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return int(os.read(fd, 64).strip() or 0) or None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except ValueError:
        return None
    finally:
        os.close(fd)


def describe_exit(status: int):
    """(exit_code, signal name) of a wait status; one of them is None."""
    if os.WIFSIGNALED(status):
        return None, signal_name(os.WTERMSIG(status))
    return os.WEXITSTATUS(status), None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "SIG%d" % number


def _iso(t):
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def write_json_atomic(path: str, data) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, json.dumps(data, sort_keys=True).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --- logs ----------------------------------------------------------------------------------------
class Log:
    """An append-only log file rotated when it would pass max_bytes; `keep` old parts."""

    __slots__ = ("path", "max_bytes", "keep", "fd", "size")

    def __init__(self, path: str, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP):
        self.path = path
        self.max_bytes = max(1, int(max_bytes))
        self.keep = max(0, int(keep))
        self.fd = -1
        self.size = 0
        self._open()

    def _open(self, truncate=False):
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.path, flags | (os.O_TRUNC if truncate else 0), 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                room = self.max_bytes - self.size
                if room <= 0:
                    self.rotate()
                    continue
                written = os.write(self.fd, view[:room])
                self.size += written
                view = view[written:]
        except OSError as e:      # a full disk loses output, never the supervisor
            _say("cannot write %s: %s" % (self.path, e))

    def rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
        if self.keep:
            for n in range(self.keep - 1, 0, -1):
                older = "%s.%d" % (self.path, n)
                if os.path.lexists(older):
                    os.replace(older, "%s.%d" % (self.path, n + 1))
            os.replace(self.path, self.path + ".1")
            self._open()
        else:
            self._open(truncate=True)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- one app -------------------------------------------------------------------------------------
class App:
    __slots__ = ("spec", "name", "state", "pid", "exit_code", "signal", "started", "finished", "up_since",
                 "restarts", "failures", "delay", "restart_at", "error", "log", "rfd", "wfd", "handler",
                 "handlers", "post_stop_due")

    def __init__(self, spec: dict, log: Log):
        self.spec = spec
        self.name = spec["name"]
        self.state = "starting"
        self.pid = None
        self.exit_code = None
        self.signal = None
        self.started = None
        self.finished = None
        self.up_since = 0.0
        self.restarts = 0
        self.failures = 0
        self.delay = FIRST_DELAY
        self.restart_at = None
        self.error = None
        self.log = log
        self.rfd, self.wfd = os.pipe()        # both close-on-exec; spawn dup2s wfd onto 1 and 2
        os.set_blocking(self.rfd, False)
        self.handler = None                   # pid of the running handler
        self.handlers = {}                    # event -> {"exit_code", "signal"} of its last run
        self.post_stop_due = False

    def status(self) -> dict:
        return {"state": self.state, "pid": self.pid, "exit_code": self.exit_code, "signal": self.signal,
                "started": _iso(self.started), "finished": _iso(self.finished), "restarts": self.restarts,
                "error": self.error, "handlers": self.handlers,
                "restart_at": _iso(time.time() + self.restart_at - time.monotonic()) if self.restart_at else None}


# --- the supervisor ------------------------------------------------------------------------------
class Supervisor:
    def __init__(self, record: dict, engine, spawn, ready_fd=None):
        self.record = record
        self.engine = engine
        self.spawn = spawn
        self.ready_fd = ready_fd
        self.pod_dir = record["pod_dir"]
        self.run_dir = os.path.join(self.pod_dir, "run")
        self.log_dir = os.path.join(self.pod_dir, "logs")
        restart = record.get("restart") or {}
        self.policy = restart.get("policy", "no")
        self.max_retries = int(restart.get("max_retries", 3))
        self.stop_timeout = float(record.get("stop_timeout", 10))
        logs = record.get("logs") or {}
        self.log_max = int(logs.get("max_bytes", LOG_MAX_BYTES))
        self.log_keep = int(logs.get("keep", LOG_KEEP))
        self.state = "starting"
        self.error = None
        self.started = time.time()
        self.finished = None
        self.context = None
        self.apps = []
        self.procs = {}            # pid -> (App, kind) with kind "app", "pre-start" or "post-stop"
        self.by_fd = {}
        self.poller = select.poll()
        self.startup = 0           # index of the app whose first start is under way
        self.stop_requested = False
        self.stopping = False
        self.wake_r = self.wake_w = -1
        self.pid_fd = -1

    # --- entry ----------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self._setup()
        except BaseException as e:
            if self.pid_fd >= 0:
                self._release()
            self._report({"error": _message(e)})
            raise
        try:
            try:
                self.context = self.engine.start(self.record)
                write_json_atomic(os.path.join(self.run_dir, "context.json"), self.context)
            except Exception as e:
                self._fail("the pod context could not be started: %s" % _message(e))
            else:
                self.state = "running"
                self._save()
                self._next_startup()
                self._loop()
        except BaseException as e:
            self._fail("supervisor error: %s" % _message(e))
            raise
        finally:
            self._shutdown()
        return 1 if self.error else 0

    def _setup(self):
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.log_dir, mode=0o750, exist_ok=True)
        self._lock_pid_file()
        _become_subreaper()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.poller.register(self.wake_r, select.POLLIN)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        for signum in (signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, wake_only)   # a handler, not SIG_IGN: exec restores the default
        for spec in self.record.get("apps") or []:
            app = App(spec, Log(os.path.join(self.log_dir, spec["name"] + ".log"), self.log_max, self.log_keep))
            self.apps.append(app)
            self.by_fd[app.rfd] = app
            self.poller.register(app.rfd, select.POLLIN)
        self._save()

    def _lock_pid_file(self):
        path = os.path.join(self.run_dir, "supervisor.pid")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        else:
            try:
                for attempt in range(50):       # running_pid() takes a shared lock for an instant
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError:
                        if attempt == 49:
                            raise JetpackError("pod %s already has a running supervisor (%s); stop the pod "
                                               "first" % (self.record.get("name"), path)) from None
                        time.sleep(0.01)
            finally:
                os.close(fd)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"%d\n" % os.getpid())
        os.replace(tmp, path)
        self.pid_fd = fd          # held (locked) for the life of the supervisor

    # --- the loop -------------------------------------------------------------------------------
    def _loop(self):
        while not self.stop_requested and not self._finished():
            self._step(self._next_timer())
            self._fire_timers()

    def _step(self, timeout):
        """Wait for output, a signal or `timeout` seconds (None: no limit); handle what came."""
        try:
            events = self.poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))
        except InterruptedError:
            events = ()
        for fd, _event in events:
            if fd == self.wake_r:
                drain(fd)
            else:
                self._read(self.by_fd[fd])
        self._reap()

    def _read(self, app):
        try:
            data = os.read(app.rfd, READ_SIZE)
        except BlockingIOError:
            return
        if data:
            app.log.write(data)

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.procs.pop(pid, None)
            if entry:              # others: intermediates of the double fork, orphans of apps
                self._exited(entry[0], entry[1], status)

    def _next_timer(self):
        times = [a.restart_at for a in self.apps if a.restart_at is not None]
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def _fire_timers(self):
        now = time.monotonic()
        for app in self.apps:
            if app.restart_at is not None and app.restart_at <= now and not self.stop_requested:
                app.restart_at = None
                app.restarts += 1
                self._begin(app)

    def _finished(self):
        return (self.startup >= len(self.apps) and not self.procs
                and all(app.state in FINAL for app in self.apps))

    # --- starting apps --------------------------------------------------------------------------
    def _next_startup(self):
        if self.startup < len(self.apps):
            self._begin(self.apps[self.startup])
        else:
            self._report({"ready": True})

    def _in_startup(self, app):
        return self.startup < len(self.apps) and self.apps[self.startup] is app

    def _begin(self, app):
        """One start of an app: its pre-start handler if it has one, then the app."""
        app.state = "starting"
        app.pid = None
        app.error = None
        app.post_stop_due = True
        argv = (app.spec.get("handlers") or {}).get("pre-start")
        if argv:
            if self._spawn_handler(app, "pre-start", argv):
                self._save()
        else:
            self._spawn_app(app)

    def _spawn_handler(self, app, event, argv) -> bool:
        try:
            pid = self.spawn(self.engine, self.record, self.context, app.spec, argv=list(argv), as_root=True,
                             stdout=app.wfd, stderr=app.wfd)
        except Exception as e:
            message = "%s handler could not be started: %s" % (event, _message(e))
            app.handlers[event] = {"exit_code": None, "signal": None, "error": message}
            if event == "pre-start":
                self._start_failed(app, message)
            else:
                app.error = app.error or message
                self._save()
            return False
        app.handler = pid
        self.procs[pid] = (app, event)
        return True

    def _spawn_app(self, app):
        try:
            pid = self.spawn(self.engine, self.record, self.context, app.spec, stdout=app.wfd, stderr=app.wfd)
        except Exception as e:
            self._start_failed(app, "could not be started: %s" % _message(e))
            return
        app.pid = pid
        app.state = "running"
        app.started = time.time()
        app.up_since = time.monotonic()
        app.finished = None
        app.exit_code = app.signal = None
        self.procs[pid] = (app, "app")
        self._save()
        if self._in_startup(app):
            self.startup += 1
            self._next_startup()

    def _start_failed(self, app, message):
        own = "app %s: " % app.name
        app.error = own + message.replace(own, "")
        app.finished = time.time()
        if self._in_startup(app):
            app.state = "failed"
            self._fail(app.error)
            return
        if not self._context_alive():
            app.state = "failed"
            self._fail("the pod context is gone (%s)" % app.error)
            return
        self._ended(app, failed=True, uptime=0.0)

    def _context_alive(self) -> bool:
        try:
            return bool(self.engine.running(self.record, self.context))
        except Exception:
            return False

    # --- exits ----------------------------------------------------------------------------------
    def _exited(self, app, kind, status):
        code, sig = describe_exit(status)
        if kind != "app":
            app.handler = None
            app.handlers[kind] = {"exit_code": code, "signal": sig}
            if kind == "pre-start" and not self.stop_requested:
                if code == 0:
                    self._spawn_app(app)
                else:
                    self._start_failed(app, "pre-start handler %s" % _how(code, sig))
            else:
                self._save()
            return
        app.pid = None
        app.exit_code, app.signal = code, sig
        app.finished = time.time()
        if self.stopping:
            app.state = "exited"
            self._save()
            return
        self._ended(app, failed=code != 0, uptime=time.monotonic() - app.up_since)

    def _ended(self, app, failed, uptime):
        """An app's run ended (or its start failed): restart it, or end it for good."""
        restart, wait, app.failures, app.delay = plan_restart(self.policy, self.max_retries, failed, uptime,
                                                              app.failures, app.delay)
        if restart:
            app.state = "restarting"
            app.restart_at = time.monotonic() + wait
        else:
            app.state = "failed" if failed else "exited"
            self._post_stop(app)
        self._save()

    def _post_stop(self, app):
        if not app.post_stop_due:
            return
        app.post_stop_due = False
        argv = (app.spec.get("handlers") or {}).get("post-stop")
        if argv:
            self._spawn_handler(app, "post-stop", argv)

    # --- stopping -------------------------------------------------------------------------------
    def _on_stop_signal(self, signum, frame):
        self.stop_requested = True

    def _fail(self, message):
        if not self.error:
            self.error = message
        self.stop_requested = True

    def _shutdown(self):
        """Stop everything still running, post-stop handlers, engine.stop; report and clean up."""
        self.stopping = True
        self.state = "stopping"
        self._save()
        try:
            for app in self.apps:
                if app.state == "restarting":
                    app.restart_at = None
                    app.state = "failed" if app.exit_code != 0 else "exited"
            self._terminate(("app", "pre-start"))
            self._wait_for(("post-stop",), self.stop_timeout)      # handlers of apps that ended earlier
            for app in reversed(self.apps):
                self._post_stop(app)
                self._wait_for(("post-stop",), self.stop_timeout)
            if self.context is not None:
                try:
                    self.engine.stop(self.record, self.context)
                except Exception as e:
                    if not self.error:
                        self.error = "the pod context could not be stopped: %s" % _message(e)
                else:
                    _unlink(os.path.join(self.run_dir, "context.json"))
            for app in self.apps:
                self._drain_output(app)
        finally:
            for app in self.apps:
                if app.state not in FINAL:        # stopped before or while it was started
                    app.state = "exited"
            self.state = "failed" if self.error else "stopped"
            self.finished = time.time()
            self._save()
            self._release()  # before the report: whoever hears it finds the pod stopped, pid file gone
            self._report({"error": self.error or "the pod was stopped before all its apps were started"})

    def _terminate(self, kinds):
        """SIGTERM the processes of these kinds, SIGKILL what is left after stop_timeout."""
        self._signal(kinds, signal.SIGTERM)
        self._wait_for(kinds, self.stop_timeout)

    def _wait_for(self, kinds, timeout) -> None:
        if not self._until_gone(kinds, timeout):
            self._signal(kinds, signal.SIGKILL)
            self._until_gone(kinds, KILL_GRACE)

    def _until_gone(self, kinds, timeout) -> bool:
        deadline = time.monotonic() + timeout
        while any(kind in kinds for _app, kind in self.procs.values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._step(remaining)
        return True

    def _signal(self, kinds, signum):
        for pid, (_app, kind) in list(self.procs.items()):
            if kind in kinds:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

    def _drain_output(self, app):
        for _attempt in range(64):      # what the pipe still holds; bounded: an orphan may keep writing
            try:
                data = os.read(app.rfd, READ_SIZE)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            app.log.write(data)

    def _release(self):
        """Close the pipes and logs, remove the pid file."""
        for app in self.apps:
            for fd in (app.rfd, app.wfd):
                close_quietly(fd)
            app.log.close()
        _unlink(os.path.join(self.run_dir, "supervisor.pid"))
        close_quietly(self.pid_fd)
        self.pid_fd = -1

    # --- reporting ------------------------------------------------------------------------------
    def _save(self):
        data = {"state": self.state, "pid": os.getpid(), "name": self.record.get("name"),
                "uuid": self.record.get("uuid"), "started": _iso(self.started), "finished": _iso(self.finished),
                "error": self.error, "apps": {app.name: app.status() for app in self.apps}}
        try:
            write_json_atomic(os.path.join(self.run_dir, "status.json"), data)
        except OSError as e:
            _say("cannot write status.json: %s" % e)

    def _report(self, message):
        """Tell whoever waits for the start (the zygote) that the pod is ready or failed; once."""
        if self.ready_fd is None:
            return
        fd, self.ready_fd = self.ready_fd, None
        try:
            os.write(fd, json.dumps(message).encode() + b"\n")
        except OSError:
            pass
        close_quietly(fd)


# --- helpers -------------------------------------------------------------------------------------
def _become_subreaper():
    """Orphans of the double fork come back to us (Linux); FreeBSD spawns without a double fork."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise JetpackError("prctl(PR_SET_CHILD_SUBREAPER) failed: %s; the supervisor needs Linux >= 3.4"
                           % os.strerror(ctypes.get_errno()))


def wake_only(signum, frame):
    pass


def drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _how(code, sig) -> str:
    return "was killed by %s" % sig if sig else "exited with %d" % code


def _message(e) -> str:
    return str(e) if isinstance(e, JetpackError) else "%s: %s" % (type(e).__name__, e)


def close_quietly(fd):
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _say(text):
    try:
        os.write(2, ("jetpack supervisor[%d]: %s\n" % (os.getpid(), text)).encode())
    except OSError:
        pass


def load_record(record_path: str) -> dict:
    try:
        with open(record_path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise JetpackError("cannot read the pod record %s: %s" % (record_path, e))


def default_engine(record: dict):
    from . import engines
    engine = engines.for_host()
    if record.get("engine") and getattr(engine, "name", None) != record["engine"]:
        raise JetpackError("pod %s is for the %s engine; this host runs %s"
                           % (record.get("name"), record["engine"], getattr(engine, "name", "?")))
    return engine


def default_spawn():
    from . import execution
    return execution.spawn


def run(record_path: str, engine=None, spawn=None, ready_fd=None) -> int:
    """Supervise the pod of this pod.json until it stops; the exit code (0: stopped cleanly).

    `ready_fd`: a pipe written once, one JSON line: {"ready": true} once every app was started,
    else {"error": message} (after the teardown). engine and spawn default to the host's engine
    and execution.spawn.
    """
    record_path = os.path.abspath(record_path)
    os.umask(0o022)
    os.chdir("/")
    try:
        record = load_record(record_path)
        engine = engine or default_engine(record)
        spawn = spawn or default_spawn()
    except BaseException as e:
        if ready_fd is not None:
            try:
                os.write(ready_fd, json.dumps({"error": _message(e)}).encode() + b"\n")
            except OSError:
                pass
        raise
    return Supervisor(record, engine, spawn, ready_fd).run()


def main(argv=None) -> int:
    """`python3 -m jetpack.supervisor [--ready-fd N] POD_JSON` (normally forked by the zygote)."""
    args = list(sys.argv[1:] if argv is None else argv)
    ready_fd = None
    if len(args) == 3 and args[0] == "--ready-fd":
        ready_fd = int(args[1])
        args = args[2:]
    if len(args) != 1:
        sys.stderr.write("usage: python3 -m jetpack.supervisor [--ready-fd N] POD_JSON\n")
        return 2
    try:
        os.setsid()
    except OSError as e:
        if e.errno != errno.EPERM:     # EPERM: already a process group leader
            raise
    try:
        return run(args[0], ready_fd=ready_fd)
    except JetpackError as e:
        _say(str(e))
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
