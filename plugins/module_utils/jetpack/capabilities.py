"""Linux capabilities of an app's process: appc's sets, computed and applied before execve.

appc (ace.md "os/linux/capabilities-remove-set") gives apps a default bounding set of 14
capabilities; a retain set replaces it, a remove set takes names out of it (a name outside the
default set has no effect). The final set is the process's bounding set, so no program it runs,
setuid or file-capable, can ever hold more.

The other sets, per capabilities(7) "Transformation of capabilities during execve()":
- an app running as uid 0 gets permitted = effective = inheritable = the final set (execve gives
  root the bounding set anyway; inheritable is narrowed too, so nothing is passed on beyond it);
- an app running as another uid loses every permitted and effective capability at setuid(2),
  as it would anywhere; only capabilities named in an explicit retain set are kept for it, as
  ambient capabilities (PR_CAP_AMBIENT), which execve turns into permitted and effective ones.
  The default set is never made ambient: an unprivileged user gets no privilege by default.

apply() runs in the forked child, as root, around the caller's switch of credentials:
PR_CAPBSET_DROP (needs CAP_SETPCAP, so before setuid), PR_SET_KEEPCAPS when ambient capabilities
must survive setuid, the switch, capset(2) with _LINUX_CAPABILITY_VERSION_3, PR_CAP_AMBIENT_RAISE,
and PR_SET_NO_NEW_PRIVS last. Everything comes from libc through ctypes (Python >= 3.9, stdlib only).
"""
from __future__ import annotations

import ctypes
import errno
import os
from collections import namedtuple

# include/uapi/linux/capability.h, up to CAP_CHECKPOINT_RESTORE (Linux 5.9).
CAPABILITIES = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}
NAMES = {number: name for name, number in CAPABILITIES.items()}
LAST_KNOWN = max(CAPABILITIES.values())

# ace.md: "The default set is defined by the following 14 capabilities".
DEFAULT_SET = frozenset(("CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_KILL",
                         "CAP_MKNOD", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID",
                         "CAP_SETPCAP", "CAP_SETFCAP", "CAP_SYS_CHROOT"))

PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Sets are frozensets of capability names; no_new_privileges a bool.
Plan = namedtuple("Plan", "bounding permitted effective inheritable ambient no_new_privileges")


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


# --- computing ------------------------------------------------------------------------------
def bounding_set(isolator=None) -> frozenset:
    """The final set of an app's normalized "capabilities" isolator ({"retain": [...]} or {"remove": [...]})."""
    if not isolator:
        return DEFAULT_SET
    if "retain" in isolator:
        return frozenset(isolator["retain"])
    return DEFAULT_SET - frozenset(isolator["remove"])


def compute(isolators: dict, uid: int) -> Plan:
    """Every set of the app's process from its normalized isolators (isolators.py) and the uid it runs as."""
    capabilities = isolators.get("capabilities")
    bounding = bounding_set(capabilities)
    if uid == 0:
        held, ambient = bounding, frozenset()
    else:
        ambient = frozenset((capabilities or {}).get("retain", ()))
        held = ambient
    return Plan(bounding, held, held, held, ambient, bool(isolators.get("no_new_privileges")))


def mask(names) -> int:
    value = 0
    for name in names:
        value |= 1 << CAPABILITIES[name]
    return value


def names_of(value: int) -> frozenset:
    """Capability names of a bit mask (bits the table does not know are named CAP_<n>)."""
    return frozenset(NAMES.get(bit, "CAP_%d" % bit) for bit in range(value.bit_length()) if value >> bit & 1)


def parse_status(text: str) -> dict:
    """{"CapBnd": frozenset of names, ..., "NoNewPrivs": bool} from /proc/<pid>/status."""
    result = {}
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            result[key] = names_of(int(value.strip(), 16))
        elif key == "NoNewPrivs":
            result[key] = value.strip() == "1"
    return result


# --- applying (in the child, before execve) ---------------------------------------------------
def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, "%s: %s" % (what, os.strerror(number)))


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    return _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(0),
                       ctypes.c_ulong(0))


def last_capability() -> int:
    """The kernel's highest capability number (a newer kernel may know more than our table)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return LAST_KNOWN


def drop_bounding(keep) -> None:
    """Drop every capability but `keep` from the bounding set (needs CAP_SETPCAP)."""
    kept = {CAPABILITIES[name] for name in keep}
    for number in range(last_capability() + 1):
        if number not in kept:
            _check(_prctl(PR_CAPBSET_DROP, number), "prctl(PR_CAPBSET_DROP, %s)" % NAMES.get(number, number))


def capget() -> tuple:
    """(effective, permitted, inheritable) masks of this thread."""
    header = _Header(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return tuple(data[0].__getattribute__(f) | data[1].__getattribute__(f) << 32
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _Header(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for index, shift in enumerate((0, 32)):
        data[index].effective = effective >> shift & 0xFFFFFFFF
        data[index].permitted = permitted >> shift & 0xFFFFFFFF
        data[index].inheritable = inheritable >> shift & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def raise_ambient(names) -> None:
    _check(_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    for name in sorted(names):
        _check(_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAPABILITIES[name]),
               "prctl(PR_CAP_AMBIENT_RAISE, %s)" % name)


def set_no_new_privs() -> None:
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)")


def apply(plan: Plan, switch_credentials=None) -> None:
    """Give this (root, forked) process the plan's sets; switch_credentials() does setgroups/setgid/setuid
    in between. Raises OSError naming the call that failed; the caller reports it and never execs."""
    drop_bounding(plan.bounding)
    if plan.ambient:
        _check(_prctl(PR_SET_KEEPCAPS, 1), "prctl(PR_SET_KEEPCAPS)")
    if switch_credentials is not None:
        switch_credentials()
    # capset may only lower what is held: never ask for more than the process has now.
    _effective, held, _inheritable = capget()
    permitted = mask(plan.permitted) & held
    capset(mask(plan.effective) & permitted, permitted, mask(plan.inheritable) & permitted)
    missing = plan.ambient - names_of(permitted)
    if missing:
        raise OSError(errno.EPERM, "cannot keep %s for the app: this process does not hold them"
                      % ", ".join(sorted(missing)))
    if plan.ambient:  # without, the capset above already emptied the ambient set (kept only if permitted)
        raise_ambient(plan.ambient)
    if plan.no_new_privileges:
        set_no_new_privs()
