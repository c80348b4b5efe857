"""The Linux engine: a pod is a set of namespaces kept alive by a minimal pod holder.

start() forks the holder as PID 1 of a new PID namespace, in new mount, UTS, IPC and network
namespaces (a pod on `networks: [host]` keeps the host's network namespace, hence its interfaces,
addresses and ports: that is what it asked for). Before it reports ready the holder makes every mount private, binds the pod root
onto itself, gives each app rootfs what appc's Linux OS spec requires (/proc, read-only /sys, a
/dev tmpfs with the standard devices, /dev/pts, /dev/shm), binds the pod's mount plan, applies
read-only rootfs, sets the hostname, brings its own `lo` up, pivots into the pod root and detaches the
host's tree. Then it sleeps, its command line reduced to "jetpack-pod", SIGCHLD ignored so that
the kernel reaps the pod's orphans. Killing it (SIGKILL from the host) makes the kernel kill
every process of the pod; the mounts die with the mount namespace.

attach() enters the holder's namespaces with setns(2); after a setns into the mount namespace
the kernel sets root and cwd to the namespace's root, which the holder's pivot_root made the pod
root (tests/integration/test_linux_engine.py measures this).

Everything runs on Python >= 3.9: unshare, setns, mount, umount2, pivot_root and prctl come from
libc through ctypes. The holder is forked from a process that has imported everything: it
imports nothing and allocates as little as it can, so that it shares its parent's pages.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import os
import select
import signal
import socket
import stat
import struct
import time

from .. import beneath, cgroups, execution, isolators
from ..errors import AlreadyExists, JetpackError
from . import mount_plan

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# glibc has no pivot_root wrapper: its syscall number per machine (musl exports pivot_root).
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "loongarch64": 41, "ppc64le": 203,
                      "ppc64": 203, "s390x": 217, "i386": 217, "i686": 217, "armv7l": 218, "armv6l": 218}

# Entered in this order; the mount namespace last, as it changes our root.
NAMESPACES = (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET),
              ("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS))
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
HOLDER_NAME = b"jetpack-pod"  # the holder's command line and name, as the pod's processes see PID 1
READY_TIMEOUT = 60.0   # seconds for the holder to build the pod
STOP_TIMEOUT = 10.0    # seconds for the kernel to tear the pod down after SIGKILL

_libc = ctypes.CDLL(None, use_errno=True)
# Looked up once, here: the first lookup runs ctypes' Python code, which a holder should not run.
for _name in ("unshare", "setns", "mount", "umount2", "prctl"):
    getattr(_libc, _name)


# --- system calls ---------------------------------------------------------------------------
def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, "%s: %s" % (what, os.strerror(number)))


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source, target: str, fstype, flags: int, data=None) -> None:
    _check(_libc.mount(_bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags), _bytes(data)),
           "mount %s on %s" % (source or fstype, target))


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(_bytes(target), ctypes.c_int(flags)), "umount %s" % target)


def pivot_root(new_root: str, put_old: str) -> None:
    try:
        call = _libc.pivot_root
    except AttributeError:
        number = PIVOT_ROOT_SYSCALL.get(os.uname().machine)
        if number is None:
            raise OSError(errno.ENOSYS, "pivot_root: unknown system call number on %s" % os.uname().machine)
        _check(_libc.syscall(ctypes.c_long(number), _bytes(new_root), _bytes(put_old)), "pivot_root")
        return
    _check(call(_bytes(new_root), _bytes(put_old)), "pivot_root")


def prctl(option: int, value) -> None:
    _check(_libc.prctl(ctypes.c_int(option), value, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           "prctl")


def set_child_subreaper() -> None:
    """Orphans among our descendants become our children, so that waitpid() sees them."""
    prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1))


def _bytes(value):
    return None if value is None else os.fsencode(value)


# --- the engine -----------------------------------------------------------------------------
class LinuxEngine:
    name = "linux"
    fork_after_attach = True  # setns into a PID namespace applies to our children only
    set_child_subreaper = staticmethod(set_child_subreaper)

    def prepare(self, record) -> None:
        """Nothing to write: the holder builds the pod's mounts in memory at start. The host end of
        each of its veths is named now, kept in pod.json: the start then needs no hashing (3 ms)."""
        joined = _joined(record)
        if joined:
            from . import linux_network
            for index, entry in enumerate(joined):
                entry["host_ifname"] = linux_network.veth_name(record["uuid"], entry["name"], _ifname(index))

    def start(self, record) -> dict:
        """Create the pod's cgroup when it has limits, then its holder; nothing is left on failure."""
        cgroup = pod_cgroup(record)
        if cgroup is None:
            return self._start_holder(record, None)
        try:
            _create_cgroups(cgroup, record)
            return self._start_holder(record, cgroup)
        except BaseException:
            cgroup.remove()
            raise

    def _start_holder(self, record, cgroup) -> dict:
        """Fork the pod holder (into the cgroup's "holder" leaf); return once the pod is ready."""
        plan = mount_plan(record)
        namespaces = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | (0 if shares_host_network(record) else CLONE_NEWNET)
        devices = {name: os.stat("/dev/" + name).st_rdev for name in DEVICES}
        strings = _strings_area()
        read_end, write_end = os.pipe()
        try:
            pid = _fork_in_new_pid_namespace()
        except BaseException as error:
            os.close(read_end)
            os.close(write_end)
            if isinstance(error, OSError):
                raise JetpackError("pod %s: cannot create a PID namespace (%s); the Linux engine needs root "
                                   "and a kernel with namespaces" % (record["name"], error.strerror)) from None
            raise
        if pid == 0:
            _holder(record, namespaces, plan, devices, strings, write_end)
        os.close(write_end)
        try:
            if cgroup is not None:  # the builder it forks may already run: it goes along, as forks do
                cgroup.attach(pid, HOLDER_LEAF)
            answer = _read_all(read_end, READY_TIMEOUT)
            if answer == b"ready":
                _attach_networks(record, pid)
                return {"holder_pid": pid, "pid_ns": os.readlink("/proc/%d/ns/pid" % pid)}
        except BaseException:
            _kill_and_reap(pid)  # not reaped before: the pid cannot have been reused
            _detach_networks(record)
            raise
        finally:
            os.close(read_end)
        _pid, status = os.waitpid(pid, 0)  # it exits once it has said why
        raise JetpackError("pod %s could not be started: %s"
                           % (record["name"], answer.decode("utf-8", "replace") or _death(status)))

    @staticmethod
    def join_limits(record, app) -> None:
        """In a forked child, before attach: join the cgroup leaf of the app (when the pod has limits)."""
        cgroup = pod_cgroup(record)
        if cgroup is not None:
            cgroup.attach(0, app_leaf(app))

    def attach(self, record, context) -> None:
        """In a forked child: enter the pod's namespaces; our next child is in its PID namespace."""
        pid = context["holder_pid"]
        namespaces = [(kind, flag) for kind, flag in NAMESPACES
                      if not (flag == CLONE_NEWNET and shares_host_network(record))]
        fds = []
        try:
            for kind, _flag in namespaces:
                fds.append(os.open("/proc/%d/ns/%s" % (pid, kind), os.O_RDONLY | os.O_CLOEXEC))
            # Checked once the fds are open: they cannot belong to a process that reused the pid.
            if not _is_holder(context):
                raise JetpackError("pod %s is not running (no holder process %d); start it first"
                                   % (record["name"], pid))
            for fd, (_kind, flag) in zip(fds, namespaces):
                setns(fd, flag)
        except FileNotFoundError:
            raise JetpackError("pod %s is not running (no holder process %d); start it first"
                               % (record["name"], pid)) from None
        finally:
            for fd in fds:
                os.close(fd)

    def stop(self, record, context) -> None:
        """SIGKILL the holder (the kernel kills the whole pod) and wait until it is gone."""
        pid = context["holder_pid"]
        if _is_holder(context):  # alive, exiting or a zombie; not a process that reused the pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(record, pid)
        _detach_networks(record)
        cgroup = pod_cgroup(record)
        if cgroup is not None:
            cgroup.remove()

    # --- networks (see network.py; the rules and bridges are linux_network's) -------------------
    @staticmethod
    def addresses_in_use() -> set:
        from . import linux_network
        return {str(address) for address in linux_network.addresses_in_use()}

    @staticmethod
    def check_ports(ports) -> None:
        from . import linux_network
        linux_network.check_ports(ports)

    @staticmethod
    def sync_networks(networks, ports, unused) -> None:
        """Bridges for the networks in use, the rules for every published port, no bridge for the rest."""
        from . import linux_network
        linux_network.sync_host(networks, ports, unused)

    def running(self, record, context) -> bool:
        # An exiting holder (or a zombie) has lost its mount namespace already.
        return _is_holder(context) and os.path.exists("/proc/%d/ns/mnt" % context["holder_pid"])


# --- limits (cgroups.py): one cgroup per pod with limits, a leaf for the holder and one per app ---------
HOLDER_LEAF = "holder"


def app_leaf(app) -> str:
    return "app-" + app["name"]


def pod_cgroup(record):
    """The pod's cgroups.PodCgroup when the pod or one of its apps has a limit a cgroup enforces, else None."""
    limited = [record.get("isolators") or {}] + [app.get("isolators") or {} for app in record["apps"]]
    if not any(isolators.cgroup_limits(entry) for entry in limited):
        return None
    layout = cgroups.detect()
    if not layout.version:
        return None  # reported unenforceable when the pod was made (isolators.enforceable)
    return cgroups.PodCgroup(record["uuid"].replace("-", ""), layout)


def _create_cgroups(cgroup, record) -> None:
    """The pod's limits on its cgroup; an app's own lower ones on its leaf (merged: never above the pod's)."""
    pod = isolators.cgroup_limits(record.get("isolators") or {})
    cgroup.create(pod)
    cgroup.create({}, HOLDER_LEAF)
    for app in record["apps"]:
        own = isolators.cgroup_limits(app.get("isolators") or {})
        cgroup.create({key: value for key, value in own.items() if pod.get(key) != value}, app_leaf(app))


def shares_host_network(record) -> bool:
    """`networks: [host]`: the pod uses the host's network namespace, not one of its own."""
    return [n["name"] for n in record.get("networks") or ()] == ["host"]


def _is_holder(context) -> bool:
    """The pid still is the pod's holder: its PID namespace is the pod's (or, without one recorded, not ours).

    A zombie keeps its PID namespace link, so this holds until the holder is reaped.
    """
    try:
        theirs = os.readlink("/proc/%d/ns/pid" % context["holder_pid"])
    except OSError:
        return False
    expected = context.get("pid_ns")
    return theirs == expected if expected else theirs != os.readlink("/proc/self/ns/pid")


# --- start: the parent's side ---------------------------------------------------------------
def _fork_in_new_pid_namespace() -> int:
    """fork() whose child is PID 1 of a new PID namespace and still our child (to wait for)."""
    ours = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(CLONE_NEWPID)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:  # our later children go back to our own PID namespace
                setns(ours, CLONE_NEWPID)
        return pid
    finally:
        os.close(ours)


def _read_all(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise JetpackError("the pod holder did not get ready within %d s: look for a hung mount "
                               "(a volume on an unresponsive filesystem) and try again" % timeout)
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        return "the pod holder was killed by signal %d" % os.WTERMSIG(status)
    return "the pod holder exited with status %d" % os.WEXITSTATUS(status)


def _kill_and_reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# --- the holder -----------------------------------------------------------------------------
def _holder(record, namespaces: int, plan, devices, strings, ready: int) -> None:
    """PID 1 of the pod: have it built, tell the parent, then sleep. Never returns.

    The building runs in a short-lived child sharing the new namespaces (its pivot_root moves our
    root and cwd too): the pages it dirties go with it, the holder keeps only what it touched.
    Once the pod is ready the holder runs no more Python: with SIGCHLD ignored, the kernel reaps
    the orphans of the pod for it.
    """
    try:
        gc.disable()  # a collection would touch, hence copy, every page shared with the parent
        # Default dispositions: as PID 1 the holder then ignores every signal but the host's SIGKILL.
        execution.default_signals()
        _present_as_holder(strings)
        execution.close_other_fds([ready])
        unshare(namespaces)
        os.chdir("/")  # pivot_root moves a root or cwd that is the old root, nothing else
        builder = os.fork()
        if builder == 0:
            _build(record, plan, devices, ready)
        if os.waitpid(builder, 0)[1] != 0:
            os._exit(1)  # the builder said why
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        os.write(ready, b"ready")
        os.close(ready)
    except BaseException as error:  # noqa: B902 - the parent must hear about anything
        _fail(ready, error)
    try:
        while True:
            signal.pause()
    finally:
        os._exit(0)


def _strings_area():
    """(start, end of the arguments, end) of our argument and environment strings, at the same
    place in a fork; from /proc/self/stat fields 48, 49 and 51; None where the kernel lacks them."""
    fields = _stat_fields("self")
    return (int(fields[45]), int(fields[46]), int(fields[48])) if len(fields) > 48 else None


def _present_as_holder(strings) -> None:
    """Name the holder HOLDER_NAME and make that its whole command line: no host path (the
    interpreter, the zygote's socket, PYTHONPATH) shows through the pod's /proc/1."""
    prctl(PR_SET_NAME, HOLDER_NAME)
    if strings and strings[2] - strings[0] > len(HOLDER_NAME):
        start, arguments_end, end = strings
        ctypes.memset(start, 0, end - start)
        ctypes.memmove(start, HOLDER_NAME, len(HOLDER_NAME))
        if arguments_end - 1 > start + len(HOLDER_NAME):
            # A last argument byte that is not NUL makes the kernel end the command line at the
            # first NUL, after the name (what setproctitle(3) relies on; see get_mm_cmdline).
            ctypes.memset(arguments_end - 1, 0x20, 1)


def _build(record, plan, devices, ready: int) -> None:
    """The pod's mounts, hostname and loopback, then pivot_root into it. Never returns."""
    try:
        os.umask(0)
        _build_mounts(record, plan, devices)
        socket.sethostname(record["hostname"])
        if not shares_host_network(record):
            _loopback_up()
        _enter_pod_root(record["root"])
    except BaseException as error:  # noqa: B902 - the parent must hear about anything
        _fail(ready, error)
    os._exit(0)


def _fail(ready: int, error: BaseException) -> None:
    with contextlib.suppress(BaseException):
        os.write(ready, execution.describe(error).encode("utf-8", "replace"))
    os._exit(1)


def _build_mounts(record, plan, devices) -> None:
    root = record["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount may reach the host
    mount(root, root, None, MS_BIND | MS_REC)    # pivot_root needs a mount point
    read_only = [app["rootfs"] for app in record["apps"] if app.get("read_only_rootfs")]
    for rootfs in read_only:
        mount(rootfs, rootfs, None, MS_BIND | MS_REC)  # its own mount, to remount read-only last
    for app in record["apps"]:
        _mount_os_spec(app, devices)
    for entry in plan:
        _mount_volume(root, entry)
    for rootfs in read_only:
        mount(None, rootfs, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _mount_os_spec(app, devices) -> None:
    """What appc's Linux OS spec requires in every app's filesystem."""
    rootfs = app["rootfs"]
    try:
        _mount_beneath(rootfs, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, create=True)
        _mount_beneath(rootfs, "sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, create=True)
        _mount_beneath(rootfs, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k", create=True)
        _make_devices(rootfs, devices)
        _mount_beneath(rootfs, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
                       "newinstance,ptmxmode=0666,mode=0620")
        _mount_beneath(rootfs, "dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    except JetpackError as error:
        raise JetpackError("app %s: %s" % (app["name"], error)) from None


def _make_devices(rootfs: str, devices) -> None:
    dev = beneath.open_dir(rootfs, "dev")  # the fresh tmpfs: nothing in it but what we make
    try:
        for name in DEVICES:
            os.mknod(name, stat.S_IFCHR | 0o666, devices[name], dir_fd=dev)
        # No terminal is given to pods yet: the console is a null device, never the host's.
        os.mknod("console", stat.S_IFCHR | 0o666, devices["null"], dir_fd=dev)
        for link, target in DEV_LINKS:
            os.symlink(target, link, dir_fd=dev)
        os.mkdir("pts", 0o755, dir_fd=dev)
        os.mkdir("shm", 0o1777, dir_fd=dev)
    finally:
        os.close(dev)


def _mount_volume(root: str, entry) -> None:
    """Bind one entry of the mount plan; read-only is the kernel's: a remount of the bind."""
    relative = os.path.relpath(entry.target, root)
    if relative.startswith(".."):
        raise JetpackError("mount target %s is outside the pod root %s" % (entry.target, root))
    if not os.path.isdir(entry.source):
        raise JetpackError("volume source %s is not a directory on the host; create it or fix the volume"
                           % entry.source)
    # A read-only bind is not recursive: a mount below the source would stay writable.
    _mount_beneath(root, relative, entry.source, None, MS_BIND if entry.read_only else MS_BIND | MS_REC)
    if entry.read_only:  # walked again: this time the walk ends in the new mount
        _mount_beneath(root, relative, None, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _mount_beneath(top: str, path: str, source, fstype, flags: int, data=None, create=False) -> None:
    """Mount on top/path, reached without following any symlink (an image's or an app's)."""
    try:
        fd = beneath.open_dir(top, path, create=create)
    except FileNotFoundError:
        raise JetpackError("cannot mount /%s: it is missing; prepare the pod again" % path) from None
    except JetpackError as error:
        raise JetpackError("cannot mount /%s: %s" % (path, error)) from None
    try:
        mount(source, "/proc/self/fd/%d" % fd, fstype, flags, data)
    except OSError as error:
        action = "mount %s on" % (source or fstype) if source or fstype else "remount"
        raise JetpackError("cannot %s /%s: %s" % (action, path, os.strerror(error.errno))) from None
    finally:
        os.close(fd)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            request = struct.pack("16sH22x", b"lo", 0)
            flags = struct.unpack_from("16sH", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
        except OSError as error:
            raise JetpackError("cannot bring the pod's loopback interface up: %s" % error.strerror) from None


def _enter_pod_root(root: str) -> None:
    """pivot_root into the pod root, then detach the host's tree stacked on it."""
    os.chdir(root)
    pivot_root(".", ".")
    umount2(".", MNT_DETACH)
    os.chdir("/")


# --- stop -----------------------------------------------------------------------------------
def _wait_gone(record, pid: int) -> None:
    """Until the holder is reaped (ours) or a zombie (someone else's): the pod is then empty."""
    deadline = time.monotonic() + STOP_TIMEOUT
    delay = 0.001
    while not _gone(pid):
        if time.monotonic() > deadline:
            raise JetpackError(
                "pod %s: its holder (pid %d) did not exit within %d s of SIGKILL; the kernel keeps it until "
                "every process of the pod is reaped: this process (pid %d) must reap its children %s"
                % (record["name"], pid, STOP_TIMEOUT, os.getpid(), _zombie_children() or "(none found)"))
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _gone(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        return _state(pid) in ("", "Z")
    return False


def _state(pid: int) -> str:
    """The state letter of a process; "" when it does not exist."""
    return (_stat_fields(pid) or [""])[0]


def _zombie_children() -> list:
    me = str(os.getpid())
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and _stat_fields(name)[:2] == ["Z", me]]


def _stat_fields(pid) -> list:
    """The fields of /proc/<pid>/stat after the command (state, ppid...); [] when it does not exist."""
    try:
        with open("/proc/%s/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return []


def _joined(record) -> list:
    """The networks the pod has an interface on (not `host`, the host's own)."""
    return [n for n in record.get("networks") or () if n["name"] != "host"]


def _ifname(index: int) -> str:
    return "eth%d" % index


def _host_end(record, index: int, entry) -> dict:
    """What linux_network.detach_pod needs to know of the host end of the pod's veth on a network."""
    from . import linux_network
    name = entry.get("host_ifname") or linux_network.veth_name(record["uuid"], entry["name"], _ifname(index))
    return {"host_ifname": name, "bridge": entry["bridge"]}


def _attach_networks(record, holder_pid: int) -> None:
    """Give the pod an interface on each of its networks (eth0, eth1...; the first one routes).

    Done by a short-lived child, as the holder's building is: the network code it imports and the
    pages it dirties go with it, so the supervisor of a networked pod stays as small as any other's
    (importing linux_network in the supervisor itself cost each networked pod ~3 MiB of PSS).
    """
    if not _joined(record):
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            _attach_all(record, holder_pid)
        except BaseException as error:  # noqa: B902 - the parent must hear about anything
            _fail(write_end, error)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        reason = f.read()  # until the child exits
    status = os.waitpid(pid, 0)[1]
    if status != 0:
        raise JetpackError("pod %s: its network interfaces could not be made: %s"
                           % (record["name"], reason.decode("utf-8", "replace") or "status %d" % status))


def _attach_all(record, holder_pid: int) -> None:
    from . import linux_network
    for index, entry in enumerate(_joined(record)):  # pods.start_supervised made the bridges and rules
        host_end = _host_end(record, index, entry)

        def attach():
            linux_network.attach_pod(entry, holder_pid, entry["address"], entry.get("address6"), ifname=_ifname(index),
                                     default_route=index == 0, host_ifname=host_end["host_ifname"])
        try:
            attach()
        except AlreadyExists:
            # The holder is new, so a veth by this pod's name is left from its last run: the kernel
            # removes a network namespace, and its veths, asynchronously after its last process.
            if not linux_network.detach_pod(host_end):
                raise
            attach()


def _detach_networks(record) -> None:
    """Delete the veths of a pod whose holder is gone, rather than wait for the kernel to: the names
    are free for its next start, and a stopped pod shows no interface on the host at once."""
    joined = _joined(record)
    if not joined:
        return
    from . import linux_network
    for index, entry in enumerate(joined):
        with contextlib.suppress(JetpackError):  # best effort: the kernel deletes it with the namespace anyway
            linux_network.detach_pod(_host_end(record, index, entry))
