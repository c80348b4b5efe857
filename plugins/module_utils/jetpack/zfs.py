"""The one wrapper for zfs(8) and zpool(8).

Every command line comes from a pure `argv_*` function, so the FreeBSD contract tests can
check it without a FreeBSD host. `Zfs` runs those argv lists through an injectable
`run(argv) -> (rc, stdout, stderr)`, parses `-H` output (one TAB between columns; `-` or an
empty string may appear in any column) and turns stderr into typed errors.

ZFS versions differ. `Zfs.caps` probes, once per instance and only when first needed, what
this zfs(8) understands; no probe names a dataset (each stops at option parsing, at a usage
error or lists nothing), so probing cannot change anything. The differences worked around:

- old ZFS (zfs-fuse, pool version 23) has no `zfs list -p`: `get_tree` uses `zfs get -H -p`;
- old ZFS sets one property per `zfs set`: `set` then makes one call per property;
- zfs-fuse cannot rename a mounted dataset ("dataset is busy"): `rename` unmounts first.

`zfs destroy -R` is never passed: it would also destroy clones outside the tree (other
pods' roots). A dataset with dependent clones raises `InUse` naming them.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import time
from collections import namedtuple

from .errors import AlreadyExists, Busy, CommandError, InUse, InvalidInput, JetpackError, NotFound

# Waits between attempts while zfs says "dataset is busy": about 2 s in all.
BUSY_DELAYS = (0.1, 0.2, 0.3, 0.5, 0.9)
# Destroying what a pod just used: zfs-fuse may stay busy for seconds after the pod's processes
# (a build's package installs) are gone, while it flushes: about 10 s in all.
DESTROY_BUSY_DELAYS = BUSY_DELAYS + (1.5, 2.5, 4.0)


# --- errors --------------------------------------------------------------------------------
# The typed errors of errors.py, also carrying the command (argv, rc, stdout, stderr).

class ZfsNotFound(NotFound, CommandError):
    pass


class ZfsAlreadyExists(AlreadyExists, CommandError):
    pass


class ZfsBusy(Busy, CommandError):
    pass


class ZfsInUse(InUse, CommandError):
    def details(self) -> dict:
        return {**CommandError.details(self), "users": self.users}


_SUBJECT = r"^cannot [a-z ]+? '([^']*)'"  # compiled (and cached) by re on first use


def _listed_after(stderr: str, marker: str) -> list:
    """The names zfs prints one per line after "use '-r'/'-R' to destroy the following ..."."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if marker in line:
            names = []
            for name in lines[i + 1:]:
                if not name.strip() or name.startswith("cannot "):
                    break
                names.append(name.strip())
            return names
    return []


def error_for(argv, rc, stdout, stderr) -> CommandError:
    """The typed error for a failed zfs/zpool command, classified by its stderr."""
    found = re.search(_SUBJECT, stderr, re.M)
    what = found.group(1) if found else (argv[-1] if argv else "?")
    cmd = "(command: %s; exit status %s)" % (shlex.join(argv), rc)
    if "has dependent clones" in stderr:
        users = _listed_after(stderr, "use '-R'")
        msg = ("cannot destroy '%s': these clones depend on its snapshots: %s. Destroy (or promote)"
               " those clones first; jetpack never destroys dependent clones implicitly %s"
               % (what, ", ".join(users) or "?", cmd))
        return _error(ZfsInUse, msg, argv, rc, stdout, stderr, users)
    if "has children" in stderr:
        users = _listed_after(stderr, "use '-r'")
        msg = ("cannot destroy '%s': it still has children or snapshots: %s. Destroy them first,"
               " or destroy recursively if they are meant to go too %s"
               % (what, ", ".join(users) or "?", cmd))
        return _error(ZfsInUse, msg, argv, rc, stdout, stderr, users)
    if "dataset is busy" in stderr or "pool is busy" in stderr:  # + "pool or dataset is busy"
        msg = ("'%s' is busy: a process with files open or its working directory below the"
               " mountpoint, a jail or a mount on top of it is using it; stop that and retry %s"
               % (what, cmd))
        return _error(ZfsBusy, msg, argv, rc, stdout, stderr)
    if "already exists" in stderr:
        msg = ("'%s' already exists: choose another name or destroy the existing one first %s"
               % (what, cmd))
        return _error(ZfsAlreadyExists, msg, argv, rc, stdout, stderr)
    if "does not exist" in stderr or "no such pool" in stderr:
        msg = ("'%s' does not exist: check the name (pool/dataset[@snapshot]) with 'zfs list -t"
               " all' or 'zpool list', or create it first %s" % (what, cmd))
        return _error(ZfsNotFound, msg, argv, rc, stdout, stderr)
    text = "; ".join(_before_usage(stderr or stdout)) or "no message"
    msg = ("%s failed: %s. Fix the cause reported above and retry %s"
           % (argv[0] if argv else "command", text, cmd))
    return _error(CommandError, msg, argv, rc, stdout, stderr)


def _before_usage(text: str) -> list:
    """The message lines of a zfs error, without the usage text that follows them."""
    lines = []
    for line in text.strip().splitlines():
        if line.startswith("usage:"):
            break
        lines.append(line.strip())
    return [line for line in lines if line]


def _error(cls, msg, argv, rc, stdout, stderr, users=None):
    err = cls(msg, users) if users is not None else cls(msg)
    err.argv, err.rc, err.stdout, err.stderr = list(argv), rc, stdout, stderr
    return err


# --- argv builders (pure) ------------------------------------------------------------------

_PROP = r"^[A-Za-z0-9][A-Za-z0-9:._@+-]*$"


def _name(name, field: str = "name") -> str:
    """A dataset/pool name safe as one argv element: not empty, not an option, one line."""
    if not isinstance(name, str) or not name or name.startswith("-") or \
            any(c in name for c in "\t\n\r\0"):
        raise InvalidInput("invalid ZFS name %r: use pool/dataset[@snapshot], not starting"
                           " with '-'" % (name,), field)
    return name


def _snapshot(name, field: str = "snapshot") -> str:
    if "@" not in _name(name, field):
        raise InvalidInput("%r is not a snapshot name: use dataset@snapshot" % (name,), field)
    return name


def _prop(prop) -> str:
    if not isinstance(prop, str) or not re.match(_PROP, prop):
        raise InvalidInput("invalid ZFS property name %r: use a native property or a user"
                           " property such as 'module:property'" % (prop,), "props")
    return prop


def _props(props) -> list:
    """["k=v", ...] for a {property: value} dict; values are strings or integers."""
    out = []
    for prop, value in (props or {}).items():
        if isinstance(value, bool) or not isinstance(value, (str, int)) or \
                any(c in str(value) for c in "\t\n\r\0"):
            raise InvalidInput("invalid value %r for ZFS property %s: give a one-line string"
                               % (value, prop), "props")
        out.append("%s=%s" % (_prop(prop), value))
    return out


def _opts(props) -> list:
    return [a for kv in _props(props) for a in ("-o", kv)]


def _csv(props) -> str:
    if isinstance(props, str):
        props = [props]
    if not props:
        raise InvalidInput("no ZFS property given", "props")
    return ",".join(_prop(p) for p in props)


def _depth(depth, recursive) -> list:
    if depth is not None:
        return ["-d", str(int(depth))]
    return ["-r"] if recursive else []


def argv_create(name, props=None, parents=False, nomount=False) -> list:
    """zfs-create(8): zfs create [-p] [-u] [-o property=value]... filesystem"""
    return (["zfs", "create"] + (["-p"] if parents else []) + (["-u"] if nomount else [])
            + _opts(props) + [_name(name)])


def argv_clone(snapshot, name, props=None) -> list:
    """zfs-clone(8): zfs clone [-o property=value]... snapshot filesystem"""
    return ["zfs", "clone"] + _opts(props) + [_snapshot(snapshot), _name(name)]


def argv_snapshot(snapshot) -> list:
    """zfs-snapshot(8): zfs snapshot dataset@snapname"""
    return ["zfs", "snapshot", _snapshot(snapshot)]


def argv_destroy(name, recursive=False) -> list:
    """zfs-destroy(8): zfs destroy [-r] dataset. There is deliberately no way to ask for -R."""
    return ["zfs", "destroy"] + (["-r"] if recursive else []) + [_name(name)]


def argv_rename(old, new) -> list:
    """zfs-rename(8): zfs rename old new"""
    return ["zfs", "rename", _name(old, "old"), _name(new, "new")]


def argv_set(name, props) -> list:
    """zfs-set(8): zfs set property=value [property=value]... dataset"""
    pairs = _props(props)
    if not pairs:
        raise InvalidInput("no ZFS property to set on %s" % name, "props")
    return ["zfs", "set"] + pairs + [_name(name)]


def argv_inherit(name, prop) -> list:
    """zfs-inherit(8): zfs inherit property dataset (removes a user property)"""
    return ["zfs", "inherit", _prop(prop), _name(name)]


def argv_get(name, props, fields=("property", "value"), depth=None, recursive=False) -> list:
    """zfs-get(8): zfs get -H -p [-r|-d depth] -o field[,field]... property[,property]... dataset"""
    return (["zfs", "get", "-H", "-p"] + _depth(depth, recursive)
            + ["-o", ",".join(fields), _csv(props), _name(name)])


def argv_list(name, props=("name",), types=None, depth=None, recursive=False) -> list:
    """zfs-list(8): zfs list -H -p -o property[,property]... [-t type] [-r|-d depth] dataset"""
    return (["zfs", "list", "-H", "-p", "-o", _csv(props)] + (["-t", types] if types else [])
            + _depth(depth, recursive) + [_name(name)])


def argv_exists(name) -> list:
    """zfs-list(8): zfs list -H -o name -t all dataset (the cheap existence probe)"""
    return ["zfs", "list", "-H", "-o", "name", "-t", "all", _name(name)]


def argv_mount(name) -> list:
    """zfs-mount(8): zfs mount filesystem"""
    return ["zfs", "mount", _name(name)]


def argv_unmount(name) -> list:
    """zfs-unmount(8): zfs unmount filesystem"""
    return ["zfs", "unmount", _name(name)]


def argv_zpool_list(pool, props=("name",)) -> list:
    """zpool-list(8): zpool list -H -o property[,property]... pool (no -p: old ZFS lacks it)"""
    return ["zpool", "list", "-H", "-o", _csv(props), _name(pool, "pool")]


def argv_zpool_create(pool, vdevs, mountpoint="none") -> list:
    """zpool-create(8): zpool create -m mountpoint pool vdev..."""
    if isinstance(vdevs, str):
        vdevs = [vdevs]
    return (["zpool", "create", "-m", mountpoint, _name(pool, "pool")]
            + [_name(v, "vdevs") for v in vdevs])


def argv_zpool_import(pool, directory) -> list:
    """zpool-import(8): zpool import -d dir pool"""
    return ["zpool", "import", "-d", _name(directory, "directory"), _name(pool, "pool")]


def argv_zpool_destroy(pool, force=False) -> list:
    """zpool-destroy(8): zpool destroy [-f] pool"""
    return ["zpool", "destroy"] + (["-f"] if force else []) + [_name(pool, "pool")]


# --- parsing (pure) ------------------------------------------------------------------------

def parse_table(out: str, columns) -> list:
    """Rows of `-H` output as dicts: one TAB between columns, `-`/empty values kept as printed.

    The last column takes the rest of the line, so put a free-form value there.
    """
    columns = list(columns)
    rows = []
    for line in out.split("\n"):
        if not line:
            continue
        cells = line.split("\t", len(columns) - 1)
        if len(cells) != len(columns):
            raise ValueError("expected %d TAB-separated columns (%s), got %r"
                             % (len(columns), ",".join(columns), line))
        rows.append(dict(zip(columns, cells)))
    return rows


def parse_number(value: str):
    """An int/float from zfs/zpool -p output; None for '-' or ''. Accepts '8%' and '1.83x'."""
    value = value.strip().rstrip("%x")
    if value in ("", "-"):
        return None
    return int(value) if value.isdigit() else float(value)


# --- capabilities --------------------------------------------------------------------------

# What this ZFS can do, probed once: zfs list -p; zfs set a=1 b=2 DS in one call; zfs create -u;
# zfs diff; renaming a mounted dataset (proxy: zfs rename -u is known).
Capabilities = namedtuple("Capabilities", "parsable_list multi_set create_nomount diff rename_mounted")


READ_COMMANDS = ("get", "list")  # every other zfs/zpool subcommand may change something


# Each probe stops with a usage error after option parsing: no dataset is named, nothing changes.
PROBES = {
    "parsable_list": ["zfs", "list", "-H", "-p", "-o", "name", "-d", "0", "-t", "snapshot"],
    "multi_set": ["zfs", "set", "jetpack:probe=1", "jetpack:probe=2"],
    "create_nomount": ["zfs", "create", "-u"],
    "diff": ["zfs", "diff"],
    "rename_mounted": ["zfs", "rename", "-u"],
}


def probe_supported(cap: str, rc: int, stderr: str) -> bool:
    if cap == "multi_set":  # OpenZFS: "missing dataset name(s)"; old: "cannot open 'jetpack:probe=2'"
        return "missing dataset" in stderr
    return "invalid option" not in stderr and "unrecognized command" not in stderr


# --- running -------------------------------------------------------------------------------

def run_command(argv):
    """Run argv without a shell, LC_ALL=C so messages are the ones classified here."""
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False,
                              env=dict(os.environ, LC_ALL="C"))
    except OSError as e:
        raise CommandError("cannot run %s: %s; install ZFS (FreeBSD base, OpenZFS or zfs-fuse)"
                           " or give the path to the tool" % (argv[0], e), argv) from e
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))


class Zfs:
    def __init__(self, run=None, zfs="zfs", zpool="zpool", *, sleep=time.sleep):
        self.run = run or run_command
        self.tools = {"zfs": zfs, "zpool": zpool}
        self.sleep = sleep
        self._caps = None
        self.generation = 0  # counts writes, so that callers can cache what they read in between

    @property
    def caps(self) -> Capabilities:
        if self._caps is None:
            found = {}
            for cap, argv in PROBES.items():
                rc, _out, err = self.run(self._tool(argv))
                found[cap] = probe_supported(cap, rc, err)
            self._caps = Capabilities(**found)
        return self._caps

    # --- plumbing
    def _tool(self, argv) -> list:
        return [self.tools.get(argv[0], argv[0])] + list(argv[1:])

    def _check(self, argv, ok=()) -> str:
        """stdout of a successful command; a typed error otherwise (stderr texts in `ok` pass)."""
        if argv[1] not in READ_COMMANDS:
            self.generation += 1  # before running: a failed write may have changed something too
        argv = self._tool(argv)
        rc, out, err = self.run(argv)
        if rc != 0 and not any(text in err for text in ok):
            raise error_for(argv, rc, out, err)
        return out

    def _retry(self, argv, ok=(), delays=BUSY_DELAYS) -> str:
        """_check, retrying while zfs says "dataset is busy" (about 2 s in all by default)."""
        for delay in delays:
            try:
                return self._check(argv, ok)
            except Busy:
                self.sleep(delay)
        return self._check(argv, ok)

    def _table(self, argv, columns) -> list:
        out = self._check(argv)
        try:
            return parse_table(out, columns)
        except ValueError as e:
            raise CommandError("unexpected output from %s: %s; this ZFS version is not supported"
                               " as is, report it with the output" % (shlex.join(argv), e),
                               argv, 0, out) from e

    # --- reading
    def exists(self, name) -> bool:
        try:
            return bool(self._check(argv_exists(name)).strip())
        except NotFound:
            return False

    def get(self, name, props) -> dict:
        """{property: value} as zfs prints it with -p; an unset property reads '-'."""
        rows = self._table(argv_get(name, props), ("property", "value"))
        return {row["property"]: row["value"] for row in rows}

    def get_tree(self, name, props, depth=1, types="filesystem") -> dict:
        """{dataset: {property: value}} for name and its descendants down to depth (None: all).

        types: comma-separated zfs types ("filesystem", "snapshot", "volume") or "all".
        """
        props = list(dict.fromkeys([props] if isinstance(props, str) else props))
        # `zfs get` works alike on every ZFS (zfs-fuse has neither `list -p` nor `get -t`), so
        # reads need no capability probe: ask for "type" too and filter here.
        wanted = list(dict.fromkeys(["type"] + props))
        argv = argv_get(name, wanted, ("name", "property", "value"), depth, recursive=depth is None)
        tree, kinds = {}, {}
        for row in self._table(argv, ("name", "property", "value")):
            if row["property"] == "type":
                kinds[row["name"]] = row["value"]
            if row["property"] in props:
                tree.setdefault(row["name"], {})[row["property"]] = row["value"]
        allowed = set(types.split(","))
        return {ds: values for ds, values in tree.items()
                if "all" in allowed or kinds.get(ds) in allowed}

    def pool_exists(self, pool) -> bool:
        try:
            self._check(argv_zpool_list(pool))
            return True
        except NotFound:
            return False

    # --- writing
    def create(self, name, props=None, parents=False):
        self._check(argv_create(name, props, parents))

    def clone(self, snapshot, name, props=None):
        self._retry(argv_clone(snapshot, name, props))

    def snapshot(self, snapshot):
        self._retry(argv_snapshot(snapshot))

    def set(self, name, props: dict):
        if len(props) > 1 and not self.caps.multi_set:
            for prop, value in props.items():
                self._check(argv_set(name, {prop: value}))
        elif props:
            self._check(argv_set(name, props))

    def inherit(self, name, prop):
        self._check(argv_inherit(name, prop))

    def rename(self, old, new):
        """Rename; where the ZFS cannot rename mounted datasets, unmount and remount around it."""
        argv = argv_rename(old, new)
        if "@" in old or self.caps.rename_mounted:
            self._retry(argv)
            return
        mounted = self._unmount_tree(old)
        try:
            self._retry(argv)
        except JetpackError:
            with contextlib.suppress(JetpackError):
                for ds in mounted:
                    self.mount(ds)
            raise
        for ds in mounted:
            self.mount(new + ds[len(old):])

    def destroy(self, name, recursive=False):
        """zfs destroy [-r]; never -R. Children/snapshots or dependent clones raise InUse.

        zfs-fuse keeps answering "dataset is busy" to a destroy of a recently used mount for
        seconds, while a plain `zfs unmount` succeeds at once: on Busy, unmount (never forced,
        so a dataset really in use still refuses) and destroy again.
        """
        argv = argv_destroy(name, recursive)
        try:
            self._check(argv)
        except Busy:
            self._unmount_tree(name, recursive, DESTROY_BUSY_DELAYS)
            self._retry(argv, delays=DESTROY_BUSY_DELAYS)

    def _unmount_tree(self, name, recursive=True, delays=BUSY_DELAYS) -> list:
        """Unmount a dataset (and with recursive, its mounted descendants, children first)."""
        tree = self.get_tree(name, ["mounted"], depth=None if recursive else 0)
        mounted = [ds for ds, values in tree.items() if values["mounted"] == "yes"]
        for ds in reversed(mounted):
            self._retry(argv_unmount(ds), ok=("not currently mounted",), delays=delays)
        return mounted

    def mount(self, name):
        self._check(argv_mount(name), ok=("already mounted",))

    def unmount(self, name):
        self._retry(argv_unmount(name), ok=("not currently mounted",))

    # --- pools
    def pool_create(self, pool, vdevs, mountpoint="none"):
        self._check(argv_zpool_create(pool, vdevs, mountpoint))

    def pool_import(self, pool, directory):
        self._check(argv_zpool_import(pool, directory))

    def pool_destroy(self, pool, force=False):
        self._retry(argv_zpool_destroy(pool, force))
