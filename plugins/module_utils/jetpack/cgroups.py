"""Linux resource limits of a pod: one control group per pod, "jetpack/<pod uuid hex>" (docs/executor.md).

Both cgroup layouts are found at run time from /proc/self/mountinfo:
- v1 (and "hybrid" hosts): one hierarchy per controller, such as /sys/fs/cgroup/memory; a pod has
  a directory jetpack/<key> in each of the memory, cpu and pids hierarchies that exist;
- v2 (unified): one tree; jetpack/<key> under it, with the controllers enabled down the path
  through cgroup.subtree_control.

The cgroups live at the top of each hierarchy, not below the cgroup of whoever creates them: a pod
outlives the module that starts it, and gc must find every pod's cgroup from any process.

Limits (normalized as isolators.py writes them):
- memory: v1 memory.limit_in_bytes and memory.memsw.limit_in_bytes (when swap accounting is on);
  v2 memory.max and memory.swap.max = 0. Swap is capped so that going past the limit gets the
  process OOM-killed instead of swapped out. The request is memory.soft_limit_in_bytes / memory.low.
- cpu: v1 cpu.cfs_quota_us over cpu.cfs_period_us; v2 cpu.max "quota period". The request is
  cpu.shares (1024 per core) / cpu.weight (the shares converted as runc and systemd do).
- processes: pids.max.
Open files are not a cgroup resource: RLIMIT_NOFILE, set in the child (set_open_files).

A pod's processes are attached to a leaf: the pod's own directory or a sub-directory of it
("holder", "app-<name>"), which may carry an app's own, lower limits. v2 forbids processes in a
cgroup that passes controllers down, so once leaves are used every process goes into one.
Everything is idempotent; a cgroup left by a dead pod is removed by collect_garbage.
"""
from __future__ import annotations

import errno
import os
import re
import resource
import signal
import time
from collections import namedtuple

from .errors import Busy, InvalidInput, JetpackError

PARENT = "jetpack"
CONTROLLERS = ("memory", "cpu", "pids")
PERIOD_US = 100000          # the CFS period the quota is measured against (the kernel's default)
MIN_QUOTA_US = 1000         # the kernel refuses a quota below 1 ms
REMOVE_TIMEOUT = 10.0       # seconds for killed processes to leave before rmdir gives up

Layout = namedtuple("Layout", "version roots")   # version 1 or 2; roots {controller: mount point}

_KEY = re.compile(r"[0-9a-f]{32}")
_LEAF = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_FEATURES = {"memory": "memory", "cpu": "cpu", "pids": "processes"}
_SWAP_FILES = ("memory.memsw.limit_in_bytes", "memory.swap.max")


# --- where the controllers are -------------------------------------------------------------------
def parse_mountinfo(text: str) -> Layout:
    """The cgroup layout of a /proc/<pid>/mountinfo: v1 when any of our controllers has its own
    hierarchy, else v2 when a cgroup2 tree is mounted (its cgroup.controllers is read by supported())."""
    v1, v2 = {}, None
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        mountpoint, fstype, options = fields[4], fields[dash + 1], fields[dash + 3].split(",")
        if fstype == "cgroup":
            for controller in CONTROLLERS:
                if controller in options:
                    v1.setdefault(controller, _unescape(mountpoint))
        elif fstype == "cgroup2" and v2 is None:
            v2 = _unescape(mountpoint)
    if v1:
        return Layout(1, v1)
    if v2 is not None:
        return Layout(2, {controller: v2 for controller in CONTROLLERS})
    return Layout(0, {})


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def detect() -> Layout:
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def supported(layout: Layout) -> frozenset:
    """Normalized isolator keys (isolators.py) the host's cgroups can enforce; open_files is an rlimit."""
    if layout.version == 2:
        root = layout.roots["memory"]
        available = set(_read(os.path.join(root, "cgroup.controllers")).split())
        controllers = [c for c in CONTROLLERS if c in available]
    else:
        controllers = list(layout.roots)
    return frozenset([_FEATURES[c] for c in controllers] + ["open_files"])


# --- files ------------------------------------------------------------------------------------
def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _keyed(text: str) -> dict:
    """"name value" lines (cpu.stat, memory.events, memory.oom_control, pids.events) as ints."""
    values = {}
    for line in text.splitlines():
        name, _sep, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[name] = int(value)
    return values


# --- values -------------------------------------------------------------------------------------
def cpu_quota_us(millicores: int, period_us: int = PERIOD_US) -> int:
    return max(MIN_QUOTA_US, millicores * period_us // 1000)


def cpu_shares(millicores: int) -> int:
    return min(262144, max(2, millicores * 1024 // 1000))


def cpu_weight(millicores: int) -> int:
    """cgroup v2 weight (1..10000) of the v1 shares, by the conversion runc and systemd use."""
    return 1 + (cpu_shares(millicores) - 2) * 9999 // 262142


def limit_files(limits: dict, version: int) -> list:
    """[(controller, file, value)] to write for normalized limits, in the order to write them."""
    files = []
    memory, cpu = limits.get("memory"), limits.get("cpu")
    if memory:
        if version == 1:
            files += [("memory", "memory.limit_in_bytes", memory["limit"]),
                      ("memory", "memory.memsw.limit_in_bytes", memory["limit"]),
                      ("memory", "memory.soft_limit_in_bytes", memory["request"])]
        else:
            files += [("memory", "memory.max", memory["limit"]), ("memory", "memory.swap.max", 0),
                      ("memory", "memory.low", memory["request"])]
    if cpu:
        if version == 1:
            files += [("cpu", "cpu.cfs_period_us", PERIOD_US), ("cpu", "cpu.cfs_quota_us", cpu_quota_us(cpu["limit"])),
                      ("cpu", "cpu.shares", cpu_shares(cpu["request"]))]
        else:
            files += [("cpu", "cpu.max", "%d %d" % (cpu_quota_us(cpu["limit"]), PERIOD_US)),
                      ("cpu", "cpu.weight", cpu_weight(cpu["request"]))]
    if limits.get("processes"):
        files.append(("pids", "pids.max", limits["processes"]))
    return files


def set_open_files(count: int) -> None:
    """RLIMIT_NOFILE of this process (call it in the child before execve); never above the hard limit
    the host gives (raising that needs CAP_SYS_RESOURCE, which a pod's supervisor may lack)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    value = count if hard == resource.RLIM_INFINITY else min(count, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (value, value))


# --- one pod ----------------------------------------------------------------------------------
class PodCgroup:
    """The cgroup(s) of one pod: jetpack/<key>[/<leaf>] in each hierarchy of the layout."""

    def __init__(self, key: str, layout: Layout = None, parent: str = PARENT):
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise InvalidInput("%r is not a pod key (32 hex digits of the pod's UUID)" % (key,), "key")
        self.key = key
        self.layout = layout or detect()
        self.parent = parent
        if self.layout.version == 0:
            raise JetpackError("this host has no cgroup hierarchy mounted; mount cgroup2 on /sys/fs/cgroup "
                               "(or the v1 memory, cpu and pids controllers) to limit pods")

    def directory(self, controller: str, leaf: str = None) -> str:
        parts = [self.layout.roots[controller], self.parent, self.key]
        if leaf is not None:
            if not _LEAF.fullmatch(leaf):
                raise InvalidInput("cgroup leaf %r must be lowercase letters, digits and '-'" % (leaf,), "leaf")
            parts.append(leaf)
        return os.path.join(*parts)

    def directories(self, leaf: str = None) -> list:
        """One per hierarchy (v2: the one tree), deduplicated in controller order."""
        return list(dict.fromkeys(self.directory(c, leaf) for c in self.layout.roots))

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.directories())

    def create(self, limits: dict = None, leaf: str = None) -> None:
        """Make the pod's (or a leaf's) cgroup and write its limits; again with the same values is a no-op."""
        limits = limits or {}
        for controller in self.layout.roots:
            self._make(controller, leaf)
        try:
            for controller, name, value in limit_files(limits, self.layout.version):
                self._set(controller, name, value, leaf)
        except OSError as error:
            raise JetpackError("cannot set the limits of pod cgroup %s: %s; check that the limits are "
                               "sensible and that the host's cgroups allow them"
                               % (self.directory("memory", leaf), _describe(error))) from None

    def _make(self, controller: str, leaf) -> None:
        target = self.directory(controller, leaf)
        root = self.layout.roots[controller]
        path = root
        for part in os.path.relpath(target, root).split(os.sep):
            if self.layout.version == 2:
                self._enable_controllers(path)
            path = os.path.join(path, part)
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                pass

    def _enable_controllers(self, path: str) -> None:
        """v2: pass our controllers down from path to its children (cgroup.subtree_control)."""
        available = set(_read(os.path.join(path, "cgroup.controllers")).split())
        enabled = set(_read(os.path.join(path, "cgroup.subtree_control")).split())
        wanted = [c for c in CONTROLLERS if c in available and c not in enabled]
        if wanted:
            _write(os.path.join(path, "cgroup.subtree_control"), " ".join("+" + c for c in wanted))

    def _set(self, controller: str, name: str, value, leaf) -> None:
        path = os.path.join(self.directory(controller, leaf), name)
        if name in _SWAP_FILES and not os.path.exists(path):
            return  # no swap accounting on this kernel: the memory limit alone
        try:
            _write(path, value)
        except OSError as error:
            # v1 keeps memsw >= limit: raising a limit means raising memsw first.
            if error.errno != errno.EINVAL or name != "memory.limit_in_bytes":
                raise
            _write(os.path.join(self.directory(controller, leaf), "memory.memsw.limit_in_bytes"), value)
            _write(path, value)

    def attach(self, pid: int, leaf: str = None) -> None:
        """Move pid (0: the calling process) into the pod's cgroup or one of its leaves, in every hierarchy."""
        for directory in self.directories(leaf):
            try:
                _write(os.path.join(directory, "cgroup.procs"), pid)
            except OSError as error:
                raise JetpackError("cannot put process %d into cgroup %s: %s; is the pod's cgroup created?"
                                   % (pid or os.getpid(), directory, _describe(error))) from None

    def pids(self) -> set:
        """Every process in the pod's cgroups, leaves included."""
        found = set()
        for directory in self._tree():
            try:
                found.update(int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split())
            except FileNotFoundError:
                pass
        return found

    def _tree(self) -> list:
        """The pod's directories in every hierarchy, deepest first (the order rmdir needs)."""
        found = []
        for top in self.directories():
            for directory, _dirs, _files in os.walk(top, topdown=False):
                found.append(directory)
        return found

    def stats(self, leaf: str = None) -> dict:
        """Counters the kernel keeps: cpu throttling, memory OOM kills and usage, refused forks."""
        v2 = self.layout.version == 2
        cpu = self._file("cpu", "cpu.stat", leaf)
        oom = self._file("memory", "memory.events" if v2 else "memory.oom_control", leaf)
        usage = self._file("memory", "memory.current" if v2 else "memory.usage_in_bytes", leaf, parse=_number)
        pids = self._file("pids", "pids.events", leaf)
        throttled_usec = cpu.get("throttled_usec", cpu.get("throttled_time", 0) // 1000)
        return {"cpu": {"nr_periods": cpu.get("nr_periods", 0), "nr_throttled": cpu.get("nr_throttled", 0),
                        "throttled_usec": throttled_usec},
                "memory": {"oom_kills": oom.get("oom_kill", 0), "usage": usage or 0},
                "pids": {"refused": pids.get("max", 0)}}

    def _file(self, controller: str, name: str, leaf, parse=None):
        """A controller file of the pod parsed (default: "name value" lines); {} / None when absent."""
        if controller not in self.layout.roots:
            return None if parse else {}
        path = os.path.join(self.directory(controller, leaf), name)
        try:
            text = _read(path)
        except FileNotFoundError:
            return None if parse else {}
        return (parse or _keyed)(text)

    def remove(self, timeout: float = REMOVE_TIMEOUT) -> bool:
        """Kill what is left in the pod's cgroups and remove them; False when there was nothing."""
        tree = self._tree()
        if not tree:
            return False
        self.kill(timeout)
        for directory in self._tree():
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as error:
                raise Busy("cannot remove cgroup %s: %s; run the removal again once its processes are gone"
                           % (directory, _describe(error))) from None
        return True

    def kill(self, timeout: float = REMOVE_TIMEOUT) -> None:
        """SIGKILL every process of the pod's cgroups until none is left (new forks are killed too)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise Busy("processes %s of pod cgroup %s survive SIGKILL; run the removal again"
                           % (sorted(pids), self.key))
            time.sleep(0.01)


def _number(text: str) -> int:
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return 0


def _describe(error: OSError) -> str:
    return error.strerror or str(error)


# --- garbage ---------------------------------------------------------------------------------
def pod_keys(layout: Layout = None, parent: str = PARENT) -> set:
    """Keys of every pod cgroup present in any hierarchy."""
    layout = layout or detect()
    keys = set()
    for root in set(layout.roots.values()):
        try:
            keys.update(name for name in os.listdir(os.path.join(root, parent)) if _KEY.fullmatch(name))
        except FileNotFoundError:
            pass
    return keys


def collect_garbage(live_keys, layout: Layout = None, parent: str = PARENT) -> list:
    """Remove the cgroups of pods not in live_keys (a crash can leave them); the keys removed, sorted."""
    layout = layout or detect()
    removed = []
    for key in sorted(pod_keys(layout, parent) - set(live_keys)):
        PodCgroup(key, layout, parent).remove()
        removed.append(key)
    return removed
