"""The store: one root dataset holding images/, pods/ and volumes/.

ZFS plus small JSON files beside the datasets are the only source of truth. Every object the
runtime creates carries `jetpack:kind` and `jetpack:state` user properties; an object whose state
is not final was left by a crash and is collected by `Store.collect_garbage()`, which every
mutating operation runs under the host lock before it changes anything.

Which store a host uses: the explicit root dataset given by the caller, else the host
configuration file (JSON `{"root": "zroot/jetpack", "mountpoint": "/var/jetpack"}`), else the
embedded default: a file-backed pool `jetpack` under /var/lib/jetpack with the store at
`jetpack/jetpack`, created on first use.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from typing import Optional

from .errors import InvalidInput, NotFound
from .zfs import Zfs

CONFIG_FILES = ("/usr/local/etc/jetpack/jetpack.json", "/etc/jetpack/jetpack.json")
DEFAULT_MOUNTPOINT = "/var/jetpack"
EMBEDDED_POOL = "jetpack"
EMBEDDED_DIR = "/var/lib/jetpack"
EMBEDDED_SIZE = 8 << 30
LOCK_DIR = "/var/run/jetpack"

KIND = "jetpack:kind"
STATE = "jetpack:state"
SEALED = "sealed"   # the final state of an image
READY = "ready"     # the final state of a pod or a volume
SECTIONS = ("images", "pods", "volumes")
_HELD_LOCKS = set()  # lock files this process holds
# Properties that every section child is listed with, in one zfs call.
OBJECT_PROPS = (KIND, STATE, "jetpack:id", "jetpack:name", "jetpack:pod", "origin", "used", "mountpoint")


class StoreConfig:
    """Which store: its root dataset, mountpoint, and the file backing an embedded pool."""

    def __init__(self, root: str, mountpoint: str = DEFAULT_MOUNTPOINT, pool_file: Optional[str] = None):
        self.root = root
        self.mountpoint = mountpoint
        self.pool_file = pool_file

    @property
    def pool(self) -> str:
        return self.root.split("/", 1)[0]


def resolve_config(root: Optional[str] = None, mountpoint: Optional[str] = None,
                   config_files=CONFIG_FILES) -> StoreConfig:
    """The store to use: explicit options, then the host config file, then the embedded default."""
    if root:
        return StoreConfig(_checked_root(root), _checked_mountpoint(mountpoint or DEFAULT_MOUNTPOINT))
    for path in config_files:
        if os.path.exists(path):
            data = _read_config(path)
            return StoreConfig(_checked_root(data["root"]),
                               _checked_mountpoint(mountpoint or data.get("mountpoint", DEFAULT_MOUNTPOINT)))
    return StoreConfig(EMBEDDED_POOL + "/jetpack", _checked_mountpoint(mountpoint or DEFAULT_MOUNTPOINT),
                       pool_file=os.path.join(EMBEDDED_DIR, EMBEDDED_POOL + ".zpool"))


def _read_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InvalidInput("cannot read the jetpack host configuration %s: %s; fix or remove it" % (path, e))
    if not isinstance(data, dict) or not isinstance(data.get("root"), str):
        raise InvalidInput('%s must be a JSON object with a "root" dataset name' % path)
    return data


def _checked_root(root: str) -> str:
    parts = root.split("/")
    if not all(parts) or any(c in root for c in "@# \t\n") or root.startswith("-"):
        raise InvalidInput("store root %r is not a ZFS filesystem name such as zroot/jetpack" % root,
                           field="store_root")
    return root


def _checked_mountpoint(path: str) -> str:
    if not os.path.isabs(path) or path.rstrip("/") == "":
        raise InvalidInput("store mountpoint %r must be an absolute path other than /" % path,
                           field="store_mountpoint")
    return os.path.normpath(path)


class Store:
    def __init__(self, config: StoreConfig, zfs: Optional[Zfs] = None):
        self.config = config
        self.zfs = zfs or Zfs()
        self._inventory = None
        self._locked = False

    # --- names and paths -------------------------------------------------------------------
    @property
    def root(self) -> str:
        return self.config.root

    def dataset(self, section: str, key: str = "") -> str:
        return "/".join(p for p in (self.root, section, key) if p)

    def path(self, section: str, *parts: str) -> str:
        return os.path.join(self.config.mountpoint, section, *parts)

    def tmp_dir(self) -> str:
        """A directory on the store for downloads and exports in progress."""
        path = os.path.join(self.config.mountpoint, "tmp")
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    # --- existence and initialisation -------------------------------------------------------
    def ensure(self) -> None:
        """Create what is missing: the embedded pool, the root dataset and its sections."""
        if self.config.pool_file:
            self._ensure_embedded_pool()
        present = set(self.inventory())
        if self.root not in present:
            os.makedirs(self.config.mountpoint, mode=0o755, exist_ok=True)
            self.zfs.create(self.root, {"mountpoint": self.config.mountpoint, KIND: "store"}, parents=True)
        for section in SECTIONS:
            if self.dataset(section) not in present:
                props = {"atime": "off"} if section == "images" else {}
                self.zfs.create(self.dataset(section), props)
                os.chmod(self.path(section), 0o700)

    def _ensure_embedded_pool(self) -> None:
        pool, image = self.config.pool, self.config.pool_file
        if self.zfs.pool_exists(pool):
            return
        os.makedirs(os.path.dirname(image), mode=0o700, exist_ok=True)
        if os.path.exists(image):
            self.zfs.pool_import(pool, os.path.dirname(image))
            return
        with open(image, "wb") as f:
            f.truncate(EMBEDDED_SIZE)
        try:
            self.zfs.pool_create(pool, image)
        except Exception:
            os.unlink(image)
            raise

    # --- listing ----------------------------------------------------------------------------
    def inventory(self) -> dict:
        """{dataset: {prop: value}} for the root, its sections and their children, in one zfs call.

        While this process holds the store lock nobody else changes the store, so the answer is
        kept until this store's Zfs writes (its `generation` counts writes). Without the lock,
        every call asks ZFS, noting the store's change counter (kept in the lock file, odd while a
        locked section runs, bumped by each): taking the lock reuses that answer when no locked
        section ran in between.
        """
        if not self._locked or self._inventory is None or self._inventory[0] != self.zfs.generation:
            changes = self._changes() if not self._locked else None
            try:
                tree = self.zfs.get_tree(self.root, OBJECT_PROPS, depth=2)
            except NotFound:
                tree = {}
            self._inventory = (self.zfs.generation, tree, changes)
        return self._inventory[1]

    def _lock_path(self) -> str:
        return os.path.join(LOCK_DIR, self.root.replace("/", "_") + ".lock")

    def _changes(self, fd=None) -> int:
        """The store's change counter, as the lock file holds it (0 before the first change)."""
        try:
            if fd is None:
                with open(self._lock_path(), "rb") as f:
                    data = f.read(32)
            else:
                data = os.pread(fd, 32, 0)
            return int(data.strip() or 0)
        except (OSError, ValueError):
            return -1

    def list_objects(self, section: str) -> dict:
        """{dataset name: {prop: value}} for the direct children of a section; {} without a store."""
        prefix = self.dataset(section) + "/"
        return {name: props for name, props in self.inventory().items()
                if name.startswith(prefix) and "/" not in name[len(prefix):]}

    # --- locking and garbage collection ----------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """The host-wide lock around every change to this store; re-entrant within a process."""
        path = self._lock_path()
        if path in _HELD_LOCKS:
            yield
            return
        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD_LOCKS.add(path)
            changes = self._changes(fd)
            kept = self._inventory
            # An odd counter: a locked section was cut short (a crash), so nothing read is trusted.
            if kept is None or kept[0] != self.zfs.generation or kept[2] != changes or changes % 2:
                self._inventory = None
            changes = max(changes, 0) | 1
            os.pwrite(fd, b"%d\n" % changes, 0)  # odd while this section runs
            self._locked = True
            yield
        finally:
            if self._locked:
                os.pwrite(fd, b"%d\n" % (changes + 1), 0)
            self._locked, self._inventory = False, None
            _HELD_LOCKS.discard(path)
            os.close(fd)

    def collect_garbage(self, section: str, final_state: str) -> list:
        """Remove what a crash left half-made in a section; call with the lock held.

        Returns the names removed. A dataset counts as half-made when its `jetpack:state` is
        not the section's final state; a directory without its dataset is removed as well.
        """
        removed = []
        objects = self.list_objects(section)
        for name, props in sorted(objects.items()):
            if props.get(STATE) != final_state:
                self.zfs.destroy(name, recursive=True)
                removed.append(name)
        live = {name.rsplit("/", 1)[1] for name in objects if name not in removed}
        section_dir = self.path(section)
        for entry in listdir(section_dir):
            if entry not in live:
                self.remove_directory(os.path.join(section_dir, entry))
                removed.append(os.path.join(section_dir, entry))
        remove_work_tree(os.path.join(self.config.mountpoint, "tmp"))
        return removed

    def remove_directory(self, path: str) -> None:
        """rm -r a store directory, refusing to descend into anything still mounted."""
        for dirpath, dirnames, _files in os.walk(path):
            for d in dirnames:
                if os.path.ismount(os.path.join(dirpath, d)):
                    raise InvalidInput("%s is still mounted; unmount it before removing %s"
                                       % (os.path.join(dirpath, d), path))
        if os.path.lexists(path):
            shutil.rmtree(path)


def remove_work_tree(path: str) -> None:
    """rm -r a scratch tree; first unmount what a killed process (debootstrap mounts /proc, /sys and
    /dev/pts in its target) left mounted inside, so removing it never reaches into another filesystem."""
    for mountpoint in sorted(mounts_below(path), reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


def mounts_below(path: str) -> list:
    """Mount points strictly inside path (Linux /proc/self/mounts; none where it does not exist)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            points = [line.split()[1].replace("\\040", " ") for line in f]
    except OSError:
        return []
    prefix = os.path.realpath(path).rstrip("/") + "/"
    return [p for p in points if p.startswith(prefix)]


def listdir(path: str) -> list:
    """Sorted entries of a directory; none when it does not exist."""
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def write_json(path: str, data, mode: int = 0o640) -> None:
    """Write JSON atomically: a crash leaves the old file or the new one, never half of one."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
