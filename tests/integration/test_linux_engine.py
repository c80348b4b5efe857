"""The Linux engine and app execution on the real kernel: namespaces, mounts, pivot_root, setns.

Needs root. App rootfs trees are plain directories holding the static /bin/busybox; no ZFS.
"""
import errno
import json
import os
import re
import select
import signal
import socket
import stat
import time

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import execution
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.capabilities import DEFAULT_SET
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import linux
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines.linux import LinuxEngine
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import JetpackError

from tests.helpers.images import make_rootfs

pytestmark = pytest.mark.integration

APPLETS = ("env", "id", "hostname", "cat", "ls", "ps", "stat", "sleep", "touch", "kill", "ping")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:web:/var/www:/bin/sh\n"
GROUP = "root:x:0:\nweb:x:34:\nextra:x:500:other,www\nnope:x:501:other\n"


@pytest.fixture(scope="module")
def engine():
    if os.geteuid() != 0 or not os.path.exists("/bin/busybox"):
        reason = "needs root and a static /bin/busybox"
        if os.environ.get("CI"):
            pytest.fail("CI must run the Linux engine tests: " + reason)
        pytest.skip(reason)
    return LinuxEngine()


def make_app(root, name, **fields):
    rootfs = os.path.join(root, "app", name, "rootfs")
    make_rootfs(rootfs, {"etc/passwd": PASSWD, "etc/group": GROUP}, busybox=True)
    for applet in APPLETS:
        link = os.path.join(rootfs, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    return app_entry(name, rootfs, **fields)


def app_entry(name, rootfs, **fields):
    """An app of a PodRecord, as pods.py writes it."""
    app = {"name": name, "rootfs": rootfs, "exec": ["/bin/sleep", "1000"], "user": "0", "group": "0",
           "supplementary_gids": [], "environment": {}, "working_directory": "/", "read_only_rootfs": False,
           "mounts": []}
    app.update(fields)
    return app


def make_record(tmp_path, apps=("a",), volumes=(), **app_fields):
    root = str(tmp_path / "pod" / "rootfs")
    os.makedirs(root, 0o700)
    return {"uuid": "0" * 32, "name": "web", "hostname": "web-pod", "engine": "linux", "root": root,
            "apps": [make_app(root, name, **app_fields) for name in apps], "volumes": list(volumes)}


@pytest.fixture
def started(engine, tmp_path):
    """start(record) for a test; every pod started is stopped afterwards."""
    pods = []

    def start(record):
        context = engine.start(record)
        pods.append((record, context))
        return context

    yield start
    for record, context in pods:
        if engine.running(record, context):
            engine.stop(record, context)


def run(engine, record, context, app, argv, **options):
    """(exit status, stdout+stderr) of argv run to completion in an app of the pod."""
    read_end, write_end = os.pipe()
    try:
        pid = execution.spawn(engine, record, context, app, argv, stdout=write_end, stderr=write_end, **options)
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        output = f.read().decode()
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def in_pod(engine, record, context, function, app=None, fork=True):
    """function()'s JSON result, run after attach (then a fork, then a chroot into app when given)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            engine.attach(record, context)
            if fork:
                child = os.fork()
                if child:
                    os.waitpid(child, 0)
                    os._exit(0)
            if app:
                os.chroot("/app/%s/rootfs" % app)
                os.chdir("/")
            result = {"ok": function()}
        except BaseException as error:  # noqa: B902
            result = {"error": repr(error)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        result = json.loads(f.read() or b'{"error": "no answer"}')
    os.waitpid(pid, 0)
    assert "error" not in result, result["error"]
    return result["ok"]


def identity(path):
    info = os.stat(path)
    return [info.st_dev, info.st_ino]


def nspid(pid):
    """The pid of a host process inside its innermost PID namespace."""
    with open("/proc/%d/status" % pid) as f:
        return int(next(line for line in f if line.startswith("NSpid:")).split()[-1])


def processes_in(pid_ns):
    """Host pids of every process whose PID namespace is pid_ns."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink("/proc/%s/ns/pid" % name) == pid_ns:
                    found.append(int(name))
            except OSError:
                pass
    return found


def host_mounts():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


def kill_and_reap(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# --- isolation ------------------------------------------------------------------------------
def test_ps_in_a_pod_lists_only_the_pods_processes(engine, started, tmp_path):
    record = make_record(tmp_path)
    context = started(record)
    sleeper = execution.spawn(engine, record, context, "a")
    try:
        inner = nspid(sleeper)
        status, output = run(engine, record, context, "a", ["ps", "-o", "pid,comm"])
    finally:
        kill_and_reap(sleeper)
    assert status == 0, output
    rows = [line.split() for line in output.splitlines()[1:]]
    pids = {int(pid): comm for pid, comm in rows}
    assert len(pids) == 3, output  # the holder, the sleeper and ps itself
    assert pids[1] == "jetpack-pod" and pids[inner] == "sleep" and inner != sleeper


def test_the_pods_pid_1_shows_no_host_path(engine, started, tmp_path):
    """The holder is a fork of its starter (here pytest): its command line and environment are gone."""
    record = make_record(tmp_path)
    context = started(record)
    assert run(engine, record, context, "a", ["cat", "/proc/1/cmdline", "/proc/1/comm"]) == (
        0, "jetpack-pod\0jetpack-pod\n")
    status, output = run(engine, record, context, "a", ["ps", "-o", "pid,args"])
    assert status == 0 and output.splitlines()[1].split() == ["1", "jetpack-pod"], output
    with open("/proc/%d/environ" % context["holder_pid"], "rb") as f:
        assert f.read().strip(b"\0") == b""


def test_apps_of_a_pod_see_each_others_processes(engine, started, tmp_path):
    record = make_record(tmp_path, apps=("a", "b"))
    context = started(record)
    sleeper = execution.spawn(engine, record, context, "a")
    try:
        inner = nspid(sleeper)
        status, output = run(engine, record, context, "b", ["ps", "-o", "pid,comm"])
    finally:
        kill_and_reap(sleeper)
    assert status == 0, output
    assert [str(inner), "sleep"] in [line.split() for line in output.splitlines()]


def test_the_pod_root_is_not_the_host_root(engine, started, tmp_path):
    # appc's default capability set has no CAP_SYS_PTRACE, which looking into PID 1's root takes
    record = make_record(tmp_path, isolators={"capabilities": {"retain": sorted(DEFAULT_SET | {"CAP_SYS_PTRACE"})}})
    context = started(record)
    status, output = run(engine, record, context, "a", ["stat", "-c", "%d %i", "/", "/proc/1/root/"])
    assert status == 0, output
    app_root, pid1_root = ([int(n) for n in line.split()] for line in output.splitlines())
    assert app_root == identity(record["apps"][0]["rootfs"])
    assert pid1_root == identity(record["root"]) != identity("/")
    assert identity("/proc/%d/root" % context["holder_pid"]) == identity(record["root"])


def test_attach_makes_the_pod_root_our_root_and_cwd(engine, started, tmp_path, monkeypatch):
    """What the kernel does on setns(CLONE_NEWNS) after the holder's pivot_root: no chroot needed."""
    record = make_record(tmp_path)
    context = started(record)
    monkeypatch.chdir(tmp_path)  # somewhere else, to see cwd move
    seen = in_pod(engine, record, context, lambda: [identity("/"), os.getcwd(), os.getpid()], fork=False)
    assert seen[0] == identity(record["root"]) and seen[1] == "/"
    assert seen[2] != 1  # attach alone leaves us in the host's PID namespace...
    inner = in_pod(engine, record, context, os.getpid)
    assert 1 < inner < 100  # ...our next child is in the pod's


def test_the_hostname_is_the_pods(engine, started, tmp_path):
    record = make_record(tmp_path)
    context = started(record)
    assert run(engine, record, context, "a", ["hostname"]) == (0, "web-pod\n")
    assert socket.gethostname() != "web-pod"


def test_the_network_is_loopback_only_and_up(engine, started, tmp_path):
    record = make_record(tmp_path)
    context = started(record)
    assert run(engine, record, context, "a", ["ls", "/sys/class/net"]) == (0, "lo\n")
    status, flags = run(engine, record, context, "a", ["cat", "/sys/class/net/lo/flags"])
    assert status == 0 and int(flags, 16) & 1  # IFF_UP
    status, output = run(engine, record, context, "a", ["ping", "-c", "1", "-W", "2", "127.0.0.1"])
    assert status == 0, output


# --- environment, users, working directory, exec ----------------------------------------------
def test_the_environment_is_exactly_the_specified_one(engine, started, tmp_path, monkeypatch):
    monkeypatch.setenv("JETPACK_HOST_ONLY", "leak")
    record = make_record(tmp_path, environment={"GREETING": "hello world", "AC_APP_NAME": "forged", "EMPTY": ""})
    context = started(record)
    status, output = run(engine, record, context, "a", ["env"])
    assert status == 0
    assert sorted(output.splitlines()) == sorted([
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "AC_APP_NAME=a", "AC_METADATA_URL=",
        "container=jetpack", "GREETING=hello world", "EMPTY="])


def test_the_app_may_set_path(engine, started, tmp_path):
    record = make_record(tmp_path, environment={"PATH": "/nowhere:/bin"})
    context = started(record)
    status, output = run(engine, record, context, "a", ["env"])
    assert status == 0 and "PATH=/nowhere:/bin" in output.splitlines()


def credentials_in_pod(engine, record, context):
    status, output = run(engine, record, context, "a", ["cat", "/proc/self/status"])
    assert status == 0, output
    fields = dict(line.split(":", 1) for line in output.splitlines())
    return (int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0]),
            sorted(int(g) for g in fields["Groups"].split()))


def test_apps_get_default_signals_and_none_of_the_callers_fds(engine, started, tmp_path):
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # as Python sets it: execve would keep it
    record = make_record(tmp_path)
    context = started(record)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 50)  # inheritable
    try:
        status, output = run(engine, record, context, "a", ["cat", "/proc/self/status"])
        fds = run(engine, record, context, "a", ["ls", "/proc/self/fd"])[1].split()
    finally:
        for fd in (read_end, write_end, 50):
            os.close(fd)
    fields = dict(line.split(":", 1) for line in output.splitlines())
    assert int(fields["SigIgn"], 16) == 0 and int(fields["SigBlk"], 16) == 0
    assert "50" not in fds and {"0", "1", "2"} <= set(fds)


def test_user_and_group_by_name_add_the_users_groups(engine, started, tmp_path):
    record = make_record(tmp_path, user="www", group="web", supplementary_gids=[700, 500])
    context = started(record)
    assert credentials_in_pod(engine, record, context) == (33, 34, [500, 700])


def test_user_and_group_by_number(engine, started, tmp_path):
    record = make_record(tmp_path, user="1234", group="4321", supplementary_gids=[9])
    context = started(record)
    assert credentials_in_pod(engine, record, context) == (1234, 4321, [9])


def test_user_and_group_by_path_are_its_owner(engine, started, tmp_path):
    record = make_record(tmp_path, user="/srv/owned", group="/srv/owned")
    owned = os.path.join(record["apps"][0]["rootfs"], "srv", "owned")
    os.makedirs(owned)
    os.chown(owned, 2001, 2002)
    context = started(record)
    assert credentials_in_pod(engine, record, context) == (2001, 2002, [])


def test_as_root_ignores_the_apps_user(engine, started, tmp_path):
    record = make_record(tmp_path, user="www", group="web")
    context = started(record)
    status, output = run(engine, record, context, "a", ["id", "-u"], as_root=True)
    assert (status, output) == (0, "0\n")


def test_a_missing_working_directory_is_a_clear_error(engine, started, tmp_path):
    record = make_record(tmp_path, working_directory="/srv/missing")
    context = started(record)
    with pytest.raises(JetpackError) as info:
        execution.spawn(engine, record, context, "a")
    message = str(info.value)
    assert message.startswith("app a: ") and "/srv/missing does not exist" in message
    assert processes_in(context["pid_ns"]) == [context["holder_pid"]]


def test_the_working_directory_is_entered(engine, started, tmp_path):
    record = make_record(tmp_path, working_directory="/etc")
    context = started(record)
    assert run(engine, record, context, "a", ["sh", "-c", "pwd"]) == (0, "/etc\n")


def test_exec_looks_programs_up_in_the_apps_path(engine, started, tmp_path):
    record = make_record(tmp_path, environment={"PATH": "/opt/none:/bin"})
    context = started(record)
    assert run(engine, record, context, "a", ["sh", "-c", 'echo "$0"']) == (0, "sh\n")
    with pytest.raises(JetpackError) as info:
        execution.spawn(engine, record, context, "a", ["nosuchprogram"])
    assert "app a: cannot execute nosuchprogram: not found in PATH /opt/none:/bin" in str(info.value)


# --- mounts ---------------------------------------------------------------------------------
def volume_record(tmp_path, **app_fields):
    volumes = []
    for name, read_only in (("ro", True), ("rw", False)):
        source = tmp_path / ("source-" + name)
        source.mkdir()
        (source / "present").write_text(name)
        volumes.append({"name": name, "kind": "host", "source": str(source), "read_only": read_only})
    record = make_record(tmp_path, mounts=[{"volume": "ro", "path": "/data/ro", "read_only": False},
                                           {"volume": "rw", "path": "/data/rw", "read_only": False}],
                         volumes=volumes, **app_fields)
    for path in ("data/ro", "data/rw"):
        os.makedirs(os.path.join(record["apps"][0]["rootfs"], path))
    return record


def write_errno(path):
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError as error:
        return error.errno
    return 0


def test_a_read_only_mount_cannot_be_written(engine, started, tmp_path):
    record = volume_record(tmp_path)
    context = started(record)
    results = in_pod(engine, record, context, lambda: [
        open("/data/ro/present").read(), write_errno("/data/ro/new"), write_errno("/data/rw/new")], app="a")
    assert results == ["ro", errno.EROFS, 0]
    assert not (tmp_path / "source-ro" / "new").exists() and (tmp_path / "source-rw" / "new").exists()
    status, output = run(engine, record, context, "a", ["touch", "/data/ro/x"])
    assert status != 0 and "Read-only file system" in output


def test_a_read_only_rootfs(engine, started, tmp_path):
    record = volume_record(tmp_path, read_only_rootfs=True)
    context = started(record)
    results = in_pod(engine, record, context, lambda: [
        write_errno("/new"), write_errno("/dev/shm/new"), write_errno("/data/rw/new"),
        os.path.exists("/proc/self/status")], app="a")
    assert results == [errno.EROFS, 0, 0, True]


def test_the_linux_os_spec_filesystems_and_devices(engine, started, tmp_path):
    record = make_record(tmp_path)
    context = started(record)

    def look():
        with open("/proc/self/mountinfo") as f:
            mounts = {fields[4]: (fields[fields.index("-") + 1], fields[5], fields[-1])
                      for fields in (line.split() for line in f)}
        devices = {name: [stat.S_ISCHR(os.stat("/dev/" + name).st_mode), os.stat("/dev/" + name).st_rdev]
                   for name in ("null", "zero", "full", "random", "urandom", "tty", "console")}
        primary, secondary = os.openpty()
        tty = os.ttyname(secondary)
        return {"mounts": mounts, "devices": devices, "ptmx": os.readlink("/dev/ptmx"), "tty": tty,
                "full": write_errno("/dev/full") or _write_full(), "sys": write_errno("/sys/kernel/new")}

    seen = in_pod(engine, record, context, look, app="a")
    mounts = seen["mounts"]
    assert mounts["/proc"][0] == "proc"
    assert mounts["/sys"][0] == "sysfs" and mounts["/sys"][1].startswith("ro")
    assert mounts["/dev"][0] == "tmpfs" and mounts["/dev/shm"][0] == "tmpfs"
    assert mounts["/dev/pts"][0] == "devpts" and "ptmxmode=666" in mounts["/dev/pts"][2]
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        assert seen["devices"][name] == [True, os.stat("/dev/" + name).st_rdev]
    assert seen["devices"]["console"] == [True, os.stat("/dev/null").st_rdev]
    assert seen["ptmx"] == "pts/ptmx" and seen["tty"] == "/dev/pts/0"  # a devpts of its own
    assert seen["full"] == errno.ENOSPC and seen["sys"] == errno.EROFS


def _write_full():
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        os.write(fd, b"x")
    except OSError as error:
        return error.errno
    finally:
        os.close(fd)
    return 0


def test_no_mount_propagates_to_a_shared_host_mount(engine, started, tmp_path):
    """systemd makes / shared: the holder's mounts must still not appear on the host."""
    shared = str(tmp_path / "shared")
    os.mkdir(shared)
    linux.mount("tmpfs", shared, "tmpfs", 0)
    try:
        linux.mount(None, shared, None, 1 << 20)  # MS_SHARED
        before = host_mounts()
        record = volume_record(tmp_path / "shared")
        started(record)
        assert host_mounts() == before
    finally:
        linux.umount2(shared, linux.MNT_DETACH)


def test_the_holder_keeps_none_of_its_parents_fds(engine, started, tmp_path):
    record = make_record(tmp_path)
    read_end, write_end = os.pipe()
    try:
        context = started(record)
        os.close(write_end)
        assert os.listdir("/proc/%d/fd" % context["holder_pid"]) == []
        assert select.select([read_end], [], [], 5)[0] and os.read(read_end, 1) == b""  # EOF: no copy lives on
    finally:
        os.close(read_end)


def test_a_symlink_where_a_mount_goes_is_refused(engine, started, tmp_path):
    record = make_record(tmp_path)
    os.symlink("/etc", os.path.join(record["apps"][0]["rootfs"], "proc"))
    before = host_mounts()
    with pytest.raises(JetpackError) as info:
        started(record)
    assert "app a: cannot mount /proc" in str(info.value) and "symlink" in str(info.value)
    assert host_mounts() == before and not os.path.ismount("/etc")


def test_a_failed_start_leaves_no_process_and_no_mount(engine, started, tmp_path):
    record = make_record(tmp_path, mounts=[{"volume": "gone", "path": "/data", "read_only": False}],
                         volumes=[{"name": "gone", "kind": "host", "source": str(tmp_path / "missing"),
                                   "read_only": False}])
    os.makedirs(os.path.join(record["apps"][0]["rootfs"], "data"))
    before = host_mounts()
    children_before = _children()
    with pytest.raises(JetpackError) as info:
        started(record)
    assert "pod web could not be started" in str(info.value) and str(tmp_path / "missing") in str(info.value)
    assert host_mounts() == before and _children() == children_before


def _children():
    me = str(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % name) as f:
                if f.read().rsplit(")", 1)[1].split()[1] == me:
                    found.append(int(name))
        except (OSError, IndexError):
            pass
    return sorted(found)


# --- lifecycle ------------------------------------------------------------------------------
def test_stop_leaves_no_process_and_no_mount(engine, tmp_path):
    before = host_mounts()
    record = volume_record(tmp_path)
    context = engine.start(record)
    assert engine.running(record, context)
    assert host_mounts() == before  # the pod's mounts never reach the host
    app = execution.spawn(engine, record, context, "a")
    # An orphan: its parent exits, so the holder adopts it.
    status, orphan = run(engine, record, context, "a", ["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"])
    assert status == 0 and int(orphan) > 1 and len(processes_in(context["pid_ns"])) == 3
    reaped = []

    def reap_the_app(*_):  # as the supervisor does: the holder exits once the pod's processes are reaped
        if not reaped:
            pid, status = os.waitpid(app, os.WNOHANG)
            if pid:
                reaped.append(status)

    previous = signal.signal(signal.SIGCHLD, reap_the_app)
    try:
        engine.stop(record, context)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert reaped and os.WTERMSIG(reaped[0]) == signal.SIGKILL
    assert not os.path.exists("/proc/%d" % context["holder_pid"])
    assert processes_in(context["pid_ns"]) == []
    assert host_mounts() == before
    assert not engine.running(record, context)
    engine.stop(record, context)  # stopping a stopped pod does nothing


def test_stop_names_the_children_the_caller_must_reap(engine, tmp_path, monkeypatch):
    """The kernel keeps a killed PID 1 until every process of its namespace is reaped, ours too."""
    monkeypatch.setattr(linux, "STOP_TIMEOUT", 0.5)
    record = make_record(tmp_path)
    context = engine.start(record)
    app = execution.spawn(engine, record, context, "a")
    with pytest.raises(JetpackError) as info:
        engine.stop(record, context)
    # Earlier tests' spawn() made this process a subreaper: orphans of theirs may be listed too.
    assert re.search(r"must reap its children \[([0-9]+, )*%d(, [0-9]+)*\]" % app, str(info.value)), str(info.value)
    assert not engine.running(record, context)  # exiting: it lost its mount namespace
    os.waitpid(app, 0)
    deadline = time.monotonic() + 5
    while linux._state(context["holder_pid"]) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert linux._state(context["holder_pid"]) == "Z" and not engine.running(record, context)
    engine.stop(record, context)  # reaps the zombie
    assert not os.path.exists("/proc/%d" % context["holder_pid"])


def test_running_is_false_for_another_process(engine, started, tmp_path):
    record = make_record(tmp_path)
    context = started(record)
    assert engine.running(record, context)
    assert not engine.running(record, {"holder_pid": os.getpid()})
    assert not engine.running(record, dict(context, pid_ns="pid:[1]"))


def test_spawning_in_a_stopped_pod_is_a_clear_error(engine, tmp_path):
    record = make_record(tmp_path)
    context = engine.start(record)
    engine.stop(record, context)
    with pytest.raises(JetpackError) as info:
        execution.spawn(engine, record, context, "a")
    assert "pod web is not running" in str(info.value)


def test_attach_refuses_a_process_that_is_not_the_holder(engine, started, tmp_path):
    record = make_record(tmp_path)
    context = started(record)
    with pytest.raises(JetpackError) as info:  # a live process, but not this pod's holder
        execution.spawn(engine, record, dict(context, holder_pid=os.getpid()), "a")
    assert "pod web is not running" in str(info.value)


def test_signals_from_inside_do_not_kill_the_holder(engine, started, tmp_path):
    record = make_record(tmp_path)
    context = started(record)
    status, output = run(engine, record, context, "a", ["sh", "-c", "kill -INT 1; kill -TERM 1; kill -HUP 1"])
    assert status == 0, output
    time.sleep(0.2)
    assert engine.running(record, context)


def test_the_holder_reaps_orphans(engine, started, tmp_path):
    record = make_record(tmp_path)
    context = started(record)
    status, output = run(engine, record, context, "a", ["sh", "-c", "(sleep 0.2 &); exit 0"])
    assert status == 0, output
    deadline = time.monotonic() + 5
    while len(processes_in(context["pid_ns"])) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_in(context["pid_ns"]) == [context["holder_pid"]]  # no zombie left


def test_a_pod_over_zfs_clones(engine, zfs_pool, dataset):
    """As pods.py lays it out: the pod root in a dataset, each app rootfs a clone of a sealed image."""
    zfs, base = zfs_pool.zfs, zfs_pool.base
    image_dir = os.path.join(base, os.path.basename(dataset) + "-image")
    pod_dir = os.path.join(base, os.path.basename(dataset) + "-pod")
    zfs.create(dataset)
    zfs.create(dataset + "/image", {"mountpoint": image_dir})
    make_rootfs(image_dir, {"etc/passwd": PASSWD, "etc/group": GROUP}, busybox=True)
    zfs.snapshot(dataset + "/image@seal")
    zfs.create(dataset + "/pod", {"mountpoint": pod_dir})
    root = os.path.join(pod_dir, "rootfs")
    os.makedirs(os.path.join(root, "app", "a"), 0o700)
    rootfs = os.path.join(root, "app", "a", "rootfs")
    zfs.clone(dataset + "/image@seal", dataset + "/pod/app-a", {"mountpoint": rootfs})
    app = app_entry("a", rootfs, read_only_rootfs=True, user="www", group="web")
    record = {"name": "web", "hostname": "zfs-pod", "root": root, "apps": [app], "volumes": []}
    before = host_mounts()
    context = engine.start(record)
    try:
        status, output = run(engine, record, context, "a", ["sh", "-c", "ps -o pid,comm; id -u; touch /x"])
    finally:
        engine.stop(record, context)
    lines = output.splitlines()
    assert status != 0 and "Read-only file system" in lines[-1]
    assert [row.split()[1] for row in lines[1:-2]] == ["jetpack-pod", "sh", "ps"] and lines[-2] == "33"
    assert host_mounts() == before
    zfs.destroy(dataset + "/pod", recursive=True)  # nothing of the pod keeps its datasets busy
