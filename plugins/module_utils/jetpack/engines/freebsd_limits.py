"""FreeBSD pod limits through rctl(8), and where a FreeBSD pod reaches the metadata service.

Limits are RCTL rules on the jail (rctl(8) "RULE SYNTAX": subject:subject-id:resource:action=amount;
the subject is "jail", its id the jail name, as commands.md section 9 summarises):

    memory      jail:<jail>:memoryuse:deny=<bytes>     resident set size (rctl(8) RESOURCES)
    cpu         jail:<jail>:pcpu:deny=<percent>        percent of ONE core: 500m -> 50, 2 cores -> 200;
                                                        deny on pcpu throttles the jail
    processes   jail:<jail>:maxproc:deny=<count>
    open_files  jail:<jail>:openfiles:deny=<count>     file descriptor table size

Requests have no RCTL counterpart: only limits are enforced (isolators.plan reports the rest).
Rules are keyed by the jail's name and outlive the jail (commands.md section 9): apply() first
removes every rule of the jail, and removing a pod runs remove() again.

RACCT, the accounting under RCTL, is compiled into GENERIC but off unless the loader tunable
kern.racct.enable=1 is set at boot (rctl(4) LOADER TUNABLES); sysctl(8) cannot turn it on at run
time (outputs/sysctl-readonly-tunable-1). The probe is `sysctl -n kern.racct.enable`; sysctl(8)
-n prints the value alone. No recording of that output exists in shared/reference (MISSING.md
lists none): its parser accepts exactly "0" or "1" plus the newline, and anything else is an error.

Nothing here runs on import; the pure parts are tested on Linux (tests/unit/test_freebsd_limits.py).
"""
from __future__ import annotations

import os
import subprocess

from ..errors import CommandError, InvalidInput, JetpackError
from . import freebsd_network

TOOLS = {"rctl": "/usr/bin/rctl", "sysctl": "/sbin/sysctl"}
RESOURCES = (("memory", "memoryuse"), ("cpu", "pcpu"), ("processes", "maxproc"), ("open_files", "openfiles"))
RACCT_TUNABLE = "kern.racct.enable"
RACCT_DISABLED_TEXT = "RACCT/RCTL present, but disabled"   # outputs/rctl-disabled-1
HOW_TO_ENABLE = ("add kern.racct.enable=1 to /boot/loader.conf and reboot (it is a boot-time tunable: sysctl "
                 "cannot change it on a running system)")
ENFORCES = frozenset(key for key, _resource in RESOURCES)


class RacctDisabled(CommandError):
    """RCTL limits were asked for and the kernel's resource accounting is off."""


# --- rules and argv -----------------------------------------------------------------------------
def pcpu_percent(millicores: int) -> int:
    """rctl(8) pcpu is a percentage of a single core; round up so a small limit never becomes 0."""
    return max(1, -(-millicores // 10))


def rules(jail: str, limits: dict) -> list:
    """The RCTL rules for a jail's normalized limits (isolators.py), in RESOURCES order."""
    freebsd_network.jail_key(jail)  # a jetpack jail name: nothing else may reach rctl's argv
    amounts = {}
    if limits.get("memory"):
        amounts["memory"] = limits["memory"]["limit"]
    if limits.get("cpu"):
        amounts["cpu"] = pcpu_percent(limits["cpu"]["limit"])
    for key in ("processes", "open_files"):
        if limits.get(key):
            amounts[key] = limits[key]
    return ["jail:%s:%s:deny=%d" % (jail, resource, int(amounts[key])) for key, resource in RESOURCES if key in amounts]


def argv_add(rule: str) -> list:
    """rctl(8) -a rule: silent on success (commands.md section 9)."""
    return [TOOLS["rctl"], "-a", rule]


def argv_remove(jail: str) -> list:
    """rctl(8) -r filter: removes every rule matching jail:<jail>."""
    freebsd_network.jail_key(jail)
    return [TOOLS["rctl"], "-r", "jail:%s" % jail]


def argv_usage(jail: str) -> list:
    """rctl(8) -u filter: one resource=amount per line."""
    freebsd_network.jail_key(jail)
    return [TOOLS["rctl"], "-u", "jail:%s" % jail]


def argv_racct_probe() -> list:
    """sysctl(8) -n: the value alone."""
    return [TOOLS["sysctl"], "-n", RACCT_TUNABLE]


# --- parsing ----------------------------------------------------------------------------------
def parse_racct_enabled(stdout: str) -> bool:
    value = stdout.strip()
    if value not in ("0", "1"):
        raise JetpackError("unexpected answer %r from sysctl -n %s; this FreeBSD kernel may lack RACCT: "
                           "build it with options RACCT and RCTL" % (stdout, RACCT_TUNABLE))
    return value == "1"


def parse_usage(text: str) -> dict:
    """{resource: amount} from rctl -u (one resource=amount a line) or the raw comma-joined
    rctl_get_racct(2) string that rctl splits (usr.bin/rctl/rctl.c show_usage)."""
    usage = {}
    for item in text.replace(",", "\n").split():
        resource, sep, amount = item.partition("=")
        if not sep or not amount.isdigit():
            raise JetpackError("cannot read rctl usage entry %r" % item)
        usage[resource] = int(amount)
    return usage


def error_for(argv, rc: int, stdout: str, stderr: str) -> CommandError:
    if RACCT_DISABLED_TEXT in stderr:
        return RacctDisabled("resource limits need RACCT, which is off on this host: " + HOW_TO_ENABLE,
                             argv, rc, stdout, stderr)
    return CommandError("%s failed (exit %s): %s" % (" ".join(argv), rc, stderr.strip() or stdout.strip()),
                        argv, rc, stdout, stderr)


def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, check=False, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, LC_ALL="C"))
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


# --- running ------------------------------------------------------------------------------------
class FreeBSDLimits:
    """Runs the declared argv; run(argv) -> (rc, stdout, stderr) is injectable (tests pass a fake)."""

    def __init__(self, run=None):
        self.run = run or run_command

    def _check(self, argv) -> str:
        rc, out, err = self.run(argv)
        if rc != 0:
            raise error_for(argv, rc, out, err)
        return out

    def check_racct(self) -> None:
        if not parse_racct_enabled(self._check(argv_racct_probe())):
            raise RacctDisabled("the pod has resource limits and RACCT is off on this host: " + HOW_TO_ENABLE,
                                argv_racct_probe(), 0, "0\n", "")

    def apply(self, jail: str, limits: dict) -> list:
        """Make the jail's rules exactly those of limits; a failure leaves the jail with none. The rules."""
        wanted = rules(jail, limits)
        if not wanted:
            return []
        self.check_racct()
        self.remove(jail)
        try:
            for rule in wanted:
                self._check(argv_add(rule))
        except JetpackError:
            self.remove(jail)
            raise
        return wanted

    def remove(self, jail: str) -> None:
        self._check(argv_remove(jail))

    def usage(self, jail: str) -> dict:
        return parse_usage(self._check(argv_usage(jail)))


# --- the metadata service's address -----------------------------------------------------------
def metadata_addresses(pod_networks, mode: str) -> list:
    """[(interface, host address)] where the metadata service listens for a pod, per network mode.

    shared: the jail uses the host's stack, so the service listens on the network's gateway
    address put on the network's cloned loopback (jp-<name>), which the jail can reach and which
    no pod can take as its own. vnet: the gateway address of the network's bridge (what
    FreeBSDNetwork.ensure_network puts there), the host side of the pod's epair. none: no network,
    no service ([]). host: the host's loopback, where the jail's own 127.0.0.1 is the host's.
    """
    if mode == "none":
        return []
    if mode == "host":
        return [("lo0", "127.0.0.1")]
    if mode not in freebsd_network.MODES:
        raise InvalidInput("network mode %r must be one of %s" % (mode, ", ".join(freebsd_network.POD_MODES)), "mode")
    found = []
    for index, net in enumerate(freebsd_network.pod_networks_of(pod_networks)):
        if net.gateway is None:
            raise InvalidInput("network %s has no gateway address for the metadata service to listen on; give "
                               "the network its subnet and gateway" % net.name, "networks[%d].gateway" % index)
        found.append((net.interface, net.gateway))
    return found


def metadata_clients(pod_networks) -> list:
    """The pod's own addresses: the only sources the service accepts for its token."""
    found = []
    for net in freebsd_network.pod_networks_of(pod_networks):
        found.extend(a for a in (net.address, net.address6) if a)
    return found
