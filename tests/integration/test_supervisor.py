"""The pod supervisor and the zygote, with real processes.

Most tests run the supervisor with HostEngine below: a real engine whose pod context is the host
itself (attach does nothing) and a spawner that, like execution.spawn on Linux, forks twice and
returns the grandchild, so the supervisor must reap apps through PR_SET_CHILD_SUBREAPER. The
zygote tests start the real zygote from an installed core; the Linux-engine tests run pods of a
busybox rootfs through it.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import install, supervisor, zygote
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import JetpackError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor's process model is Linux's here"),
]

SH = shutil.which("sh") or "/bin/sh"


# --- a real engine running apps as host processes ------------------------------------------------
class HostEngine:
    name = "host"

    def __init__(self, events):
        self.events = str(events)

    def _note(self, what):
        with open(self.events, "a") as f:
            f.write(what + "\n")

    def prepare(self, record):
        pass

    def start(self, record):
        self._note("start")
        return {"host": True}

    def attach(self, record, context):
        pass

    def stop(self, record, context):
        self._note("stop")

    def running(self, record, context):
        return True


def host_spawn(engine, record, context, app, argv=None, as_root=False, stdout=None, stderr=None):
    """Run argv (default: the app's exec) on the host through a double fork; the grandchild's pid."""
    argv = list(argv or app["exec"])
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "AC_APP_NAME": app["name"]}
    env.update(app.get("environment") or {})
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(signum, signal.SIG_DFL)
            grandchild = os.fork()
            if grandchild == 0:
                try:
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(stdout, 1)
                    os.dup2(stderr, 2)
                    os.chdir(app.get("working_directory") or "/")
                    os.execve(argv[0], argv, env)
                finally:
                    os._exit(127)
            os.write(w, b"%d" % grandchild)
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if not data:
        raise JetpackError("could not fork %s" % argv)
    return int(data)


# --- helpers -------------------------------------------------------------------------------------
def stop_with_parent():
    """In a supervisor forked by a test: SIGTERM when the test process dies (no stray pods)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG


def sh(script):
    return [SH, "-c", script]


def make_pod(tmp_path, apps, policy="no", max_retries=3, stop_timeout=5, logs=None):
    pod_dir = tmp_path / "pod"
    for sub in ("run", "logs"):
        (pod_dir / sub).mkdir(parents=True, exist_ok=True)
    record = {"uuid": "00000000-0000-4000-8000-000000000001", "name": "test", "hostname": "test", "engine": "host",
              "pod_dir": str(pod_dir), "root": str(pod_dir / "rootfs"), "stop_timeout": stop_timeout,
              "restart": {"policy": policy, "max_retries": max_retries}, "apps": [], "volumes": []}
    for app in apps:
        record["apps"].append(dict({"environment": {}, "working_directory": str(tmp_path), "mounts": []}, **app))
    if logs:
        record["logs"] = logs
    path = pod_dir / "pod.json"
    path.write_text(json.dumps(record))
    path.chmod(0o600)
    return path


class Running:
    """A supervisor forked from the test process (its parent, so the test can wait for it)."""

    def __init__(self, record_path, engine):
        self.record_path = record_path
        self.pod_dir = os.path.dirname(str(record_path))
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(r)
                os.setsid()
                stop_with_parent()
                code = supervisor.run(str(record_path), engine=engine, spawn=host_spawn, ready_fd=w)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        self.ready = json.loads(read_line(r, 30) or b"{}")
        os.close(r)
        self.returncode = None

    def status(self):
        return read_status(self.pod_dir)

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                return self.returncode
            time.sleep(0.05)
        raise AssertionError("the supervisor %d did not exit within %s s" % (self.pid, timeout))

    def stop(self, timeout=30):
        os.kill(self.pid, signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.returncode = -signal.SIGKILL

    def clean_up(self):
        """After a test: stop it the way a pod is stopped (its apps with it); SIGKILL if that fails."""
        if self.returncode is None:
            try:
                self.stop(timeout=30)
            except (AssertionError, ProcessLookupError):
                self.kill()


@pytest.fixture
def supervised():
    started = []

    def start(record_path, engine):
        running = Running(record_path, engine)
        started.append(running)
        return running

    yield start
    for running in started:
        running.clean_up()


def read_line(fd, timeout):
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise AssertionError("no answer within %s s (got %r)" % (timeout, data))
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def read_status(pod_dir):
    with open(os.path.join(str(pod_dir), "run", "status.json")) as f:
        return json.load(f)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out after %s s waiting for %s" % (timeout, what))


def lines(path):
    try:
        with open(str(path)) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid):
    """{child pid: state letter} of a process, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found[int(entry)] = fields[0]
    return found


# --- pure policy ---------------------------------------------------------------------------------
def test_back_off_doubles_up_to_thirty_seconds():
    delays = [supervisor.FIRST_DELAY]
    for _attempt in range(7):
        delays.append(supervisor.next_delay(delays[-1]))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


@pytest.mark.parametrize("policy,failed,failures,expected", [
    ("no", True, 0, False), ("no", False, 0, False),
    ("on-failure", True, 0, True), ("on-failure", True, 2, True), ("on-failure", True, 3, False),
    ("on-failure", False, 0, False),
    ("always", False, 0, True), ("always", True, 99, True),
])
def test_restart_policy(policy, failed, failures, expected):
    assert supervisor.should_restart(policy, failed, failures, max_retries=3) is expected


def test_back_off_resets_after_ten_seconds_of_uptime():
    plan = supervisor.plan_restart
    # A crash loop: 1 s, then 2 s, then 4 s; on-failure gives up after max_retries failures in a row.
    assert plan("on-failure", 3, True, 0.5, 0, 1.0) == (True, 1.0, 1, 2.0)
    assert plan("on-failure", 3, True, 0.5, 1, 2.0) == (True, 2.0, 2, 4.0)
    assert plan("on-failure", 3, True, 0.5, 2, 4.0) == (True, 4.0, 3, 8.0)
    assert plan("on-failure", 3, True, 0.5, 3, 8.0) == (False, 0.0, 3, 8.0)
    # After a run of 10 s or more, both the delay and the failures in a row start again.
    assert plan("on-failure", 3, True, supervisor.RESET_AFTER, 3, 8.0) == (True, 1.0, 1, 2.0)
    assert plan("always", 3, False, 9.9, 0, 16.0) == (True, 16.0, 0, 30.0)
    assert plan("always", 3, False, 600, 0, 30.0) == (True, 1.0, 0, 2.0)
    assert plan("no", 3, True, 0, 0, 1.0)[0] is False


def test_stop_budget_covers_the_whole_stop_sequence():
    record = {"stop_timeout": 4, "apps": [{"handlers": {"post-stop": ["x"]}}, {"handlers": {}}]}
    # apps: timeout + kill grace; one post-stop handler: the same again; the engine: its own.
    assert supervisor.stop_budget(record, engine_stop=10) >= 4 + supervisor.KILL_GRACE + 4 + supervisor.KILL_GRACE + 10


# --- the supervisor with real processes ----------------------------------------------------------
def test_pre_start_runs_before_the_app_and_post_stop_after_it(tmp_path, supervised):
    order = tmp_path / "order"
    record = make_pod(tmp_path, [{
        "name": "one", "exec": sh("echo app >> %s" % order),
        "handlers": {"pre-start": sh("echo pre-start >> %s" % order),
                     "post-stop": sh("echo post-stop >> %s" % order)}}])
    events = tmp_path / "events"
    running = supervised(record, HostEngine(events))
    assert running.ready == {"ready": True}
    assert running.wait(30) == 0            # every app ended for good: the pod stops by itself
    assert lines(order) == ["pre-start", "app", "post-stop"]
    assert lines(events) == ["start", "stop"]
    status = running.status()
    assert status["state"] == "stopped" and status["error"] is None
    app = status["apps"]["one"]
    assert (app["state"], app["exit_code"], app["signal"], app["restarts"]) == ("exited", 0, None, 0)
    assert app["handlers"]["pre-start"]["exit_code"] == 0 and app["handlers"]["post-stop"]["exit_code"] == 0
    assert app["started"] and app["finished"] and app["started"] <= app["finished"]
    assert not (tmp_path / "pod" / "run" / "supervisor.pid").exists()
    assert not (tmp_path / "pod" / "run" / "context.json").exists()


def test_a_failing_pre_start_keeps_the_app_from_starting(tmp_path, supervised):
    marker = tmp_path / "app-ran"
    record = make_pod(tmp_path, [{"name": "one", "exec": sh("touch %s" % marker),
                                  "handlers": {"pre-start": sh("echo no; exit 3")}}])
    events = tmp_path / "events"
    running = supervised(record, HostEngine(events))
    assert "pre-start" in running.ready["error"] and "3" in running.ready["error"]
    assert running.wait(30) == 1
    assert not marker.exists()
    assert lines(events) == ["start", "stop"]
    status = running.status()
    assert status["state"] == "failed" and "pre-start" in status["error"]
    assert status["apps"]["one"]["state"] == "failed"
    assert status["apps"]["one"]["handlers"]["pre-start"]["exit_code"] == 3
    assert (tmp_path / "pod" / "logs" / "one.log").read_bytes() == b"no\n"


def test_on_failure_restarts_with_back_off_until_max_retries(tmp_path, supervised):
    runs, post = tmp_path / "runs", tmp_path / "post"
    record = make_pod(tmp_path, [{"name": "crash", "exec": sh("date +%%s.%%N >> %s; exit 3" % runs),
                                  "handlers": {"post-stop": sh("echo post >> %s" % post)}}],
                      policy="on-failure", max_retries=2)
    running = supervised(record, HostEngine(tmp_path / "events"))
    assert running.wait(60) == 0
    starts = [float(t) for t in lines(runs)]
    assert len(starts) == 3                       # the first run and max_retries restarts
    assert starts[1] - starts[0] >= 0.9           # back-off: at least 1 s, then at least 2 s
    assert starts[2] - starts[1] >= 1.9
    app = running.status()["apps"]["crash"]
    assert (app["state"], app["exit_code"], app["restarts"]) == ("failed", 3, 2)
    assert lines(post) == ["post"]                # once, when it will not be restarted


def test_no_policy_does_not_restart_a_failure(tmp_path, supervised):
    runs = tmp_path / "runs"
    record = make_pod(tmp_path, [{"name": "once", "exec": sh("echo run >> %s; kill -9 $$" % runs)}], policy="no")
    running = supervised(record, HostEngine(tmp_path / "events"))
    assert running.wait(30) == 0
    assert lines(runs) == ["run"]
    app = running.status()["apps"]["once"]
    assert (app["state"], app["exit_code"], app["signal"], app["restarts"]) == ("failed", None, "SIGKILL", 0)


def test_always_restarts_a_clean_exit(tmp_path, supervised):
    runs = tmp_path / "runs"
    record = make_pod(tmp_path, [{"name": "loop", "exec": sh("echo run >> %s; exit 0" % runs)}], policy="always")
    running = supervised(record, HostEngine(tmp_path / "events"))
    wait_for(lambda: len(lines(runs)) >= 3, 30, "three runs")
    assert running.status()["apps"]["loop"]["state"] in ("restarting", "running", "starting")
    assert running.stop() == 0
    app = running.status()["apps"]["loop"]
    assert app["restarts"] >= 2 and app["state"] == "exited" and app["exit_code"] == 0
    assert running.status()["state"] == "stopped"


def test_logs_are_raw_and_rotate_at_the_size_limit(tmp_path, supervised):
    script = ("i=0; while [ $i -lt 35 ]; do printf '%099d\\n' $i; i=$((i+1)); done; "
              "printf 'E%098d\\n' 0 >&2")
    record = make_pod(tmp_path, [{"name": "talk", "exec": sh(script)}], logs={"max_bytes": 1000, "keep": 2})
    running = supervised(record, HostEngine(tmp_path / "events"))
    assert running.wait(30) == 0
    expected = b"".join(b"%099d\n" % i for i in range(35)) + b"E%098d\n" % 0
    logs = tmp_path / "pod" / "logs"
    parts = [logs / "talk.log.2", logs / "talk.log.1", logs / "talk.log"]
    assert [p.stat().st_size for p in parts] == [1000, 1000, 600]
    assert b"".join(p.read_bytes() for p in parts) == expected[1000:]   # the oldest part was dropped
    assert not (logs / "talk.log.3").exists()


def test_sigterm_stops_apps_and_kills_one_that_ignores_it(tmp_path, supervised):
    order, up = tmp_path / "order", tmp_path / "up"
    record = make_pod(tmp_path, [
        {"name": "polite", "exec": ["/bin/sleep", "1000"],
         "handlers": {"post-stop": sh("echo post-stop polite >> %s" % order)}},
        {"name": "stubborn", "exec": sh("trap '' TERM; touch %s; while :; do sleep 0.2; done" % up),
         "handlers": {"post-stop": sh("echo post-stop stubborn >> %s" % order)}},
    ], stop_timeout=2)
    events = tmp_path / "events"
    running = supervised(record, HostEngine(events))
    assert running.ready == {"ready": True}
    wait_for(up.exists, 10, "the stubborn app to trap SIGTERM")
    status = running.status()
    pids = {name: status["apps"][name]["pid"] for name in ("polite", "stubborn")}
    assert all(alive(pid) for pid in pids.values())
    assert all(supervisor_child == running.pid for supervisor_child in
               (int(open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[1]) for pid in pids.values()))
    assert (tmp_path / "pod" / "run" / "supervisor.pid").read_text().strip() == str(running.pid)

    sent = time.monotonic()
    assert running.stop(timeout=30) == 0
    assert time.monotonic() - sent >= 2           # it waited stop_timeout before SIGKILL
    status = running.status()
    assert status["state"] == "stopped"
    assert status["apps"]["polite"]["signal"] == "SIGTERM"
    assert status["apps"]["stubborn"]["signal"] == "SIGKILL"
    assert all(status["apps"][name]["state"] == "exited" for name in pids)
    assert not any(alive(pid) for pid in pids.values())
    assert sorted(lines(order)) == ["post-stop polite", "post-stop stubborn"]
    assert lines(events) == ["start", "stop"]
    assert not (tmp_path / "pod" / "run" / "supervisor.pid").exists()


def test_stop_while_pre_start_runs_never_starts_the_app(tmp_path, supervised):
    marker, handler_up = tmp_path / "app-ran", tmp_path / "handler-up"
    record = make_pod(tmp_path, [{"name": "slow", "exec": sh("touch %s" % marker),
                                  "handlers": {"pre-start": sh("touch %s; exec sleep 1000" % handler_up)}}])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                          # run() only reports once the pre-start ended: do not wait
        code = 1
        try:
            os.close(r)
            os.setsid()
            stop_with_parent()
            code = supervisor.run(str(record), engine=HostEngine(tmp_path / "events"), spawn=host_spawn, ready_fd=w)
        finally:
            os._exit(code)
    os.close(w)
    try:
        wait_for(handler_up.exists, 10, "the pre-start handler")
        os.kill(pid, signal.SIGTERM)
        reply = json.loads(read_line(r, 30))
        assert "stopped before" in reply["error"]
        _pid, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(r)
    assert not marker.exists()
    assert read_status(tmp_path / "pod")["state"] == "stopped"


def test_a_second_supervisor_for_the_same_pod_is_refused(tmp_path, supervised):
    record = make_pod(tmp_path, [{"name": "idle", "exec": ["/bin/sleep", "1000"]}])
    pod_dir = str(tmp_path / "pod")
    first = supervised(record, HostEngine(tmp_path / "events"))
    assert first.ready == {"ready": True}
    assert supervisor.running_pid(pod_dir) == first.pid
    second = supervised(record, HostEngine(tmp_path / "events2"))
    assert "already has a running supervisor" in second.ready["error"]
    assert second.wait(10) == 1
    assert not (tmp_path / "events2").exists()
    assert (tmp_path / "pod" / "run" / "supervisor.pid").read_text().strip() == str(first.pid)
    assert read_status(pod_dir)["apps"]["idle"]["state"] == "running"
    assert first.stop() == 0
    assert supervisor.running_pid(pod_dir) is None


def test_after_kill_9_of_a_supervisor_its_stale_pid_file_does_not_block(tmp_path, supervised):
    record = make_pod(tmp_path, [{"name": "idle", "exec": ["/bin/sleep", "1000"]}])
    pod_dir = str(tmp_path / "pod")
    first = supervised(record, HostEngine(tmp_path / "events"))
    orphan = first.status()["apps"]["idle"]["pid"]
    try:
        first.kill()
        assert (tmp_path / "pod" / "run" / "supervisor.pid").exists()       # left behind...
        assert supervisor.running_pid(pod_dir) is None                      # ...but not held
        second = supervised(record, HostEngine(tmp_path / "events"))
        assert second.ready == {"ready": True}
        assert supervisor.running_pid(pod_dir) == second.pid
        assert second.stop() == 0
    finally:
        os.kill(orphan, signal.SIGKILL)   # the host engine has no holder to take the first app down


def test_no_zombies_accumulate_while_apps_restart(tmp_path, supervised):
    runs = tmp_path / "runs"
    # Each run leaves an orphan (sleep) that is re-parented to the supervisor and ends later.
    record = make_pod(tmp_path, [{"name": "flap", "exec": sh("/bin/sleep 0.3 & echo run >> %s" % runs)},
                                 {"name": "idle", "exec": ["/bin/sleep", "1000"]}], policy="always")
    running = supervised(record, HostEngine(tmp_path / "events"))
    wait_for(lambda: len(lines(runs)) >= 3, 30, "three runs")
    wait_for(lambda: "Z" not in children(running.pid).values(), 10, "no zombie children")
    idle = running.status()["apps"]["idle"]["pid"]
    assert idle in children(running.pid)          # re-parented to the supervisor (subreaper)
    assert running.stop() == 0
    assert children(running.pid) == {}


# --- the zygote ----------------------------------------------------------------------------------
@pytest.fixture
def zygote_env():
    """An installed core and a short socket path; kills the zygote it started."""
    top = tempfile.mkdtemp(prefix="jz", dir="/tmp")
    core = install.ensure_installed(base=os.path.join(top, "core"))
    socket_path = os.path.join(top, "run", "z.sock")
    yield core, socket_path, top
    answer = zygote.ping(socket_path)
    if answer:
        os.kill(answer["pid"], signal.SIGKILL)
    shutil.rmtree(top, ignore_errors=True)


def _zygote_pod(top, engine="nonexistent"):
    pod_dir = os.path.join(top, "pod")
    os.makedirs(os.path.join(pod_dir, "run"), exist_ok=True)
    record = {"uuid": "u", "name": "z", "engine": engine, "pod_dir": pod_dir, "root": os.path.join(pod_dir, "rootfs"),
              "stop_timeout": 1, "restart": {"policy": "no"}, "apps": [], "volumes": []}
    path = os.path.join(pod_dir, "pod.json")
    with open(path, "w") as f:
        json.dump(record, f)
    os.chmod(path, 0o600)
    return path


def test_zygote_reports_a_supervisor_error_survives_and_is_reused(zygote_env):
    core, socket_path, top = zygote_env
    record = _zygote_pod(top)
    with pytest.raises(JetpackError, match="engine"):
        zygote.start_pod(record, socket_path, core)
    first = zygote.ping(socket_path)
    assert first and first["core"] == os.path.realpath(core)
    assert oct(os.stat(socket_path).st_mode & 0o777) == "0o600"
    with pytest.raises(JetpackError, match="engine"):
        zygote.start_pod(record, socket_path, core)
    assert zygote.ping(socket_path)["pid"] == first["pid"]          # the same zygote answered
    wait_for(lambda: children(first["pid"]) == {}, 10, "the zygote to reap its children")


def test_zygote_refuses_a_record_others_can_write(zygote_env):
    core, socket_path, top = zygote_env
    record = _zygote_pod(top)
    os.chmod(record, 0o666)
    with pytest.raises(JetpackError, match="writable by no one else"):
        zygote.start_pod(record, socket_path, core)


def test_a_new_zygote_starts_after_kill_9(zygote_env):
    core, socket_path, top = zygote_env
    record = _zygote_pod(top)
    with pytest.raises(JetpackError):
        zygote.start_pod(record, socket_path, core)
    old = zygote.ping(socket_path)["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not alive(old), 10, "the zygote to die")
    assert os.path.exists(socket_path)                               # stale socket left behind
    with pytest.raises(JetpackError, match="engine"):
        zygote.start_pod(record, socket_path, core)
    new = zygote.ping(socket_path)["pid"]
    assert new != old


def test_a_zygote_of_another_core_retires(zygote_env, tmp_path):
    core, socket_path, top = zygote_env
    record = _zygote_pod(top)
    with pytest.raises(JetpackError):
        zygote.start_pod(record, socket_path, core)
    old = zygote.ping(socket_path)["pid"]
    source = tmp_path / "jetpack"
    shutil.copytree(install.package_dir(), str(source), ignore=shutil.ignore_patterns("__pycache__"))
    with open(str(source / "supervisor.py"), "a") as f:
        f.write("\n# another version\n")
    other = install.ensure_installed(base=os.path.join(top, "core"), source=str(source))
    assert other != core
    with pytest.raises(JetpackError, match="engine"):
        zygote.start_pod(record, socket_path, other)
    answer = zygote.ping(socket_path)
    assert answer["pid"] != old and answer["core"] == os.path.realpath(other)
    wait_for(lambda: not alive(old), 10, "the old zygote to exit")


# --- pods of the Linux engine through the zygote -------------------------------------------------
def _linux_pod(top, name, apps, stop_timeout=3, policy="no"):
    """A pod.json whose apps run from busybox rootfs directories (no ZFS needed)."""
    from tests.helpers.images import make_rootfs
    pod_dir = os.path.join(top, name)
    root = os.path.join(pod_dir, "rootfs")
    for sub in ("run", "logs"):
        os.makedirs(os.path.join(pod_dir, sub))
    os.makedirs(root, 0o700)
    record = {"uuid": name, "name": name, "hostname": name, "engine": "linux", "pod_dir": pod_dir, "root": root,
              "stop_timeout": stop_timeout, "restart": {"policy": policy, "max_retries": 3}, "apps": [],
              "volumes": []}
    for app in apps:
        rootfs = os.path.join(root, "app", app["name"], "rootfs")
        make_rootfs(rootfs, {"etc/passwd": "root:x:0:0:root:/:/bin/sh\n", "etc/group": "root:x:0:\n"},
                    busybox=True)
        record["apps"].append(dict({"rootfs": rootfs, "user": "0", "group": "0", "supplementary_gids": [],
                                    "environment": {}, "working_directory": "/", "read_only_rootfs": False,
                                    "mounts": []}, **app))
    path = os.path.join(pod_dir, "pod.json")
    with open(path, "w") as f:
        json.dump(record, f)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def linux_pods(zygote_env):
    """(core, socket, make(name, apps, ...)); every pod made is stopped afterwards."""
    if os.geteuid() != 0 or not os.path.exists("/bin/busybox"):
        reason = "needs root and a static /bin/busybox"
        if os.environ.get("CI"):
            pytest.fail("CI must run the Linux engine tests: " + reason)
        pytest.skip(reason)
    core, socket_path, top = zygote_env
    made = []

    def make(name, apps, **options):
        path = _linux_pod(top, name, apps, **options)
        made.append(path)
        return path

    yield core, socket_path, make
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines.linux import LinuxEngine
    for path in made:
        run_dir = os.path.join(os.path.dirname(path), "run")
        try:
            with open(os.path.join(run_dir, "supervisor.pid")) as f:
                pid = int(f.read())
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), 30, "the supervisor to stop")
        except (OSError, ValueError):
            pass
        try:
            with open(os.path.join(run_dir, "context.json")) as f:
                context = json.load(f)
        except OSError:
            continue
        with open(path) as f:
            record = json.load(f)
        if LinuxEngine().running(record, context):
            LinuxEngine().stop(record, context)


def _stop_supervisor(pid, timeout=30):
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), timeout, "supervisor %d to exit" % pid)


def test_a_linux_pod_through_the_zygote_runs_handlers_in_order(linux_pods):
    core, socket_path, make = linux_pods
    record = make("web", [{"name": "web", "exec": ["/bin/sh", "-c", "echo app >> /order; echo hello; exec sleep 1000"],
                           "handlers": {"pre-start": ["/bin/sh", "-c", "echo pre-start >> /order"],
                                        "post-stop": ["/bin/sh", "-c", "echo post-stop >> /order"]}}])
    pod_dir = os.path.dirname(record)
    order = os.path.join(pod_dir, "rootfs", "app", "web", "rootfs", "order")
    pid = zygote.start_pod(record, socket_path, core)
    assert open(os.path.join(pod_dir, "run", "supervisor.pid")).read().strip() == str(pid)
    wait_for(lambda: lines(order) == ["pre-start", "app"], 10, "pre-start then the app")
    status = read_status(pod_dir)
    assert status["state"] == "running" and status["apps"]["web"]["state"] == "running"
    holder = json.load(open(os.path.join(pod_dir, "run", "context.json")))["holder_pid"]
    app_pid = status["apps"]["web"]["pid"]
    assert os.readlink("/proc/%d/ns/pid" % app_pid) == os.readlink("/proc/%d/ns/pid" % holder)
    assert os.readlink("/proc/%d/ns/pid" % pid) == os.readlink("/proc/self/ns/pid")   # the supervisor is outside
    wait_for(lambda: b"hello\n" in open(os.path.join(pod_dir, "logs", "web.log"), "rb").read(), 10, "the app's output")

    zygote_pid = zygote.ping(socket_path)["pid"]
    _stop_supervisor(pid)
    assert lines(order) == ["pre-start", "app", "post-stop"]
    status = read_status(pod_dir)
    assert status["state"] == "stopped" and status["apps"]["web"]["signal"] == "SIGTERM"
    assert not alive(holder) and not alive(app_pid)
    assert not os.path.exists(os.path.join(pod_dir, "run", "context.json"))
    wait_for(lambda: children(zygote_pid) == {}, 10, "the zygote to reap the supervisor")


def test_the_zygote_outlives_its_client_and_is_reused(linux_pods):
    core, socket_path, make = linux_pods
    first = make("one", [{"name": "idle", "exec": ["/bin/sleep", "1000"]}])
    second = make("two", [{"name": "idle", "exec": ["/bin/sleep", "1000"]}])
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = ("import sys; sys.path.insert(0, %r); __import__('conftest'); "
              "from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import zygote; "
              "print(zygote.start_pod(%r, %r, %r))" % (repo, first, socket_path, core))
    client = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=repo,
                            check=False)
    assert client.returncode == 0, client.stderr
    supervisor_one = int(client.stdout)
    answer = zygote.ping(socket_path)                  # the client is gone; the zygote is not
    assert answer is not None and alive(supervisor_one)
    supervisor_two = zygote.start_pod(second, socket_path, core)
    assert zygote.ping(socket_path)["pid"] == answer["pid"]
    assert set(children(answer["pid"])) == {supervisor_one, supervisor_two}
    assert read_status(os.path.dirname(second))["apps"]["idle"]["state"] == "running"


def test_pods_survive_kill_9_of_the_zygote_and_a_new_one_starts(linux_pods):
    core, socket_path, make = linux_pods
    first = make("one", [{"name": "idle", "exec": ["/bin/sleep", "1000"]}])
    second = make("two", [{"name": "idle", "exec": ["/bin/sleep", "1000"]}])
    supervisor_one = zygote.start_pod(first, socket_path, core)
    old = zygote.ping(socket_path)["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not alive(old), 10, "the zygote to die")
    assert alive(supervisor_one) and read_status(os.path.dirname(first))["apps"]["idle"]["state"] == "running"
    supervisor_two = zygote.start_pod(second, socket_path, core)
    new = zygote.ping(socket_path)["pid"]
    assert new != old and supervisor_two in children(new)
    _stop_supervisor(supervisor_one)                  # re-parented to init, which reaps it
    assert read_status(os.path.dirname(first))["state"] == "stopped"


def test_a_linux_pod_that_cannot_start_reports_why(linux_pods):
    core, socket_path, make = linux_pods
    record = make("bad", [{"name": "bad", "exec": ["/bin/no-such-program"]}])
    with pytest.raises(JetpackError, match="no-such-program"):
        zygote.start_pod(record, socket_path, core)
    status = read_status(os.path.dirname(record))
    assert status["state"] == "failed" and "no-such-program" in status["error"]
    assert not os.path.exists(os.path.join(os.path.dirname(record), "run", "supervisor.pid"))
    assert not os.path.exists(os.path.join(os.path.dirname(record), "run", "context.json"))   # torn down
