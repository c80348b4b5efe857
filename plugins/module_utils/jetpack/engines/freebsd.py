"""The FreeBSD engine: a pod is one jail, described by a jail.conf(5) and an fstab(5) of its own.

`prepare` writes `<pod_dir>/jail.conf` and `<pod_dir>/fstab`; `start` hands them to jail(8)
(`jail -f <conf> -c <name>`), which mounts the fstab entries, mounts devfs and creates the jail;
`stop` runs `jail -f <conf> -r <name>` with the same file, so jail(8) also unmounts what it mounted;
`attach` enters the jail from a forked child with jail_attach(2); `running` asks jls(8).

A pod's networks (freebsd_network.py) add their jail(8) parameters to jail.conf (shared IP:
ip4.addr/ip6.addr on the network's cloned loopback; VNET: vnet, vnet.interface, devfs ruleset 5,
exec.poststart); `start` runs the pod's host-side steps around `jail -c` (stale aliases cleared,
or epairs made; then the pod's pf anchors) and undoes them when a step fails; `stop` flushes the
anchors and destroys the epairs after `jail -r`. `sync_networks`, `addresses_in_use` and
`check_ports` are what pods.py asks of every engine for the networks themselves.

Nothing here runs on import, and nothing FreeBSD-only is looked up before it is used, so the module
imports (and its pure parts are tested) on Linux. Every command line comes from one pure `argv_*`
function; the tests assert them and feed real recorded jls(8)/jail(8) output to the parsers.

Manual pages cited: jail(8) "Jail Parameters", jail.conf(5), jls(8), jail(2), fstab(5),
mount_nullfs(8), devfs.rules(5). Facts taken from the jail(8) sources name the file
(usr.sbin/jail/{jail,config,command}.c, jaillex.l). shared/reference/freebsd/commands.md
sections 1-7 summarise them.

The jail name is "jetpack-" + the pod UUID as 32 lowercase hex digits (no dashes), e.g.
"jetpack-3c1f5e2a8d4b4f6e9a7c0b1d2e3f4a5b":
- jail(8) "Jail Parameters" name: a name may not contain "." (it separates parent and child
  jails) and may not be numeric unless it equals the JID; the prefix makes it never numeric and
  never start with "-" (so it is never taken for an option), and hex has no ".";
- unique: the UUID is random per pod; deterministic: it is a pure function of the record, so
  every command (create, remove, status) names the same jail without state;
- the same 32 hex digits name the pod's dataset and directory (pods.py: `<root>/pods/<hex>`), so
  `jls -N`, `zfs list` and `ls /var/jetpack/pods` line up; the prefix keeps jetpack's jails apart
  from other managers' on the same host;
- it is one jail.conf(5) token (letters, digits, "-"), so it needs no quoting.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import uuid as uuidlib
from collections import namedtuple

from .. import beneath
from ..errors import AlreadyExists, CommandError, InvalidInput, JetpackError, NotFound
from . import Mount, freebsd_limits, freebsd_network, mount_plan

NAME_PREFIX = "jetpack-"
CONF_FILE = "jail.conf"
FSTAB_FILE = "fstab"
CONF_MODE = 0o600    # like pod.json: root reads and rewrites it, nobody else reads it
FSTAB_MODE = 0o400   # as the original jetpack wrote its per-pod fstab (read-only, root only)
MOUNTPOINT_MODE = 0o555  # dev/, proc/, sys/ created for jail(8) to mount on (as FreeBSD ships them)
DEFAULT_DEVFS_RULESET = "4"  # usr.sbin/jail/command.c: mount.devfs without devfs_ruleset uses 4
TOOLS = {"jail": "/usr/sbin/jail", "jls": "/usr/sbin/jls"}

# The jail's secure defaults, in the order written. Every one can be overridden per pod through
# record["jail"] ({parameter: value}; None drops the parameter so the kernel default applies).
SECURE_DEFAULTS = (
    # jail(8) securelevel: the jail's own kern.securelevel, which it can only raise; at 2
    # (security(7) "SECURE LEVELS") system-immutable flags hold, mounted disks cannot be written
    # raw and the clock cannot step back. What Bastille, iocage and the original jetpack run
    # with (freebsd-jail-managers.md section 4); build jails override it with 0 + allow.chflags.
    ("securelevel", "2"),
    # jail(8) enforce_statfs: 2 = the jail sees only the mount holding its root, so statfs(2)
    # and mount(8) inside never reveal host paths (volume sources). Also the kernel default;
    # written so that an unusual host default cannot loosen it.
    ("enforce_statfs", "2"),
    # jail(8) mount.devfs: jail(8) mounts devfs on <path>/dev with devfs_ruleset applied;
    # devfs.rules(5) ruleset 4 (devfsrules_jail in /etc/defaults/devfs.rules, recorded in
    # outputs/devfs-rules-defaults-1) hides every device but null, zero, random, the ptys and
    # fd/stdin/stdout/stderr. The same ruleset is used for each app's own /dev (render_fstab).
    ("mount.devfs", True),
    ("devfs_ruleset", DEFAULT_DEVFS_RULESET),
    # jail(8) allow.raw_sockets (default off): raw sockets forge packets; ping is not worth it.
    ("allow.raw_sockets", False),
    # jail(8) allow.set_hostname (default ON): the hostname is the pod's identity, set by the
    # engine; apps may not change it. The OCI runtime-spec default (setHostname false) too.
    ("allow.set_hostname", False),
    # jail(8) allow.chflags (default off): jailed root may not clear system flags (schg).
    ("allow.chflags", False),
    # jail(8) sysvmsg/sysvsem/sysvshm: "new" gives the pod a private SysV IPC key space that its
    # apps share; "disable" breaks postgres and friends (ocijail#8), "inherit" (what the
    # deprecated allow.sysvipc means) shares the host's.
    ("sysvshm", "new"),
    ("sysvsem", "new"),
    ("sysvmsg", "new"),
    # jail(8) children.max (default 0): no nested jails; the kernel then refuses jail_set(2)
    # inside with "Operation not permitted" (outputs/jail-test-expected-2).
    ("children.max", "0"),
    # jail(8) exec.clean: any exec.* command runs with a clean environment, never the caller's
    # (the supervisor's or Ansible's) variables.
    ("exec.clean", True),
    # jail(8) ip4/ip6: "disable" = no IPv4/IPv6 at all for a pod on no network; a pod's networks
    # replace them (freebsd_network.jail_network_parameters: "new" with ip4.addr, or dropped for
    # vnet); never "inherit", which lets the jail use every host address.
    ("ip4", "disable"),
    ("ip6", "disable"),
)

# Parameters the engine writes from the record itself; overriding them would break the engine.
ENGINE_OWNED = {
    "name": "the jail name is derived from the pod UUID",
    "jid": "the kernel chooses the JID",
    "path": "the jail path is the pod root",
    "host.hostname": "set the pod's hostname option instead",
    "host.hostuuid": "it is the pod UUID",
    "mount.fstab": "volumes are mounted through the pod's generated fstab; use the pod's volumes",
    "persist": "a pod's jail must persist: it is created empty and apps are attached later"
               " (jail(8): a new jail needs persist, exec.start or command)",
    "stop.timeout": "set the pod's stop_timeout option instead",
}
# jail(8) parameters that run commands or mounts on the host (or start processes in the jail
# root) outside the engine's bookkeeping: refused as overrides (exec.clean is allowed).
HOST_SIDE = ("command", "depend", "mount", "exec.")

# Every whole-value check uses fullmatch: "$" would also match before a final newline.
_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_JAIL_NAME = re.compile(NAME_PREFIX + r"[0-9a-f]{32}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
# usr.sbin/jail/config.c reads mount.fstab with fgetln(3), cuts each line at the first "#" and
# command.c splits it with strtok(3) on " \t\f\v\r\n" without decoding fstab(5)'s "\040": such
# characters cannot appear in a path jail(8) mounts. A backslash is refused too, so that no
# reader (fstab(5)'s own decoding, a human) can read a line two ways.
_FSTAB_UNSAFE = re.compile(r"[\s#\\\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_VALUE = 4096

JailStatus = namedtuple("JailStatus", "jid name path dying")
# What a pod's start does on the host besides `jail -c`: its network mode, networks (definition +
# address), published ports resolved to its addresses, and the interface they are published on.
StartPlan = namedtuple("StartPlan", "mode networks ports egress_if")


# --- record fields --------------------------------------------------------------------------------

def pod_uuid(record) -> uuidlib.UUID:
    value = record.get("uuid")
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise InvalidInput("pod uuid %r is not a UUID (32 hex digits, dashes optional); the pod"
                           " record is damaged: recreate the pod" % (value,), "uuid")
    return uuidlib.UUID(value)


def jail_name(record) -> str:
    """ "jetpack-" + 32 hex digits of the pod UUID (see the module docstring for why)."""
    return NAME_PREFIX + pod_uuid(record).hex


def conf_path(record) -> str:
    return os.path.join(_path(record.get("pod_dir"), "pod_dir"), CONF_FILE)


def fstab_path(record) -> str:
    return os.path.join(_path(record.get("pod_dir"), "pod_dir"), FSTAB_FILE)


def validate_hostname(value, field: str = "hostname") -> str:
    """An RFC 1123 host name: dot-separated labels of letters, digits and inner '-', <= 253."""
    if not isinstance(value, str) or not value or len(value) > 253 or \
            not all(_HOST_LABEL.fullmatch(label) for label in value.split(".")):
        raise InvalidInput("hostname %r is not a valid host name: use labels of letters, digits"
                           " and '-' separated by '.', such as web or web.example.internal"
                           % (value,), field)
    return value


def _path(value, field: str) -> str:
    """An absolute, normalised host path that jail.conf and jail(8)'s fstab reader both carry."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or \
            os.path.normpath(value) != value:
        raise InvalidInput("%s %r must be an absolute, normalised path (no '..', '//' or"
                           " trailing '/')" % (field, value), field)
    if _FSTAB_UNSAFE.search(value):
        raise InvalidInput("%s %r contains whitespace, '#', a backslash or a control character:"
                           " jail(8) reads mount.fstab lines split at whitespace and cut at '#',"
                           " so it cannot mount such a path; use another directory" % (field, value),
                           field)
    return value


def _below(root: str, path: str, field: str) -> str:
    """path, which must lie strictly below root (so that jail(8) checks it for symlinks)."""
    _path(path, field)
    if not path.startswith(root + "/"):
        raise InvalidInput("%s %s is not inside the pod root %s; jail(8) checks mount points for"
                           " symbolic links only below the jail path" % (field, path, root), field)
    return path


def _stop_timeout(record) -> str:
    value = record.get("stop_timeout", 10)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("stop_timeout %r must be a whole number of seconds >= 0" % (value,),
                           "stop_timeout")
    return str(value)


# --- networks -------------------------------------------------------------------------------------

def network_entries(record) -> list:
    """The networks the pod joins as pods.py records them (the network's definition plus the pod's
    address on it), without the "host" pseudo-network."""
    entries = record.get("networks") or []
    if not isinstance(entries, list):
        raise InvalidInput("networks must be a list of the pod's networks", "networks")
    return [e for e in entries if not (isinstance(e, dict) and e.get("name") == "host")]


def network_mode(record) -> str:
    """"shared", "vnet" (from the networks' own "mode", shared by default), "host" or "none"."""
    if any(isinstance(e, dict) and e.get("name") == "host" for e in record.get("networks") or ()):
        return "host"
    return freebsd_network.pod_mode(network_entries(record))


def network_parameters(record) -> list:
    """The jail(8) parameters of the pod's networks, to apply over SECURE_DEFAULTS."""
    return freebsd_network.jail_network_parameters(network_entries(record), network_mode(record),
                                                   jail=jail_name(record))


# --- jail parameters ------------------------------------------------------------------------------

def _canonical(name: str) -> str:
    """The parameter a name sets: jail(8) reads "nofoo" / "a.nofoo" as foo / a.foo = false."""
    head, dot, last = name.rpartition(".")
    if last.startswith("no") and len(last) > 2:
        return head + dot + last[2:]
    return name


def _override_value(name: str, value):
    """None (drop), True/False, or a str / list of str as jail.conf(5) will quote it."""
    field = "jail.%s" % name
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _CONTROL.search(value) or len(value) > MAX_VALUE:
            raise InvalidInput("jail parameter %s: value %r has a newline or another control"
                               " character (or is too long); give a one-line value"
                               % (name, value[:80]), field)
        return value
    if isinstance(value, (list, tuple)):
        items = [_override_value(name, item) for item in value]
        if not items or any(not isinstance(item, str) for item in items):
            raise InvalidInput("jail parameter %s: a list value must hold one or more strings or"
                               " numbers (give null to drop the parameter)" % name, field)
        return items
    raise InvalidInput("jail parameter %s: value %r must be a string, number, boolean, list or"
                       " null" % (name, value), field)


def validate_overrides(overrides, networked: bool = False) -> dict:
    """{canonical name: (name as written, value)} for record["jail"]; refuses what is unsafe, and
    for a pod on networks (networked) the parameters its networks set."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise InvalidInput("jail must be a mapping of jail(8) parameter names to values", "jail")
    found = {}
    for name, value in overrides.items():
        if not isinstance(name, str) or len(name) > 64 or not _PARAM_NAME.fullmatch(name):
            raise InvalidInput("jail parameter name %r is not a jail(8) parameter name: use"
                               " lowercase words joined by '.', such as allow.mlock or"
                               " securelevel" % (name,), "jail")
        key = _canonical(name)
        if key in ENGINE_OWNED:
            raise InvalidInput("jail parameter %s cannot be overridden: %s" % (name, ENGINE_OWNED[key]),
                               "jail.%s" % name)
        if key != "exec.clean" and any(key == h or (h.endswith(".") and key.startswith(h))
                                       for h in HOST_SIDE):
            raise InvalidInput("jail parameter %s is refused: it runs commands or mounts on the host"
                               " outside jetpack's control; use the pod's apps, handlers and"
                               " volumes instead" % name, "jail.%s" % name)
        if networked and key in freebsd_network.NETWORK_PARAMETERS:
            raise InvalidInput("jail parameter %s is set by the pod's networks; leave it out (a pod"
                               " on networks: none may set it itself)" % name, "jail.%s" % name)
        if key in found:
            raise InvalidInput("jail parameters %s and %s set the same parameter; give one"
                               % (found[key][0], name), "jail.%s" % name)
        found[key] = (name, _override_value(name, value))
    for key, flag in (("mount.devfs", True), ("devfs_ruleset", False)):
        if key in found and found[key][1] is not None:
            value = found[key][1]
            ok = isinstance(value, bool) if flag else (isinstance(value, str) and value.isdigit())
            if not ok:
                raise InvalidInput("jail parameter %s must be %s" % (
                    found[key][0], "true or false" if flag else "a ruleset number"), "jail.%s" % key)
    return found


def jail_parameters(record) -> list:
    """[(name, value)] in the order written: the engine's own, the secure defaults as overridden,
    then the other overrides sorted by name. value: True (bare boolean), False, a str or a list."""
    params = [
        ("path", _path(record.get("root"), "root")),                       # jail(8) path
        ("host.hostname", validate_hostname(record.get("hostname") or record.get("name"))),
        ("host.hostuuid", str(pod_uuid(record))),                          # jail(8) host.hostuuid
        ("mount.fstab", fstab_path(record)),                               # jail(8) mount.fstab
        # jail(8) persist: the jail lives with no process in it until the supervisor attaches
        # the apps (a new jail needs persist, exec.start or command).
        ("persist", True),
        # jail(8) stop.timeout: how long `jail -r` waits after SIGTERM (default 10): the pod's.
        ("stop.timeout", _stop_timeout(record)),
    ]
    overrides = validate_overrides(record.get("jail"), networked=bool(network_entries(record)))
    defaults = freebsd_network.apply_jail_parameters(SECURE_DEFAULTS, network_parameters(record))
    for name, value in defaults:
        if name in overrides:
            name, value = overrides.pop(name)
        if value is not None:
            params.append((name, value))
    for key in sorted(overrides):
        name, value = overrides[key]
        if value is not None:
            params.append((name, value))
    return params


def _flag(params, key: str) -> bool:
    """Whether a boolean parameter ends up true (absent = false; "nofoo" inverts)."""
    for name, value in params:
        if _canonical(name) == key:
            return (value is True) != (name != key)
    return False


def _quote(value: str) -> str:
    """A jail.conf(5) single-quoted string: no variable expansion happens inside single quotes
    (jail.conf(5) "Variables"); jaillex.l decodes backslash escapes, so \\ and ' are escaped."""
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "\\'")


def _conf_line(name: str, value) -> str:
    if value is True:
        return "  %s;" % name                      # jail.conf(5): a bare boolean, "persist;"
    if value is False:
        return "  %s = 'false';" % name            # jail(8): booleans take true/false
    if isinstance(value, list):
        return "  %s = %s;" % (name, ", ".join(_quote(v) for v in value))  # jail.conf(5) lists
    return "  %s = %s;" % (name, _quote(value))


def render_jail_conf(record) -> str:
    """The pod's jail.conf(5): one block named after the jail, every value single-quoted."""
    lines = ["# Generated by jetpack (engines/freebsd.py) when the pod was prepared; do not edit.",
             "%s {" % jail_name(record)]
    lines.extend(_conf_line(name, value) for name, value in jail_parameters(record))
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- fstab ----------------------------------------------------------------------------------------

def _fstab_line(spec: str, target: str, vfstype: str, options: str) -> str:
    # fstab(5): spec file vfstype mntops freq passno; jail(8) uses the first four.
    return "%s %s %s %s 0 0" % (spec, target, vfstype, options)


def _apps(record, root: str) -> list:
    apps = record.get("apps") or []
    if not isinstance(apps, list):
        raise InvalidInput("apps must be a list", "apps")
    return [(app, _below(root, app.get("rootfs"), "apps[%d].rootfs" % i)) for i, app in enumerate(apps)]


def render_fstab(record, mounts) -> str:
    """The pod's mount.fstab: host paths on both sides, mounted in order by jail(8) before the
    jail is created and unmounted by `jail -r`.

    Per app, as the original jetpack did: devfs on the app's /dev (the pod's devfs_ruleset, when
    mount.devfs is on: apps run chrooted in their own rootfs and never see the jail root's
    /dev), linprocfs on /proc and linsysfs on /sys for apps whose image os is "linux", then the
    app's volume mounts (mount_nullfs(8), ro or rw). Mounts of the plan outside every app come last.
    """
    root = _path(record.get("root"), "root")
    params = jail_parameters(record)
    devfs = _flag(params, "mount.devfs")
    ruleset = dict((_canonical(n), v) for n, v in params).get("devfs_ruleset", DEFAULT_DEVFS_RULESET)
    if not isinstance(ruleset, str) or not ruleset.isdigit():
        raise InvalidInput("devfs_ruleset must be a ruleset number", "jail.devfs_ruleset")
    plan = []
    for i, m in enumerate(mounts):
        field = "mounts[%d]" % i
        plan.append(Mount(_path(m.source, field + ".source"), _below(root, m.target, field + ".target"),
                          bool(m.read_only)))
    lines = ["# Generated by jetpack (engines/freebsd.py) when the pod was prepared; do not edit."]
    left = list(plan)
    for app, rootfs in _apps(record, root):
        if devfs:
            lines.append(_fstab_line("devfs", rootfs + "/dev", "devfs", "rw,ruleset=" + ruleset))
        if app.get("os") == "linux":
            lines.append(_fstab_line("linprocfs", rootfs + "/proc", "linprocfs", "rw"))
            lines.append(_fstab_line("linsysfs", rootfs + "/sys", "linsysfs", "rw"))
        for m in [m for m in left if m.target.startswith(rootfs + "/")]:
            lines.append(_fstab_line(m.source, m.target, "nullfs", "ro" if m.read_only else "rw"))
            left.remove(m)
    for m in left:
        lines.append(_fstab_line(m.source, m.target, "nullfs", "ro" if m.read_only else "rw"))
    return "\n".join(lines) + "\n"


# --- commands (pure argv) -------------------------------------------------------------------------

def _jail_name_arg(name) -> str:
    if not isinstance(name, str) or not name.startswith(NAME_PREFIX) or \
            not _JAIL_NAME.fullmatch(name):
        raise InvalidInput("%r is not a jetpack jail name (jetpack-<32 hex digits>)" % (name,), "name")
    return name


def _conf_arg(conf) -> str:
    return _path(conf, "jail.conf path")


def argv_create(conf, name) -> list:
    """jail(8): jail -i -f conf -c name. -f: the pod's own file, never /etc/jail.conf; -c: create
    from that file's block; -i: print only the new JID (implies -q; errors still print)."""
    return ["jail", "-i", "-f", _conf_arg(conf), "-c", _jail_name_arg(name)]


def argv_remove(conf, name) -> list:
    """jail(8): jail -f conf -r name, with the same file so jail(8) runs the remove steps of that
    block (SIGTERM, stop.timeout, removal, then unmount devfs and the mount.fstab entries). No
    -q: under -q jail(8) hides '"name" not found', which is how a stopped pod is recognised."""
    return ["jail", "-f", _conf_arg(conf), "-r", _jail_name_arg(name)]


def argv_status(name) -> list:
    """jls(8): jls --libxo json -d -j name jid name path dying. --libxo json: the one output that
    is not truncated (the table is); -j: this jail only (exit 1 and 'jail "X" not found' when
    absent); -d: also a dying jail, reported with dying=true instead of not found; the named
    parameters make each record carry exactly these keys."""
    return ["jls", "--libxo", "json", "-d", "-j", _jail_name_arg(name), "jid", "name", "path", "dying"]


# --- parsing (pure) -------------------------------------------------------------------------------

def _number(value, key: str):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError("%s %r is not a number" % (key, value))


def _boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)) and str(value).lower() in ("true", "1", "false", "0"):
        return str(value).lower() in ("true", "1")
    raise ValueError("dying %r is not a boolean" % (value,))


def _jail_record(item) -> JailStatus:
    if not isinstance(item, dict):
        raise ValueError("a jail record is not an object: %r" % (item,))
    name, path = item.get("name"), item.get("path")
    for key, value in (("name", name), ("path", path)):
        if value is not None and not isinstance(value, str):
            raise ValueError("%s %r is not a string" % (key, value))
    if "dying" in item:                 # -n / named parameters: a JSON boolean
        dying = _boolean(item["dying"])
    else:                               # -v: "state": "ACTIVE" | "DYING"
        dying = item.get("state") == "DYING"
    return JailStatus(_number(item.get("jid"), "jid"), name, path, dying)


def parse_jls(text: str) -> list:
    """[JailStatus(jid, name, path, dying)] from one `jls --libxo json` document.

    Tolerates what FreeBSD prints: "__version" "1" or "2" (not checked), numbers as JSON numbers
    (-v) or strings (-n, named parameters), records without some keys, even {} (None there),
    "dying" as a boolean or -v's "state". Raises ValueError for anything else.
    """
    try:
        document = json.loads(text)
    except ValueError as e:
        raise ValueError("not a JSON document: %s" % e) from None
    info = document.get("jail-information") if isinstance(document, dict) else None
    jails = info.get("jail") if isinstance(info, dict) else None
    if not isinstance(jails, list):
        raise ValueError("no \"jail-information\": {\"jail\": [...]} in the document")
    return [_jail_record(item) for item in jails]


def parse_created_jid(stdout: str):
    """The JID `jail -i -c` printed (its last line), or None if it printed none."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if lines and lines[-1].isdigit() and int(lines[-1]) > 0:
        return int(lines[-1])
    return None


# --- errors ---------------------------------------------------------------------------------------

class JailAlreadyExists(AlreadyExists, CommandError):
    pass


class JailNotFound(NotFound, CommandError):
    pass


class JailMountError(CommandError):
    """jail(8) could not mount (or unmount) one of the pod's filesystems."""


class JailParameterError(InvalidInput, CommandError):
    """jail(8) or the kernel refused a parameter value or the configuration file."""


class JailPermissionError(CommandError):
    """The kernel refused: not root, or inside a jail that may not create jails."""


_ALREADY = re.compile(r'^jail: (?:.*: )?(?:jail )?"([^"]+)" already exists$')
_NOT_FOUND = re.compile(r'^(?:jail|jls|jexec): (?:jail )?"([^"]+)" not found$')
_SYMLINK = re.compile(r"^jail: .*?(\S+) is a symbolic link$")
_PARAMETER = re.compile(r"non-integer value|unknown parameter|unknown boolean value|unknown jailsys"
                        r" value|cannot be changed after creation|cannot redefine parameter|not an"
                        r' IPv[46] address|variable "[^"]*" not found|variable loop|syntax error'
                        r"|unterminated (?:string|comment|variable)")
_MOUNT = (
    re.compile(r"^jail: (?:[^:]*: )?(mount(?:\.[a-z]+)?): (.+)$"),    # mount.devfs: PATH: error
    re.compile(r"^jail: (?:[^:]*: )?(/sbin/u?mount .+): failed$"),    # an fstab line's mount(8)
    re.compile(r"^(mount(?:_[a-z]+)?|umount): (.+)$"),                # mount_nullfs(8)'s own text
)
_PERMISSION = re.compile(r"prison limit exceeded|Operation not permitted")
_EXECVP = re.compile(r"^jexec: execvp: (.+): No such file or directory$")


def _lines(text: str) -> list:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def error_for(argv, rc, stdout, stderr) -> CommandError:
    """The typed error for a failed jail(8)/jls(8)/jexec(8) command, from its stderr (jail.c
    prints 'jail: [name: ]text'); the message says what to do."""
    lines = _lines(stderr)
    cmd = "(command: %s; exit status %s)" % (shlex.join(argv), rc)
    shown = "; ".join(lines) or "no message"

    def make(cls, msg):
        err = cls(msg + " " + cmd) if cls is not JailParameterError else cls(msg + " " + cmd, "jail")
        err.argv, err.rc, err.stdout, err.stderr = list(argv), rc, stdout, stderr
        return err

    for line in lines:
        found = _ALREADY.match(line)
        if found:
            return make(JailAlreadyExists, "jail %s already exists: the pod is running, or a start"
                        " or stop did not finish. Stop the pod (or run `jail -r %s` with the pod's"
                        " jail.conf) and start it again" % (found.group(1), found.group(1)))
    for line in lines:
        found = _NOT_FOUND.match(line)
        if found:
            return make(JailNotFound, "jail %s is not running (%s): start the pod first"
                        % (found.group(1), line))
    for line in lines:
        found = _SYMLINK.match(line)
        if found:
            return make(JailMountError, "jail(8) refused to mount on %s: it is a symbolic link"
                        " inside the pod (an image or an app replaced a mount point with a link);"
                        " nothing was mounted there. Recreate the pod from its images (%s)"
                        % (found.group(1), shown))
    for line in lines:
        if _PARAMETER.search(line):
            return make(JailParameterError, "jail(8) refused the pod's configuration: %s. Fix the"
                        " pod's jail option (the names and values this FreeBSD accepts are listed by"
                        " `sysctl -d security.jail.param`)" % shown)
    for line in lines:
        if any(pattern.match(line) for pattern in _MOUNT):
            if "-r" in argv:
                return make(JailMountError, "jail(8) removed the jail but could not unmount all of"
                            " the pod's filesystems: %s. Find what is left with `mount -p`, stop the"
                            " host processes using those directories, unmount them and stop the pod"
                            " again before destroying it" % shown)
            return make(JailMountError, "jail(8) could not mount the pod's filesystems: %s. Check"
                        " that each volume's host directory exists, that the pod was prepared"
                        " (mount points exist inside its apps), and that the filesystem's kernel"
                        " module is loaded (linprocfs/linsysfs need linux64); the pod did not start"
                        % shown)
    for line in lines:
        if _PERMISSION.search(line):
            return make(JailPermissionError, "the kernel refused to create or change the jail: %s."
                        " Run jetpack as root on the host itself, not inside a jail (children.max)"
                        % shown)
    for line in lines:
        found = _EXECVP.match(line)
        if found:
            return make(CommandError, "%s does not exist inside the jail: check the command path"
                        " against the app's image" % found.group(1))
    return make(CommandError, "%s failed: %s. Fix the cause reported above and retry"
                % (argv[0] if argv else "command", shown))


# --- running --------------------------------------------------------------------------------------

def run_command(argv):
    """Run argv without a shell, LC_ALL=C so the messages are the ones classified here."""
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False,
                              env=dict(os.environ, LC_ALL="C"))
    except OSError as e:
        raise CommandError("cannot run %s: %s; the FreeBSD engine needs FreeBSD's jail(8) and"
                           " jls(8) (run pods of this host with the engine of its platform)"
                           % (argv[0], e), argv) from e
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))


def _context_jid(context) -> int:
    jid = (context or {}).get("jid") if isinstance(context, dict) else None
    if isinstance(jid, bool) or not isinstance(jid, int) or jid <= 0:
        raise InvalidInput("the pod context has no valid jid (%r): start the pod first" % (jid,), "jid")
    return jid


def _load_libc():
    import ctypes
    import ctypes.util
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


_ATTACH_HINTS = {
    1: "attaching needs root, in a fresh child process that holds no open directory"
       " (jail_attach(2) chroots)",                                             # EPERM
    22: "no jail has this JID any more: the pod is not running; start it again",  # EINVAL
}


def jail_attach(jid, load_libc=None, system=None) -> None:
    """jail_attach(2) the calling process (a forked child) into jail `jid`; JetpackError if not
    on FreeBSD or when the call fails (with the errno text). ctypes is imported only here."""
    jid = _context_jid({"jid": jid})
    host = (system or platform.system)()
    if host != "FreeBSD":
        raise JetpackError("cannot attach to jail %d: jail_attach(2) exists only on FreeBSD and this"
                           " host runs %s; run pods here with this platform's engine" % (jid, host or "?"))
    import ctypes
    libc = (load_libc or _load_libc)()
    attach = getattr(libc, "jail_attach", None)
    if attach is None:
        raise JetpackError("this C library has no jail_attach(2); is this FreeBSD's libc?")
    attach.argtypes = [ctypes.c_int]
    attach.restype = ctypes.c_int
    ctypes.set_errno(0)
    if attach(jid) != 0:
        code = ctypes.get_errno()
        hint = _ATTACH_HINTS.get(code, "see jail(2)")
        raise JetpackError("jail_attach(%d) failed: %s; %s" % (jid, os.strerror(code), hint))


def _write_file(directory: str, name: str, text: str, mode: int) -> None:
    """Replace directory/name atomically by a new file of this mode (never through a symlink)."""
    temp = ".%s.%d.tmp" % (name, os.getpid())
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dfd)
        try:
            os.fchmod(fd, mode)
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=dfd)
        except OSError:
            pass
        raise
    finally:
        os.close(dfd)


class FreeBSDEngine:
    """The Engine of docs/pods-design.md for FreeBSD jails.

    run(argv, stdin=None) -> (rc, stdout, stderr) is injectable (tests pass a fake); it runs the
    jail(8)/jls(8) commands and, through self.network (freebsd_network.FreeBSDNetwork), the
    ifconfig(8)/route(8)/pfctl(8) ones. tools maps a program's name to the one run (absolute paths
    by default, so PATH cannot substitute them). egress_if: the host interface NAT and published
    ports leave and arrive through, for networks that do not name their own ("egress_if").
    """

    name = "freebsd"
    fork_after_attach = False   # jail_attach(2) enters no PID namespace: no second fork needed

    def __init__(self, run=None, tools=None, load_libc=None, system=None, egress_if=None):
        self.run = run or run_command
        self.tools = dict(TOOLS, **(tools or {}))
        self.load_libc = load_libc
        self.system = system
        self.egress_if = None if egress_if is None else freebsd_network.interface_name(egress_if, "egress_if")
        self.network = freebsd_network.FreeBSDNetwork(run=run, tools=tools)

    def check(self, argv) -> str:
        """Run one declared command; its stdout, or the typed error of error_for."""
        argv = [self.tools.get(argv[0], argv[0])] + list(argv[1:])
        rc, out, err = self.run(argv)
        if rc != 0:
            raise error_for(argv, rc, out, err)
        return out

    def prepare(self, record, mounts=None) -> None:
        """Write jail.conf (0600) and fstab (0400) into the pod directory, and create the
        directories jail(8) mounts on (dev, and proc/sys for Linux apps) without following any
        symlink. mounts: the pod's mount plan (default: mount_plan(record))."""
        mounts = mount_plan(record) if mounts is None else list(mounts)
        conf = render_jail_conf(record)
        fstab = render_fstab(record, mounts)
        root = record["root"]
        directories = []
        devfs = _flag(jail_parameters(record), "mount.devfs")
        if devfs:
            directories.append("dev")          # jail(8) mount.devfs mounts on <path>/dev
        for app, rootfs in _apps(record, root):
            inside = rootfs[len(root) + 1:]
            if devfs:
                directories.append(inside + "/dev")
            if app.get("os") == "linux":
                directories.extend((inside + "/proc", inside + "/sys"))
        for directory in directories:
            beneath.makedirs(root, directory, MOUNTPOINT_MODE)
        pod_dir = record["pod_dir"]
        _write_file(pod_dir, CONF_FILE, conf, CONF_MODE)
        _write_file(pod_dir, FSTAB_FILE, fstab, FSTAB_MODE)

    def start(self, record) -> dict:
        """Create the pod's jail with its network: the host-side steps before `jail -c` (stale
        shared-IP aliases cleared, or the VNET epairs made), `jail -c` (jail(8) mounts the fstab
        entries and devfs, adds the aliases or moves the epairs in), then the pod's pf anchors.
        Everything is checked before the first command; a failed step undoes the earlier ones in
        reverse order. Returns {"jid", "name"}."""
        name = jail_name(record)
        for path in (conf_path(record), fstab_path(record)):
            if not os.path.isfile(path):
                raise NotFound("%s is missing: the pod was not prepared on this host; prepare"
                               " (recreate) the pod first" % path)
        plan = self._start_plan(record)
        undo = []
        try:
            # rctl(8) rules are keyed by the jail's name: in place before the jail exists, no process of
            # it ever runs unlimited. apply() probes RACCT first and says how to turn it on.
            if self._limits().apply(name, record.get("isolators") or {}):
                undo.append(lambda: self._limits().remove(name))
            if plan.mode == "shared":
                self.network.clear_stale_aliases(plan.networks)
            elif plan.mode == "vnet":
                self.network.create_pod_interfaces(name, plan.networks)
                undo.append(lambda: self.network.destroy_pod_interfaces(name, plan.networks))
            jid = self._create_jail(record, plan)
            undo.append(lambda: self._remove_jail(record))
            if plan.ports:
                undo.append(lambda: self.network.unpublish(name))
                self.network.publish(name, plan.ports, plan.egress_if)
        except BaseException:
            _undo(undo)
            raise
        return {"jid": jid, "name": name}

    def _start_plan(self, record) -> StartPlan:
        """What start does besides `jail -c`, checked whole (InvalidInput) before anything runs."""
        entries = network_entries(record)
        mode = network_mode(record)
        freebsd_network.pod_networks_of(entries)
        if mode == "vnet":
            for i in range(len(entries)):
                freebsd_network.epair_names(jail_name(record), i)
        ports = freebsd_network.resolve_ports(record.get("ports"), entries) if record.get("ports") else []
        egress = None
        if ports:
            freebsd_network.render_filter_anchor(ports)
            egress = self.egress_of(entries[0], "pod %s publishes ports" % record.get("name"))
            freebsd_network.render_rdr_anchor(ports, egress)
        return StartPlan(mode, entries, ports, egress)

    def _limits(self) -> freebsd_limits.FreeBSDLimits:
        """The pod's rctl(8) rules, run through this engine's runner."""
        return freebsd_limits.FreeBSDLimits(run=self.run)

    def egress_of(self, network, why: str) -> str:
        """The network's "egress_if", else the engine's; InvalidInput saying what to set if neither."""
        value = network.get("egress_if") or self.egress_if
        if value is None:
            raise InvalidInput("%s, which needs the host interface that traffic of network %s leaves"
                               " and arrives through (pf.conf(5) nat/rdr 'on' an interface): give the"
                               " network an egress_if, such as em0 (the interface of the host's default"
                               " route), or configure the engine's egress_if" % (why, network.get("name")),
                               "egress_if")
        return freebsd_network.interface_name(value, "egress_if")

    def _create_jail(self, record, plan) -> int:
        """`jail -c` from the pod's jail.conf; the JID (asked of jls(8) if -i printed none)."""
        name = jail_name(record)
        argv = argv_create(conf_path(record), name)
        try:
            out = self.check(argv)
        except CommandError as e:
            raise _network_error(e) if plan.networks else e
        jid = parse_created_jid(out)
        if jid is None:                       # -i printed nothing usable: ask jls(8)
            status = self.status(record)
            if status is None or status.dying or status.jid is None:
                raise CommandError("jail(8) reported success but jail %s is not running; see"
                                   " `jls -d -j %s`" % (name, name), argv, 0)
            jid = status.jid
        return jid

    def _remove_jail(self, record) -> bool:
        """`jail -r` with the pod's own jail.conf; False when there was no such jail."""
        try:
            self.check(argv_remove(conf_path(record), jail_name(record)))
        except NotFound:
            return False
        return True

    def attach(self, record, context) -> None:
        """IN A FORKED CHILD: enter the pod's jail (jail_attach(2))."""
        jail_attach(_context_jid(context), self.load_libc, self.system)

    def stop(self, record, context) -> None:
        """Unpublish the pod's ports, remove the jail with its own jail.conf (so jail(8) unmounts
        devfs and the fstab entries and deletes the shared-IP aliases), then destroy its VNET
        epairs. A jail already gone is not an error: what a crash left of its network is removed.
        Every step is tried; the first failure is raised after the others."""
        name, conf = jail_name(record), conf_path(record)
        if isinstance(context, dict) and context.get("name") not in (None, name):
            raise InvalidInput("context names jail %r, not this pod's %s" % (context.get("name"), name),
                               "context")
        for path in (conf, fstab_path(record)):
            if not os.path.isfile(path):
                raise NotFound("cannot stop jail %s cleanly: %s is missing, and without it jail(8)"
                               " would not unmount the pod's volumes; prepare the pod's files again"
                               " and retry" % (name, path))
        entries, mode = network_entries(record), network_mode(record)
        errors = []
        if record.get("ports"):
            _attempt(errors, self.network.unpublish, name)
        removed = _attempt(errors, self._remove_jail, record)
        if removed is not None and freebsd_limits.rules(name, record.get("isolators") or {}):
            _attempt(errors, self._limits().remove, name)   # rules outlive the jail (rctl(8))
        if removed is not None and mode == "vnet":
            _attempt(errors, self.network.destroy_pod_interfaces, name, entries)
        if removed is False and mode == "shared":    # no `jail -r` deleted its aliases
            _attempt(errors, self.network.clear_stale_aliases, entries)
        if errors:
            raise errors[0]

    def status(self, record):
        """JailStatus of the pod's jail (dying included), or None when there is none."""
        name = jail_name(record)
        argv = argv_status(name)
        try:
            out = self.check(argv)
        except NotFound:
            return None
        try:
            jails = parse_jls(out)
        except ValueError as e:
            raise CommandError("unexpected output from %s: %s; report it with the output"
                               % (shlex.join(argv), e), argv, 0, out) from e
        for jail in jails:
            if jail.name == name:
                return jail
        return None

    def running(self, record, context) -> bool:
        """True while the pod's jail exists and is not dying (and is the one `start` made)."""
        status = self.status(record)
        if status is None or status.dying:
            return False
        jid = context.get("jid") if isinstance(context, dict) else None
        return jid is None or status.jid == jid

    # --- networks, as pods.py asks for them (see network.py and freebsd_network.py) -------------

    def addresses_in_use(self) -> set:
        """Every address configured on the host (`ifconfig -a`): never leased to a pod."""
        return self.network.host_addresses()

    def check_ports(self, ports) -> None:
        """Refuse ports pf cannot redirect (sctp, bad numbers, one host port to two places) and a
        host_ip that is not an address of this host. ports: pods.py's, with the pod's "address"."""
        freebsd_network.redirects([dict(p, pod_ip=p.get("address"), pod_ip6=p.get("address6")) for p in ports])
        wanted = sorted({p["host_ip"] for p in ports if p.get("host_ip") not in (None, "", "0.0.0.0", "::")})
        if wanted:
            host = self.addresses_in_use()
            missing = [address for address in wanted if address not in host]
            if missing:
                raise InvalidInput("host_ip %s is not an address of this host: use one it has"
                                   " (`ifconfig -a`), or leave host_ip out to publish on the egress"
                                   " interface" % ", ".join(missing), "host_ip")

    def sync_networks(self, networks, ports, unused) -> None:
        """Host side of the networks in use: each one's loopback (shared) or bridge (vnet) and
        its NAT anchor; the networks no pod uses any more lose both. Every network in use is
        checked (mode, names, egress interface when NAT is on) before anything runs, and pf's
        hooks are checked once when pf has work to do. ports: every published port (pods.py)."""
        plans = [self._network_plan(net) for net in networks]
        if ports or any(egress for _net, _mode, egress in plans):
            self.network.check_hooks()
        for net, mode, egress in plans:
            self.network.ensure_network(net, mode)
            self.network.apply_nat(net, egress)
        for net in unused:
            self.network.remove_network(net)

    def _network_plan(self, net) -> tuple:
        """(network, mode, egress interface or None when NAT is off), all checked."""
        name = freebsd_network.network_name(net.get("name"), "networks.name")
        mode = freebsd_network.network_mode(net)
        freebsd_network.network_interface(net)
        egress = None
        if net.get("nat", True):
            egress = self.egress_of(net, "network %s has NAT on" % name)
            freebsd_network.render_nat_anchor(net, egress)
        return net, mode, egress


def _attempt(errors: list, step, *args):
    """step(*args)'s result; on a JetpackError, None after appending the error to errors."""
    try:
        return step(*args)
    except JetpackError as e:
        errors.append(e)
        return None


def _undo(steps) -> None:
    """Undo what a failed start did, latest first; a step that fails too does not stop the rest."""
    for step in reversed(steps):
        try:
            step()
        except JetpackError:
            pass


def _network_error(error: CommandError) -> CommandError:
    """A failed `jail -c` of a pod on networks: freebsd_network's reading when it has a specific
    one (an epair that could not be moved in, an address already there), else error."""
    specific = freebsd_network.error_for(error.argv, error.rc, error.stdout, error.stderr)
    return error if specific.__class__ is CommandError else specific
