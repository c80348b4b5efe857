"""FreeBSD pod networking: jail(8) network parameters, ifconfig(8)/route(8) and pfctl(8) command
lines, the pf anchors jetpack owns, and parsers for what those tools print.

Two modes, chosen per network (a jail is one or the other, never both):

- "shared" (the default), shared IP: every network is a cloned loopback interface on the host (its
  name: the network's "interface", else its "bridge" from network.py, else "jp-" + name). The pod's
  address is an alias on it that jail(8) itself adds before creating the jail and deletes after
  removing it (`ip4.addr = 'jp-default|172.23.0.2/32'`, jail(8) "Jail Parameters" ip4.addr;
  usr.sbin/jail/command.c runs `ifconfig IF inet ADDR alias` / `-alias`). The jail shares the host's
  stack and may use only its own addresses.
- "vnet": the jail has its own network stack (jail(8) vnet). Each network is an if_bridge(4) on
  the host carrying the network's gateway address; each pod gets one epair(4) per network: the
  host side ("e<i>a_<11 hex of the pod>") joins the bridge, and the jail side ("e<i>b_...") is moved
  in by jail(8) (vnet.interface). jail(8) refuses a VNET jail any ip4/ip6 parameter ("vnet jails
  cannot have IP address restrictions", kern_jail.c tests PR_IP4_USER | PR_IP6_USER, which even
  ip4=disable sets), so those are dropped. /dev/pf comes with devfs ruleset 5, devfsrules_jail_vnet
  (outputs/devfs-rules-defaults-1).

How the VNET jail's side gets its addresses, and why it is exec.poststart with `ifconfig -j`:

- a pod root is not a FreeBSD userland (apps live in app/<name>/rootfs), so there is no
  /sbin/ifconfig to run inside the jail, and exec.start cannot work anyway: with exec.clean (an
  engine default) jail(8) looks the user up in the JAIL's passwd after jail_attach(2)
  (command.c run_command -> get_user_info) and the pod root has none;
- jail(8) runs exec.poststart on the host after it moved vnet.interface into the jail (create
  order: jail_set, exec.created, vnet.interface, exec.start, exec.poststart; commands.md section 1);
  `ifconfig -j JAIL` and `route -j JAIL` (FreeBSD 13.3 and later) then configure the jail's stack with
  the host's own binaries: nothing inside the pod is executed or trusted;
- when an exec.poststart command fails, jail(8) removes the jail again (created / failed / removed,
  outputs/jail-c-error-5): a pod never runs half-addressed;
- jail(8) runs a command with no shell metacharacter directly (split on whitespace, execvp), never
  through sh(1) (command.c run_command); each command here is an argv list whose tokens are checked
  to hold neither whitespace nor one of !"$&'()*;<>?[\\]`{|}~.

Host-side steps stay out of jail.conf. They are the declared argv lists of the argv_* functions, run
by FreeBSDNetwork before `jail -c` and after `jail -r`. `ifconfig epair create` reports the new
name only on stdout (ifconfig(8) create), which jail.conf cannot capture without a shell, and a
failing exec.poststop would make `jail -r` fail.

NAT and published ports are pf rules in anchors under "jetpack/" that this module loads with
`pfctl -a jetpack/<name> -f -` and flushes with `pfctl -a jetpack/<name> -F all`. jetpack never edits
the operator's pf.conf. The operator (or the host role) adds the three hook lines of
anchor_hooks() once, and pf evaluates every anchor attached under "jetpack" in alphabetical order
(pf.conf(5) ANCHORS). Per the Bastille lesson (PR #1565: `rdr pass` skipped the operator's
block rules), redirects and filter rules are split. The rdr anchor has no "pass", and the filter
anchor passes only what the rdr rules tagged, without "quick", so the operator's own rules still
decide. IPv4 is translated (NAT); an IPv6 prefix is routed, not translated.

Nothing here runs on import; the module imports (and its pure parts are tested) on Linux.
Manual pages cited: jail(8), ifconfig(8), route(8), pfctl(8), pf.conf(5), devfs.rules(5);
shared/reference/freebsd/commands.md sections 1, 7, 10 and 11 summarise them.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
from collections import namedtuple

from ..errors import AlreadyExists, CommandError, InvalidInput, JetpackError, NotFound

TOOLS = {"ifconfig": "/sbin/ifconfig", "pfctl": "/sbin/pfctl", "route": "/sbin/route"}
MODES = ("shared", "vnet")            # network modes; a pod may also be "none" or "host"
POD_MODES = MODES + ("none", "host")
ANCHOR_ROOT = "jetpack"
VNET_DEVFS_RULESET = "5"              # devfs.rules(5) devfsrules_jail_vnet: ruleset 4 plus /dev/pf
MAX_VNET_NETWORKS = 10                # the epair names hold one decimal digit for the network
RDR_TAG = "jetpack_rdr"              # pf.conf(5) "tag"/"tagged": marks packets our rdr rules moved
LOOPBACK4 = "127.0.0.1/8"             # what a FreeBSD lo0 carries (outputs/ifconfig-lo0-vnet-1)
LOOPBACK6 = "::1/128"

# The jail(8) parameters this module decides for a pod with networks: the engine refuses them as
# user overrides of such a pod ("set by the pod's networks"), as it refuses its other own parameters.
NETWORK_PARAMETERS = ("ip4", "ip4.addr", "ip6", "ip6.addr", "interface", "vnet", "vnet.interface")

_JAIL_NAME = re.compile(r"jetpack-[0-9a-f]{32}")
_NETWORK_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?")
# IFNAMSIZ is 16 with the NUL; a leading letter keeps a name from being read as an option; letters,
# digits, '_', '.' and inner '-' make one word in an argv and in a pf.conf(5) rule, free of the
# characters pf.conf(5) gives a meaning (whitespace, quotes, $ ( ) { } < > ! = / # , :).
_IFNAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,14}")
_PF_RESERVED = {"all", "any", "self", "no-route", "urpf-failed", "on", "from", "to", "port", "proto",
                "inet", "inet6", "tag", "tagged", "pass", "quick", "in", "out", "log"}
_ANCHOR = re.compile(ANCHOR_ROOT + r"/(?:nat|rdr|filter)-[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# command.c (run_command): a command holding one of these goes through /bin/sh -c.
_SHELL_META = set("!\"$&'()*;<>?[\\]`{|}~")
_CREATED_EPAIR = re.compile(r"(epair\d+)a")

PodNetwork = namedtuple("PodNetwork", "name interface address prefixlen gateway address6 prefixlen6 gateway6")
Redirect = namedtuple("Redirect", "family protocol host_ip host_port pod_ip pod_port")
Interface = namedtuple("Interface", "name flags mtu inet inet6 groups members")
PfTranslation = namedtuple(
    "PfTranslation", "action negated pass_ interface family proto source source_port destination"
                     " destination_port tag tagged target target_port options")


# --- validation -----------------------------------------------------------------------------------

def jail_key(jail) -> str:
    """The 32 hex digits of a jetpack jail name ("jetpack-" + pod UUID hex, engines/freebsd.py)."""
    if not isinstance(jail, str) or not _JAIL_NAME.fullmatch(jail):
        raise InvalidInput("%r is not a jetpack jail name (jetpack-<32 hex digits>)" % (jail,), "jail")
    return jail[len("jetpack-"):]


def network_name(value, field: str = "name") -> str:
    if not isinstance(value, str) or not _NETWORK_NAME.fullmatch(value):
        raise InvalidInput("network name %r must be 1 to 12 lowercase letters, digits or inner '-'"
                           " (it names the pf anchor and the interface jp-<name>)" % (value,), field)
    return value


def interface_name(value, field: str = "interface") -> str:
    """An interface name ifconfig(8) and pf.conf(5) both take as one word, never as an option."""
    if not isinstance(value, str) or not _IFNAME.fullmatch(value) or value.endswith(("-", ".")) or \
            value.lower() in _PF_RESERVED:
        raise InvalidInput("interface name %r is not usable: give 1 to 15 letters, digits, '_', '.' or"
                           " inner '-', starting with a letter (for example em0, vtnet0 or jp-default)"
                           % (value,), field)
    return value


def _address(value, version: int, field: str, loopback: bool = False) -> str:
    """One host address written in its canonical form (so that it reads one way everywhere)."""
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None or address.version != version or str(address) != value:
        raise InvalidInput("%s %r is not an IPv%d address in canonical form (such as %s)"
                           % (field, value, version, "172.23.0.2" if version == 4 else "fd00:23::2"), field)
    if address.is_unspecified or address.is_multicast or (address.is_loopback and not loopback) or \
            (version == 6 and address.is_link_local):
        raise InvalidInput("%s %s is an unspecified, multicast, loopback or link-local address, which"
                           " cannot be used here; give a unicast address" % (field, value), field)
    return value


def _subnet(value, version: int, field: str):
    try:
        subnet = ipaddress.ip_network(value, strict=True) if isinstance(value, str) else None
    except ValueError:
        subnet = None
    if subnet is None or subnet.version != version or str(subnet) != value:
        raise InvalidInput("%s %r is not an IPv%d network in canonical form (such as %s)"
                           % (field, value, version, "172.23.0.0/16" if version == 4 else "fd00:23::/64"),
                           field)
    return subnet


def _inside(address: str, subnet, field: str) -> None:
    ip = ipaddress.ip_address(address)
    if ip not in subnet or (subnet.version == 4 and subnet.prefixlen < 31 and
                            ip in (subnet.network_address, subnet.broadcast_address)):
        raise InvalidInput("%s %s is not a host address of %s" % (field, address, subnet), field)


def network_interface(network, field: str = "interface") -> str:
    """The host interface of a network: its "interface" if given (an operator's own, such as the
    lo1 of Jetpack hosts), else its "bridge" (network.py: "jp-" + name), else "jp-" + name."""
    ifname = network.get("interface")
    if ifname is None:
        ifname = network.get("bridge")
    if ifname is None:
        ifname = "jp-" + network_name(network.get("name"))
    return interface_name(ifname, field)


def network_mode(network) -> str:
    mode = (network or {}).get("mode") or "shared"
    if mode not in MODES:
        raise InvalidInput("network mode %r must be one of %s" % (mode, ", ".join(MODES)), "mode")
    return mode


def pod_mode(pod_networks, default: str = "shared") -> str:
    """The pod's mode from its networks' own: all "shared" or all "vnet" (a jail has one stack)."""
    modes = {}
    for i, entry in enumerate(pod_networks or []):
        if not isinstance(entry, dict):
            raise InvalidInput("networks[%d] must be a mapping" % i, "networks[%d]" % i)
        modes.setdefault(network_mode(dict(entry, mode=entry.get("mode") or default)), []).append(
            str(entry.get("name", i)))
    if len(modes) > 1:
        raise InvalidInput("a jail has either its own network stack (vnet) or the host's (shared):"
                           " this pod joins vnet networks (%s) and shared networks (%s); put it on"
                           " networks of one kind" % (", ".join(modes["vnet"]), ", ".join(modes["shared"])),
                           "networks")
    return next(iter(modes), default if pod_networks else "none")


def pod_network(entry, index: int = 0) -> PodNetwork:
    """One network of a pod: the network's definition (network.py: name, subnet, subnet6, gateway,
    gateway6, bridge; optionally interface) plus the pod's address (and address6) on it."""
    field = "networks[%d]" % index
    if not isinstance(entry, dict):
        raise InvalidInput("%s must be a mapping (a network and the pod's address on it)" % field, field)
    name = network_name(entry.get("name"), field + ".name")
    ifname = network_interface(entry, field + ".interface")
    address, prefixlen, gateway = _family(entry, field, 4, "")
    address6 = prefixlen6 = gateway6 = None
    if entry.get("address6") is not None:
        address6, prefixlen6, gateway6 = _family(entry, field, 6, "6")
    return PodNetwork(name, ifname, address, prefixlen, gateway, address6, prefixlen6, gateway6)


def _family(entry, field, version, suffix):
    """(address, prefix length, gateway) of one IP version: the address inside the subnet, not the gateway."""
    address = _address(entry.get("address" + suffix), version, field + ".address" + suffix)
    prefixlen = gateway = None
    if entry.get("subnet" + suffix) is not None:
        subnet = _subnet(entry["subnet" + suffix], version, field + ".subnet" + suffix)
        _inside(address, subnet, field + ".address" + suffix)
        prefixlen = subnet.prefixlen
        if entry.get("gateway" + suffix) is not None:
            gateway = _address(entry["gateway" + suffix], version, field + ".gateway" + suffix)
            _inside(gateway, subnet, field + ".gateway" + suffix)
            if gateway == address:
                raise InvalidInput("%s: the pod's address%s %s is the network's gateway%s; lease another"
                                   % (field, suffix, address, suffix), field + ".address" + suffix)
    return address, prefixlen, gateway


def pod_networks_of(pod_networks) -> list:
    if pod_networks is None:
        return []
    if not isinstance(pod_networks, (list, tuple)):
        raise InvalidInput("networks must be a list of the pod's networks", "networks")
    nets = [pod_network(entry, i) for i, entry in enumerate(pod_networks)]
    for key, what in (("name", "network"), ("interface", "interface"), ("address", "address"),
                      ("address6", "address6")):
        values = [getattr(n, key) for n in nets if getattr(n, key) is not None]
        for value in values:
            if values.count(value) > 1:
                raise InvalidInput("the pod lists %s %s twice; give each network once" % (what, value),
                                   "networks")
    return nets


def _mode(mode) -> str:
    if mode not in POD_MODES:
        raise InvalidInput("network mode %r must be one of %s" % (mode, ", ".join(POD_MODES)), "mode")
    return mode


def epair_names(jail, index: int) -> tuple:
    """(host side, jail side) of the pod's epair on its index-th network: "e<i>a_" / "e<i>b_" + 11
    hex digits of the pod, 15 characters (IFNAMSIZ). Renamed so that jail.conf can name the jail
    side before it exists, and so that stop finds the host side without state."""
    key = jail_key(jail)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_VNET_NETWORKS:
        raise InvalidInput("a VNET pod can join at most %d networks" % MAX_VNET_NETWORKS, "networks")
    return "e%da_%s" % (index, key[:11]), "e%db_%s" % (index, key[:11])


# --- jail(8) parameters ---------------------------------------------------------------------------

def _command(argv) -> str:
    """An exec.* command string jail(8) runs directly (no sh): whitespace-separated, checked tokens."""
    for token in argv:
        if not isinstance(token, str) or not token or re.search(r"[\s\x00-\x1f\x7f]", token) or \
                _SHELL_META.intersection(token):
            raise InvalidInput("command token %r would need a shell; jetpack only generates commands"
                               " jail(8) runs without one" % (token,), "networks")
    return " ".join(argv)


def vnet_poststart_argv(jail, pod_networks) -> list:
    """The host-side commands jail(8) runs as exec.poststart for a VNET pod, as argv lists (absolute
    paths: jail(8) runs them with exec.clean's PATH): lo0, then each network's jail-side epair,
    then the default route(s) through the first network that has a gateway."""
    nets = pod_networks_of(pod_networks)
    want6 = any(n.address6 for n in nets)
    commands = [argv_jail_address(jail, "lo0", LOOPBACK4)]
    if want6:
        commands.append(argv_jail_address(jail, "lo0", LOOPBACK6))
    for i, net in enumerate(nets):
        if net.prefixlen is None:
            raise InvalidInput("network %s needs its subnet for a VNET pod (the jail side's prefix"
                               " length)" % net.name, "networks[%d].subnet" % i)
        inside = epair_names(jail, i)[1]
        commands.append(argv_jail_address(jail, inside, "%s/%d" % (net.address, net.prefixlen)))
        if net.address6:
            if net.prefixlen6 is None:
                raise InvalidInput("network %s needs its subnet6 for the pod's IPv6 address on a VNET"
                                   " pod" % net.name, "networks[%d].subnet6" % i)
            commands.append(argv_jail_address(jail, inside, "%s/%d" % (net.address6, net.prefixlen6)))
    gateway = next((n.gateway for n in nets if n.gateway), None)
    if gateway:
        commands.append(argv_jail_default_route(jail, gateway))
    gateway6 = next((n.gateway6 for n in nets if n.gateway6 and n.address6), None)
    if gateway6:
        commands.append(argv_jail_default_route(jail, gateway6))
    return commands


def jail_network_parameters(pod_networks, mode: str = "shared", jail=None) -> list:
    """[(name, value)] of jail(8) network parameters for a pod; value None means "drop this
    parameter" (as the engine's overrides do), True a bare boolean, a list a jail.conf(5) list.

    mode "shared": ip4=new and ip4.addr 'IF|ADDR/32' per network (jail(8) adds and removes the
    alias on the network's loopback), ip6 likewise with /128, or ip6=disable without IPv6.
    mode "vnet" (jail= the jail name): ip4/ip6 dropped (kern_jail.c refuses them on a VNET jail),
    vnet, vnet.interface (the jail sides of the pod's epairs), devfs_ruleset 5 and the
    exec.poststart commands of vnet_poststart_argv. No networks, or mode "none": ip4 and ip6
    disable. mode "host": ip4 and ip6 inherit (the host's whole stack, an explicit choice only).
    """
    mode = _mode(mode)
    nets = pod_networks_of(pod_networks)
    if mode == "host":
        if nets:
            raise InvalidInput("a pod on the host's network joins no network; remove its networks or"
                               " choose shared or vnet", "networks")
        return [("ip4", "inherit"), ("ip6", "inherit")]
    if mode == "none" or not nets:
        return [("ip4", "disable"), ("ip6", "disable")]
    if mode == "shared":
        params = [("ip4", "new"), ("ip4.addr", ["%s|%s/32" % (n.interface, n.address) for n in nets])]
        addr6 = ["%s|%s/128" % (n.interface, n.address6) for n in nets if n.address6]
        params += [("ip6", "new"), ("ip6.addr", addr6)] if addr6 else [("ip6", "disable")]
        return params
    if jail is None:
        raise InvalidInput("VNET parameters name the jail in their commands: pass jail=<jail name>", "jail")
    jail_key(jail)
    if len(nets) > MAX_VNET_NETWORKS:
        raise InvalidInput("a VNET pod can join at most %d networks" % MAX_VNET_NETWORKS, "networks")
    return [
        ("ip4", None),
        ("ip6", None),
        ("vnet", True),
        ("vnet.interface", [epair_names(jail, i)[1] for i in range(len(nets))]),
        ("devfs_ruleset", VNET_DEVFS_RULESET),
        ("exec.poststart", [_command(argv) for argv in vnet_poststart_argv(jail, pod_networks)]),
    ]


def _canonical(name: str) -> str:
    """jail(8) reads "nofoo" / "a.nofoo" as foo / a.foo = false: the parameter a name sets."""
    head, dot, last = name.rpartition(".")
    if last.startswith("no") and len(last) > 2:
        return head + dot + last[2:]
    return name


def apply_jail_parameters(params, network_params) -> list:
    """params with network_params applied: a parameter both set is replaced in place, a None value
    removes it, the others are appended in order. Meant for the engine's defaults, before the
    pod's own overrides are applied."""
    extra = {}
    for name, value in network_params:
        extra[_canonical(name)] = (name, value)
    result = []
    for name, value in params:
        key = _canonical(name)
        if key in extra:
            name, value = extra.pop(key)
        if value is not None:
            result.append((name, value))
    result.extend((name, value) for name, value in extra.values() if value is not None)
    return result


# --- ifconfig(8) / route(8) argv ------------------------------------------------------------------

def _with_prefix(value, field: str, loopback: bool = False):
    """'ADDR/LEN' -> (version, address, prefix length), refusing what is not exactly that."""
    address, slash, length = value.partition("/") if isinstance(value, str) else ("", "", "")
    if not slash or not length.isdigit() or length != str(int(length)):
        raise InvalidInput("%s %r must be an address with its prefix length, such as 172.23.0.1/16"
                           % (field, value), field)
    version = 6 if ":" in address else 4
    _address(address, version, field, loopback)
    if int(length) > (32 if version == 4 else 128):
        raise InvalidInput("%s %r: the prefix length is too long for IPv%d" % (field, value, version), field)
    return version, address, int(length)


def argv_probe(ifname) -> list:
    """ifconfig(8) IF: exit 0 and its description when it exists, else exit 1 and 'ifconfig:
    interface IF does not exist' (outputs/ifconfig-error-1)."""
    return ["ifconfig", interface_name(ifname)]


def argv_list_all() -> list:
    """ifconfig(8) -a: every interface and address of the host (for the addresses in use)."""
    return ["ifconfig", "-a"]


def argv_clone_loopback(ifname) -> list:
    """ifconfig(8) create + name: a new lo(4) clone renamed in the same invocation (then ifconfig
    prints nothing, ifconfig(8) create); what `sysrc cloned_interfaces+=lo1` does at boot."""
    return ["ifconfig", "lo", "create", "name", interface_name(ifname)]


def argv_create_bridge(ifname) -> list:
    """ifconfig(8) create + name: a new if_bridge(4) named after the network (prints nothing). A new
    bridge is not UP (outputs/ifconfig-bridge-1): argv_up follows."""
    return ["ifconfig", "bridge", "create", "name", interface_name(ifname)]


def argv_up(ifname) -> list:
    """ifconfig(8) IF up."""
    return ["ifconfig", interface_name(ifname), "up"]


def argv_destroy(ifname) -> list:
    """ifconfig(8) IF destroy: removes a cloned interface; for an epair both ends (commands.md s11)."""
    return ["ifconfig", interface_name(ifname), "destroy"]


def argv_alias_add(ifname, address_with_prefix) -> list:
    """ifconfig(8) alias: `ifconfig IF inet A/LEN alias`, or for IPv6 `ifconfig IF inet6 A
    prefixlen LEN alias` (commands.md s11)."""
    version, address, length = _with_prefix(address_with_prefix, "address")
    if version == 4:
        return ["ifconfig", interface_name(ifname), "inet", "%s/%d" % (address, length), "alias"]
    return ["ifconfig", interface_name(ifname), "inet6", address, "prefixlen", str(length), "alias"]


def argv_alias_remove(ifname, address) -> list:
    """ifconfig(8) -alias: `ifconfig IF inet A -alias` / `ifconfig IF inet6 A -alias`."""
    version = 6 if isinstance(address, str) and ":" in address else 4
    _address(address, version, "address")
    return ["ifconfig", interface_name(ifname), "inet6" if version == 6 else "inet", address, "-alias"]


def argv_epair_create() -> list:
    """ifconfig(8) epair create: prints the new a side, e.g. 'epair0a' (the b side is epair0b);
    source-derived, no recording (outputs/MISSING.md)."""
    return ["ifconfig", "epair", "create"]


def argv_rename(ifname, new_name) -> list:
    """ifconfig(8) IF name NEW."""
    return ["ifconfig", interface_name(ifname), "name", interface_name(new_name, "new name")]


def argv_bridge_addm(bridge, member) -> list:
    """ifconfig(8) / if_bridge(4) addm: add an interface to the bridge."""
    return ["ifconfig", interface_name(bridge, "bridge"), "addm", interface_name(member, "member")]


def argv_bridge_deletem(bridge, member) -> list:
    """ifconfig(8) / if_bridge(4) deletem: remove an interface from the bridge."""
    return ["ifconfig", interface_name(bridge, "bridge"), "deletem", interface_name(member, "member")]


def argv_jail_address(jail, ifname, address_with_prefix) -> list:
    """ifconfig(8) -j JAIL IF inet|inet6 A/LEN, run from the host inside the jail's vnet
    (FreeBSD 13.3+; FreeBSD's own tests do `ifconfig -j NAME lo0 inet 127.0.0.1/8`). The address
    also brings the interface up (ifconfig(8) up). Absolute path: run by jail(8)."""
    version, address, length = _with_prefix(address_with_prefix, "address", loopback=ifname == "lo0")
    jail_key(jail)
    return [TOOLS["ifconfig"], "-j", jail, interface_name(ifname), "inet6" if version == 6 else "inet",
            "%s/%d" % (address, length)]


def argv_jail_default_route(jail, gateway) -> list:
    """route(8) -j JAIL -n add -inet|-inet6 default GW: the jail's default route (FreeBSD 13.3+);
    -n: no name lookups. Absolute path: run by jail(8)."""
    version = 6 if isinstance(gateway, str) and ":" in gateway else 4
    _address(gateway, version, "gateway")
    jail_key(jail)
    return [TOOLS["route"], "-j", jail, "-n", "add", "-inet6" if version == 6 else "-inet", "default", gateway]


# --- pfctl(8) argv --------------------------------------------------------------------------------

def nat_anchor(name) -> str:
    """The anchor holding a network's NAT rule: jetpack/nat-<network>."""
    return "%s/nat-%s" % (ANCHOR_ROOT, network_name(name))


def rdr_anchor(jail) -> str:
    """The anchor holding a pod's rdr rules: jetpack/rdr-<32 hex>."""
    return "%s/rdr-%s" % (ANCHOR_ROOT, jail_key(jail))


def filter_anchor(jail) -> str:
    """The anchor holding the filter rules passing a pod's redirected ports: jetpack/filter-<32 hex>."""
    return "%s/filter-%s" % (ANCHOR_ROOT, jail_key(jail))


def _anchor_arg(anchor) -> str:
    """Only jetpack's own anchors: never the main ruleset (pfctl -f / -F all without -a replace or
    flush the host's rules, commands.md s10), never another tool's anchor."""
    if not isinstance(anchor, str) or not _ANCHOR.fullmatch(anchor):
        raise InvalidInput("%r is not one of jetpack's pf anchors (jetpack/nat-*, jetpack/rdr-*,"
                           " jetpack/filter-*)" % (anchor,), "anchor")
    return anchor


def argv_pf_load(anchor) -> list:
    """pfctl(8) -a ANCHOR -f -: replace the anchor's rules by those read on stdin, all or nothing
    (a syntax error loads nothing, outputs/pfctl-load-error-1)."""
    return ["pfctl", "-a", _anchor_arg(anchor), "-f", "-"]


def argv_pf_flush(anchor) -> list:
    """pfctl(8) -a ANCHOR -F all: with -a, only that anchor's rules, nat rules and tables are
    flushed; states and the rest only without -a (sbin/pfctl/pfctl.c, "if (!*anchorname)")."""
    return ["pfctl", "-a", _anchor_arg(anchor), "-F", "all"]


def argv_pf_show(anchor, kind: str = "nat") -> list:
    """pfctl(8) -a ANCHOR -P -s nat|rules: the anchor's translation (nat, rdr) or filter rules in
    pf's normalised form; -P prints ports as numbers (commands.md s10, outputs/pfctl-s-nat-1)."""
    if kind not in ("nat", "rules"):
        raise InvalidInput("kind %r must be nat or rules" % (kind,), "kind")
    return ["pfctl", "-a", _anchor_arg(anchor), "-P", "-s", kind]


def argv_pf_show_main(kind: str = "nat") -> list:
    """pfctl(8) -P -s nat|rules on the main ruleset: where the operator's anchor hooks show."""
    if kind not in ("nat", "rules"):
        raise InvalidInput("kind %r must be nat or rules" % (kind,), "kind")
    return ["pfctl", "-P", "-s", kind]


def argv_pf_anchors() -> list:
    """pfctl(8) -a jetpack -s Anchors: the anchors attached under jetpack (leftovers of removed
    pods). No recording exists (outputs/MISSING.md)."""
    return ["pfctl", "-a", ANCHOR_ROOT, "-s", "Anchors"]


def anchor_hooks() -> list:
    """The lines the operator (or the host role) adds to /etc/pf.conf once; jetpack never edits it.

    pf.conf(5) ANCHORS: nat-anchor / rdr-anchor / anchor evaluate the nat, rdr and filter rules of
    an anchor; a name ending in "/*" evaluates every anchor attached under it, alphabetically; a
    name with "/" must be double-quoted. pf.conf(5) STATEMENT ORDER: the first two go with the
    translation rules, the third among the filter rules, after the default block rules and before
    any rule that should override jetpack's passes (the last matching filter rule decides).
    """
    return ['nat-anchor "%s/*"' % ANCHOR_ROOT, 'rdr-anchor "%s/*"' % ANCHOR_ROOT, 'anchor "%s/*"' % ANCHOR_ROOT]


def missing_hooks(main_nat_text: str, main_rules_text: str) -> list:
    """The hook lines of anchor_hooks() absent from the main ruleset's `pfctl -s nat` / `-s rules`.

    Source-derived, not recorded: pfctl prints an anchor call as its rule, e.g.
    `nat-anchor "jetpack/*" all`; only the line's start is compared."""
    hooks = anchor_hooks()
    nat_lines = [line.strip() for line in (main_nat_text or "").splitlines()]
    rule_lines = [line.strip() for line in (main_rules_text or "").splitlines()]
    missing = []
    for hook, lines in ((hooks[0], nat_lines), (hooks[1], nat_lines), (hooks[2], rule_lines)):
        if not any(line == hook or line.startswith(hook + " ") for line in lines):
            missing.append(hook)
    return missing


# --- pf rules -------------------------------------------------------------------------------------

def _port(value, field: str) -> int:
    if isinstance(value, str) and value.isdigit() and value == str(int(value)):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput("%s %r must be a port number from 1 to 65535" % (field, value), field)
    return value


def _protocol(value, field: str) -> str:
    if value == "sctp":
        raise InvalidInput("%s sctp cannot be published: pf does not rewrite SCTP ports in rdr rules"
                           " (pf.conf(5) SCTP CONSIDERATIONS); use tcp or udp" % field, field)
    if value not in ("tcp", "udp"):
        raise InvalidInput("%s %r must be tcp or udp" % (field, value), field)
    return value


def resolve_ports(ports, pod_networks) -> list:
    """Published ports with the pod's address they go to: each port's "network" (default: the
    pod's first network) gives pod_ip and, when the pod has one there, pod_ip6."""
    nets = pod_networks_of(pod_networks)
    resolved = []
    for i, port in enumerate(ports or []):
        if not isinstance(port, dict):
            raise InvalidInput("ports[%d] must be a mapping" % i, "ports[%d]" % i)
        if not nets:
            raise InvalidInput("a pod on no network cannot publish ports; join a network first",
                               "ports[%d]" % i)
        wanted = port.get("network")
        net = nets[0] if wanted is None else next((n for n in nets if n.name == wanted), None)
        if net is None:
            raise InvalidInput("ports[%d] names network %r, which the pod does not join" % (i, wanted),
                               "ports[%d].network" % i)
        resolved.append(dict(port, pod_ip=net.address, pod_ip6=net.address6))
    return resolved


def redirects(ports) -> list:
    """[Redirect] for resolved ports, checked, de-duplicated and ordered: specific host addresses
    before "the egress interface's addresses", since the first matching rdr rule decides
    (pf.conf(5) TRANSLATION). A port with no host_ip (or 0.0.0.0 / ::) is published on the egress
    interface's addresses: IPv4, plus IPv6 when the pod has an IPv6 address."""
    found = {}
    for i, port in enumerate(ports or []):
        field = "ports[%d]" % i
        if not isinstance(port, dict):
            raise InvalidInput("%s must be a mapping" % field, field)
        host_port = _port(port.get("host_port"), field + ".host_port")
        pod_port = _port(port.get("pod_port"), field + ".pod_port")
        protocol = _protocol(port.get("protocol", "tcp"), field + ".protocol")
        pod_ip = _address(port.get("pod_ip"), 4, field + ".pod_ip")
        pod_ip6 = port.get("pod_ip6")
        if pod_ip6 is not None:
            _address(pod_ip6, 6, field + ".pod_ip6")
        host_ip = port.get("host_ip")
        if host_ip in (None, "", "0.0.0.0", "::"):
            if host_ip == "::" and not pod_ip6:
                raise InvalidInput("%s.host_ip :: publishes on IPv6, but the pod has no IPv6 address on"
                                   " that network" % field, field + ".host_ip")
            if host_ip == "0.0.0.0":
                families = [4]
            elif host_ip == "::":
                families = [6]
            else:
                families = [4, 6] if pod_ip6 else [4]
            targets = [(family, None) for family in families]
        else:
            version = 6 if isinstance(host_ip, str) and ":" in host_ip else 4
            _address(host_ip, version, field + ".host_ip")
            if version == 6 and not pod_ip6:
                raise InvalidInput("%s.host_ip %s is IPv6, but the pod has no IPv6 address on that"
                                   " network" % (field, host_ip), field + ".host_ip")
            targets = [(version, host_ip)]
        for family, address in targets:
            rule = Redirect("inet6" if family == 6 else "inet", protocol, address, host_port,
                            pod_ip6 if family == 6 else pod_ip, pod_port)
            key = rule[:4]
            if key in found and found[key] != rule:
                raise InvalidInput("host port %d/%s%s is published twice (to %s port %d and to %s port"
                                   " %d); publish it once" % (host_port, protocol,
                                                              " on " + address if address else "",
                                                              found[key].pod_ip, found[key].pod_port,
                                                              rule.pod_ip, rule.pod_port), field)
            found[key] = rule
    return sorted(found.values(), key=lambda r: (r.host_ip is None, r.family, r.protocol, r.host_port,
                                                 r.host_ip or ""))


_GENERATED = "# Generated by jetpack (engines/freebsd_network.py); do not edit: jetpack reloads it whole."


def render_nat_anchor(network, egress_if) -> str:
    """The rules of anchor jetpack/nat-<network>: outbound NAT of the network's IPv4 subnet through
    the egress interface; only a comment when the network's NAT is off (loading it empties the
    anchor). IPv6 is routed, not translated."""
    if not isinstance(network, dict):
        raise InvalidInput("network must be a mapping", "network")
    name = network_name(network.get("name"))
    subnet = _subnet(network.get("subnet"), 4, "subnet")
    egress = interface_name(egress_if, "egress_if")
    lines = ["# jetpack network %s (%s): outbound NAT through %s; anchor %s," % (name, subnet, egress,
                                                                                 nat_anchor(name)),
             '# evaluated from the operator\'s `nat-anchor "%s/*"` (pf.conf(5) ANCHORS).' % ANCHOR_ROOT,
             _GENERATED]
    if not network.get("nat", True):
        lines.append("# NAT is off for this network: no rule.")
        return "\n".join(lines) + "\n"
    lines += [
        "# pf.conf(5) TRANSLATION nat: from %s out through %s, the source becomes %s's address;"
        ' PARAMETERS: "(%s)" follows address changes, ":0" leaves out aliases (no round-robin).'
        % (subnet, egress, egress, egress),
        "nat on %s inet from %s to any -> (%s:0)" % (egress, subnet, egress),
    ]
    return "\n".join(lines) + "\n"


def render_rdr_anchor(ports, egress_if) -> str:
    """The rules of anchor jetpack/rdr-<pod>: one rdr rule per published port and address family.

    No "pass": pf.conf(5) TRANSLATION passes translated packets without the filter rules only with
    it, which is how `rdr pass` bypassed operators' block rules (Bastille PR #1565); here the filter
    rules still decide, and render_filter_anchor passes exactly what these rules "tag"."""
    egress = interface_name(egress_if, "egress_if")
    lines = ["# jetpack: a pod's published ports, redirected from %s to the pod (rdr anchor; the filter" % egress,
             '# rules passing them are in its filter anchor), evaluated from the operator\'s `rdr-anchor "%s/*"`.'
             % ANCHOR_ROOT,
             _GENERATED]
    for r in redirects(ports):
        to = r.host_ip or "(%s)" % egress
        lines.append('# pf.conf(5) TRANSLATION rdr: %s %s to %s port %d goes to %s port %d; no "pass": filter'
                     ' rules still apply; "tag" (GRAMMAR rdr-rule) marks it for the filter anchor.'
                     % (r.family, r.protocol, to, r.host_port, r.pod_ip, r.pod_port))
        lines.append("rdr on %s %s proto %s from any to %s port %d tag %s -> %s port %d"
                     % (egress, r.family, r.protocol, to, r.host_port, RDR_TAG, r.pod_ip, r.pod_port))
    return "\n".join(lines) + "\n"


def render_filter_anchor(ports) -> str:
    """The rules of anchor jetpack/filter-<pod>: pass the redirected connections in.

    pf.conf(5) TRANSLATION: filter rules see the translated address and port (the pod's);
    "tagged": only packets one of our rdr rules moved, not every packet to the pod's port; no
    "quick": the last matching rule decides (PACKET FILTERING), so the operator's rules placed after
    the `anchor "jetpack/*"` hook still block what they block."""
    lines = ["# jetpack: filter rules passing a pod's redirected ports (filter anchor), evaluated from",
             '# the operator\'s `anchor "%s/*"`.' % ANCHOR_ROOT,
             _GENERATED]
    seen = set()
    for r in redirects(ports):
        key = (r.family, r.protocol, r.pod_ip, r.pod_port)
        if key in seen:
            continue
        seen.add(key)
        lines.append('# pf.conf(5) PACKET FILTERING pass, "tagged": the redirected %s %s to %s port %d (TRANSLATION:'
                     ' filters see translated addresses); no "quick": later rules decide.'
                     % (r.family, r.protocol, r.pod_ip, r.pod_port))
        lines.append("pass in %s proto %s from any to %s port %d tagged %s"
                     % (r.family, r.protocol, r.pod_ip, r.pod_port, RDR_TAG))
    return "\n".join(lines) + "\n"


# --- parsing (pure) -------------------------------------------------------------------------------

_PORT_OPS = ("=", "!=", "<", "<=", ">", ">=")


def _number_or_text(value):
    return int(value) if value.isdigit() else value


def _take_group(tokens, i):
    """A "{ a, b }" list or a single token from tokens[i]; (text, next index)."""
    if tokens[i] != "{":
        return tokens[i], i + 1
    end = tokens.index("}", i)
    return " ".join(tokens[i:end + 1]), end + 1


def _take_port(tokens, i):
    """After "port": "= 8080", "8080", "2000:2004", "2000 >< 2004" -> (port or text, next index)."""
    if tokens[i] in _PORT_OPS:
        if tokens[i] == "=":
            return _number_or_text(tokens[i + 1]), i + 2
        return tokens[i] + " " + tokens[i + 1], i + 2
    if i + 2 < len(tokens) and tokens[i + 1] in ("<>", "><"):
        return " ".join(tokens[i:i + 3]), i + 3
    return _number_or_text(tokens[i]), i + 1


def parse_translation_rule(line: str) -> PfTranslation:
    """One nat/rdr/binat rule as pfctl(8) prints it (normalised: 'port = 2001', 'inet' added, pool
    options such as round-robin or static-port after the target). ValueError for anything else."""
    tokens = line.replace("{", " { ").replace("}", " } ").replace(",", " ").split()
    if not tokens:
        raise ValueError("an empty line is not a rule")
    try:
        i, negated = (1, True) if tokens[0] == "no" else (0, False)
        action = tokens[i]
        if action not in ("nat", "rdr", "binat"):
            raise ValueError("not a translation rule")
        i += 1
        passed = tokens[i] == "pass"
        if passed:
            i += 1
            if tokens[i] == "log":
                i += 1
                if tokens[i].startswith("("):
                    while not tokens[i].endswith(")"):
                        i += 1
                    i += 1
        interface = family = proto = source_port = destination_port = tag = tagged = None
        target = target_port = None
        if tokens[i] == "on":
            interface, i = _take_group(tokens, i + 1)
            if interface == "!":
                interface, i = "!" + tokens[i], i + 1
        if tokens[i] in ("inet", "inet6"):
            family, i = tokens[i], i + 1
        if tokens[i] == "proto":
            proto, i = _take_group(tokens, i + 1)
        if tokens[i] == "all":
            source, destination, i = "any", "any", i + 1
        else:
            if tokens[i] != "from":
                raise ValueError("no 'from'")
            source, i = _take_group(tokens, i + 1)
            if source == "!":
                source, i = "!" + tokens[i], i + 1
            if i < len(tokens) and tokens[i] == "port":
                source_port, i = _take_port(tokens, i + 1)
            if tokens[i] != "to":
                raise ValueError("no 'to'")
            destination, i = _take_group(tokens, i + 1)
            if destination == "!":
                destination, i = "!" + tokens[i], i + 1
            if i < len(tokens) and tokens[i] == "port":
                destination_port, i = _take_port(tokens, i + 1)
        while i < len(tokens) and tokens[i] in ("tag", "tagged"):
            if tokens[i] == "tag":
                tag = tokens[i + 1].strip('"')
            else:
                tagged = tokens[i + 1].strip('"')
            i += 2
        if i < len(tokens):
            if tokens[i] != "->":
                raise ValueError("unexpected %r" % tokens[i])
            target, i = _take_group(tokens, i + 1)
            if i < len(tokens) and tokens[i] == "port":
                target_port, i = _take_port(tokens, i + 1)
        options = tuple(tokens[i:])
    except (IndexError, ValueError) as e:
        raise ValueError("not a pfctl translation rule (%s): %r" % (e, line)) from None
    return PfTranslation(action, negated, passed, interface, family, proto, source, source_port,
                         destination, destination_port, tag, tagged, target, target_port, options)


def parse_pfctl_nat(text: str) -> list:
    """[PfTranslation] from `pfctl [-a ANCHOR] [-P] -s nat` stdout: one rule a line; an empty
    ruleset prints nothing (outputs/pfctl-s-nat-3). 'nat cleared' is -F's message on stderr, never
    part of this output. ValueError for a line that is not a translation rule."""
    return [parse_translation_rule(line) for line in (text or "").splitlines() if line.strip()]


def loaded_redirects(text: str) -> list:
    """The redirects of a `pfctl -a jetpack/rdr-<pod> -P -s nat` listing as Redirect tuples (host_ip
    None for a parenthesised interface), to compare with redirects(ports)."""
    found = []
    for rule in parse_pfctl_nat(text):
        if rule.action != "rdr" or rule.negated:
            continue
        dest = rule.destination
        host_ip = None if dest.startswith("(") or dest == "any" else dest
        found.append(Redirect(rule.family, rule.proto, host_ip, rule.destination_port, rule.target,
                              rule.target_port if rule.target_port is not None else rule.destination_port))
    return found


_IF_HEADER = re.compile(r"([^\s:]+): flags=([0-9a-fA-F]+)<([^>]*)>(?: metric (\d+))?(?: mtu (\d+))?")


def _netmask_length(mask: str) -> int:
    value = int(mask, 16) if mask.lower().startswith("0x") else int(ipaddress.IPv4Address(mask))
    return bin(value).count("1")


def parse_ifconfig(text: str) -> dict:
    """{name: Interface(name, flags, mtu, inet, inet6, groups, members)} from ifconfig(8) output.

    Detail lines are TAB-indented (spaces are accepted: issue renderings turn TABs into spaces,
    outputs/ifconfig-lo0-vnet-1); inet is ((address, prefix length), ...) from 'netmask 0x...',
    inet6 the same without the %scope; unknown detail lines are skipped. ValueError for a line
    that is neither a header nor a detail line (a prompt, a wrapper's text)."""
    found = {}
    current = None
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if current is None:
                raise ValueError("a detail line before any interface: %r" % line)
            words = line.split()
            if words[0] == "inet" and len(words) >= 2:
                length = 32
                if "netmask" in words:
                    length = _netmask_length(words[words.index("netmask") + 1])
                elif "/" in words[1]:
                    length = int(words[1].split("/")[1])
                current["inet"].append((words[1].split("/")[0], length))
            elif words[0] == "inet6" and len(words) >= 2:
                length = int(words[words.index("prefixlen") + 1]) if "prefixlen" in words else 128
                current["inet6"].append((words[1].split("%")[0].split("/")[0], length))
            elif words[0] == "groups:":
                current["groups"].extend(words[1:])
            elif words[0] == "member:" and len(words) >= 2:
                current["members"].append(words[1])
            continue
        header = _IF_HEADER.match(line)
        if not header:
            raise ValueError("not ifconfig output: %r" % line)
        current = {"name": header.group(1), "flags": tuple(f for f in header.group(3).split(",") if f),
                   "mtu": int(header.group(5)) if header.group(5) else None,
                   "inet": [], "inet6": [], "groups": [], "members": []}
        found[current["name"]] = current
    return {name: Interface(v["name"], v["flags"], v["mtu"], tuple(v["inet"]), tuple(v["inet6"]),
                            tuple(v["groups"]), tuple(v["members"])) for name, v in found.items()}


def host_addresses(text: str) -> set:
    """Every address configured on the host per `ifconfig -a`: what network.allocate(in_use=...)
    must never hand out."""
    addresses = set()
    for interface in parse_ifconfig(text).values():
        addresses.update(address for address, _length in interface.inet + interface.inet6)
    return addresses


def parse_created_epair(stdout: str) -> tuple:
    """(a side, b side) from `ifconfig epair create`'s stdout: one line, e.g. 'epair3a'.
    Source-derived (outputs/MISSING.md: no recording)."""
    lines = [line.strip() for line in (stdout or "").splitlines() if line.strip()]
    found = _CREATED_EPAIR.fullmatch(lines[-1]) if lines else None
    if not found:
        raise ValueError("`ifconfig epair create` printed %r, not the new interface's name (epairNa)"
                         % (stdout,))
    return found.group(1) + "a", found.group(1) + "b"


def parse_anchors(text: str) -> list:
    """Anchor paths from `pfctl -a jetpack -s Anchors`, one a line (pfctl indents them).
    Source-derived (no recording, outputs/MISSING.md)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


# --- errors ---------------------------------------------------------------------------------------

class InterfaceNotFound(NotFound, CommandError):
    """ifconfig(8): 'interface X does not exist'."""


class InterfaceExists(AlreadyExists, CommandError):
    """ifconfig(8): 'File exists' (a name, an address or a bridge membership already there)."""


class VnetUnsupported(CommandError):
    """ifconfig/route without -j (FreeBSD before 13.3), or a kernel without VIMAGE."""


class PfNotLoaded(CommandError):
    """pfctl(8): /dev/pf is missing (pf.ko not loaded)."""


class PfRulesRefused(CommandError):
    """pfctl(8) refused the rules read from stdin; nothing was loaded."""


class AnchorNotFound(NotFound, CommandError):
    """pfctl(8) has no ruleset for the anchor."""


class PfHooksMissing(JetpackError):
    """/etc/pf.conf lacks jetpack's anchor hooks: its anchors would never be evaluated."""

    def __init__(self, message: str, missing=()):
        super().__init__(message)
        self.missing = list(missing)

    def details(self) -> dict:
        return {"missing_pf_conf_lines": self.missing}


_NO_INTERFACE = re.compile(r"ifconfig: interface (\S+) does not exist$")
_BRDGADD = re.compile(r"ifconfig: BRDGADD (\S+): File exists$")
_VNET_MOVE = re.compile(r'^jail: (\S+): /sbin/ifconfig (\S+) vnet \S+: failed$')
_STDIN_LINE = re.compile(r"^stdin:(\d+): (.+)$")


def _lines(text: str) -> list:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def error_for(argv, rc, stdout, stderr, stdin=None) -> CommandError:
    """The typed error for a failed ifconfig(8)/route(8)/pfctl(8) command (or a jail(8) create that
    failed on the pod's network), from its stderr; the message says what to do. stdin: the rules
    fed to `pfctl -f -`, so that a 'stdin:N:' error quotes rule N."""
    lines = _lines(stderr)
    cmd = "(command: %s; exit status %s)" % (shlex.join(list(argv)), rc)
    shown = "; ".join(lines) or "no message"
    prog = os.path.basename(argv[0]) if argv else "command"

    def make(cls, msg):
        err = cls(msg + " " + cmd)
        err.argv, err.rc, err.stdout, err.stderr = list(argv), rc, stdout, stderr
        return err

    if any("/dev/pf: No such file or directory" in line for line in lines):
        return make(PfNotLoaded, "pf is not loaded on this host (%s): load it (`sysrc pf_enable=YES`,"
                    " `service pf start`) with an /etc/pf.conf holding jetpack's anchor hooks (%s)"
                    % (shown, ", ".join(anchor_hooks())))
    refused = [_STDIN_LINE.match(line) for line in lines]
    refused = [m for m in refused if m]
    if refused or any("pf rules not loaded" in line for line in lines):
        rules = (stdin or "").split("\n")
        quoted = []
        for m in refused:
            number = int(m.group(1))
            text = rules[number - 1] if 0 < number <= len(rules) else "?"
            quoted.append("line %d (%s): %s" % (number, m.group(2), text))
        return make(PfRulesRefused, "pfctl refused the rules jetpack generated and loaded none of them"
                    " (the anchor keeps its previous rules): %s. Check that the egress interface"
                    " exists on this host (`ifconfig -l`) and that the published ports and addresses"
                    " are right; if they are, report this as a jetpack bug with the lines quoted"
                    % ("; ".join(quoted) or shown))
    for line in lines:
        if "illegal option -- j" in line:
            return make(VnetUnsupported, "%s has no -j option: VNET pods need FreeBSD 13.3 or later"
                        " (ifconfig -j and route -j configure the jail from the host); upgrade, or put"
                        " the pod on shared (non-VNET) networks" % prog)
    for line in lines:
        found = _NO_INTERFACE.search(line)
        if found:
            name = found.group(1)
            moved = next((m for m in map(_VNET_MOVE.match, lines) if m and m.group(2) == name), None)
            if moved:
                return make(InterfaceNotFound, "jail(8) could not move %s into jail %s: the interface does"
                            " not exist, so the jail was removed again. The pod's epairs are created"
                            " before `jail -c` (FreeBSDNetwork.create_pod_interfaces); start the pod"
                            " through jetpack, not with jail(8) alone" % (name, moved.group(1)))
            if name.startswith("jp-"):
                return make(InterfaceNotFound, "the network interface %s does not exist: the network was"
                            " not set up on this host, or was removed; set up the network again"
                            " (FreeBSDNetwork.ensure_network) and retry" % name)
            return make(InterfaceNotFound, "interface %s does not exist on this host (%s): check the"
                        " name (`ifconfig -l` lists them)" % (name, shown))
    for line in lines:
        found = _BRDGADD.search(line)
        if found:
            return make(InterfaceExists, "%s is already a member of a bridge (%s): remove it from that"
                        " bridge (`ifconfig BRIDGE deletem %s`) or destroy the stale interface, then"
                        " retry" % (found.group(1), shown, found.group(1)))
    for line in lines:
        if line.endswith("File exists"):
            return make(InterfaceExists, "%s: it already exists (%s); a previous start or stop did not"
                        " finish: remove the stale interface or address and retry" % (prog, shown))
    for line in lines:
        if "DIOCGETRULES" in line and "Invalid argument" in line:
            # outputs/pfctl-load-error-1 notes this 'typically appears when listing an anchor that
            # has no ruleset yet' and that this is not verified: a NotFound the caller may accept.
            return make(AnchorNotFound, "pf has no rules in this anchor (%s): nothing was loaded"
                        " there yet" % shown)
    return make(CommandError, "%s failed: %s. Fix the cause reported above and retry" % (prog, shown))


# --- running --------------------------------------------------------------------------------------

def run_command(argv, stdin=None):
    """Run argv without a shell, LC_ALL=C (the messages classified here), stdin text or nothing."""
    kwargs = {"input": stdin.encode("utf-8")} if stdin is not None else {"stdin": subprocess.DEVNULL}
    try:
        proc = subprocess.run(argv, capture_output=True, check=False, env=dict(os.environ, LC_ALL="C"),
                              **kwargs)
    except OSError as e:
        raise CommandError("cannot run %s: %s; FreeBSD networking needs FreeBSD's ifconfig(8) and"
                           " pfctl(8)" % (argv[0], e), argv) from e
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))


class FreeBSDNetwork:
    """Runs the declared commands above. run(argv, stdin=None) -> (rc, stdout, stderr) is
    injectable (tests pass a fake); tools maps ifconfig/pfctl/route to the programs run.

    Call order, as engines/freebsd.py wires it:
      sync_networks (pods.py, under the store lock, before a pod starts and after one leaves):
              check_hooks once when pf has work (pf evaluates nothing of jetpack's without the
              pf.conf hooks); per network in use ensure_network(net, mode), apply_nat(net,
              egress_if); per network no pod uses any more remove_network;
      start:  shared: clear_stale_aliases, `jail -c` (jail(8) adds the aliases), publish;
              vnet:   create_pod_interfaces, `jail -c` (jail(8) moves the jail sides in and runs
                      exec.poststart), publish; a failed step undoes the earlier ones in reverse;
      stop:   unpublish, `jail -r` (jail(8) deletes the shared-IP aliases, the epairs come back
              to the host), then destroy_pod_interfaces for vnet.
    """

    def __init__(self, run=None, tools=None):
        self.run = run or run_command
        self.tools = dict(TOOLS, **(tools or {}))

    def check(self, argv, stdin=None) -> str:
        argv = [self.tools.get(argv[0], argv[0])] + list(argv[1:])
        rc, out, err = self.run(argv, stdin)
        if rc != 0:
            raise error_for(argv, rc, out, err, stdin)
        return out

    # interfaces

    def interface(self, ifname):
        """Interface of ifname, or None when it does not exist."""
        try:
            out = self.check(argv_probe(ifname))
        except InterfaceNotFound:
            return None
        try:
            return parse_ifconfig(out).get(ifname)
        except ValueError as e:
            raise CommandError("unexpected output from ifconfig %s: %s; report it with the output"
                               % (ifname, e), argv_probe(ifname), 0, out) from e

    def host_addresses(self) -> set:
        return host_addresses(self.check(argv_list_all()))

    def ensure_network(self, network, mode: str = "shared") -> bool:
        """Create the network's loopback (shared) or bridge with its gateway address(es) (vnet)
        unless they exist; bring it up. True when something changed."""
        if mode not in MODES:
            raise InvalidInput("network mode %r must be one of %s" % (mode, ", ".join(MODES)), "mode")
        name = network_name((network or {}).get("name"))
        ifname = network_interface(network)
        kind, flag = ("lo", "LOOPBACK") if mode == "shared" else ("bridge", None)
        changed = False
        info = self.interface(ifname)
        if info is None:
            self.check(argv_clone_loopback(ifname) if mode == "shared" else argv_create_bridge(ifname))
            changed = True
            info = Interface(ifname, (), None, (), (), (kind,), ())
        elif kind not in info.groups and (flag is None or flag not in info.flags):
            raise InvalidInput("interface %s exists and is not a %s; network %s (%s) needs it: rename"
                               " the other interface or give the network another interface"
                               % (ifname, "loopback" if kind == "lo" else "bridge", name, mode), "interface")
        # The gateway is where the host service (metadata, DNS) listens for the network's pods: on
        # the bridge with the subnet's length (vnet), on the shared loopback as a host address (a
        # loopback alias is /32 or /128, as jail(8)'s own; commands.md s11).
        present = {address for address, _length in info.inet + info.inet6}
        for key, subnet_key, version in (("gateway", "subnet", 4), ("gateway6", "subnet6", 6)):
            if not network.get(key):
                continue
            subnet = _subnet(network.get(subnet_key), version, subnet_key)
            gateway = _address(network[key], version, key)
            length = subnet.prefixlen if mode == "vnet" else subnet.max_prefixlen
            if gateway not in present:
                self.check(argv_alias_add(ifname, "%s/%d" % (gateway, length)))
                changed = True
        if "UP" not in info.flags:
            self.check(argv_up(ifname))
            changed = True
        return changed

    def remove_network(self, network) -> None:
        """Flush the network's NAT anchor and destroy its interface when jetpack made it ("jp-")."""
        name = network_name((network or {}).get("name"))
        self.flush_anchor(nat_anchor(name))
        ifname = network_interface(network)
        if ifname.startswith("jp-"):
            try:
                self.check(argv_destroy(ifname))
            except InterfaceNotFound:
                pass

    def clear_stale_aliases(self, pod_networks) -> list:
        """Delete a shared-IP pod's addresses still on its loopbacks (left by `jail -R` or a crash:
        jail(8) would fail adding them again). The addresses are the pod's leases: nobody else's."""
        removed = []
        for net in pod_networks_of(pod_networks):
            info = self.interface(net.interface)
            if info is None:
                continue
            present = {address for address, _length in info.inet + info.inet6}
            for address in (net.address, net.address6):
                if address and address in present:
                    self.check(argv_alias_remove(net.interface, address))
                    removed.append(address)
        return removed

    def create_pod_interfaces(self, jail, pod_networks) -> list:
        """VNET: per network, an epair renamed to epair_names(jail, i), host side in the network's
        bridge and up; the jail side waits for jail(8)'s vnet.interface. A stale pair of the same
        name (from a crash) is destroyed first. On failure, what was made is destroyed again."""
        nets = pod_networks_of(pod_networks)
        made = []
        try:
            for i, net in enumerate(nets):
                host, inside = epair_names(jail, i)
                if self.interface(host) is not None:
                    self.check(argv_destroy(host))
                out = self.check(argv_epair_create())
                try:
                    side_a, side_b = parse_created_epair(out)
                except ValueError as e:
                    raise CommandError(str(e), argv_epair_create(), 0, out) from e
                made.append(side_a)
                self.check(argv_rename(side_a, host))
                made[-1] = host
                self.check(argv_rename(side_b, inside))
                self.check(argv_bridge_addm(net.interface, host))
                self.check(argv_up(host))
        except JetpackError:
            for name in made:
                try:
                    self.check(argv_destroy(name))
                except JetpackError:
                    pass
            raise
        return [epair_names(jail, i)[0] for i in range(len(nets))]

    def destroy_pod_interfaces(self, jail, pod_networks) -> None:
        """VNET: destroy the pod's epairs (both ends); one already gone is not an error."""
        for i in range(len(pod_networks_of(pod_networks))):
            try:
                self.check(argv_destroy(epair_names(jail, i)[0]))
            except InterfaceNotFound:
                pass

    # pf

    def load_anchor(self, anchor, rules: str) -> None:
        self.check(argv_pf_load(anchor), stdin=rules)

    def flush_anchor(self, anchor) -> None:
        """Empty one of jetpack's anchors; one without rules, or a pf not loaded at all (so with no
        anchor), already is."""
        try:
            self.check(argv_pf_flush(anchor))
        except (AnchorNotFound, PfNotLoaded):
            pass

    def show_anchor(self, anchor, kind: str = "nat") -> str:
        return self.check(argv_pf_show(anchor, kind))

    def apply_nat(self, network, egress_if) -> None:
        """Load the network's NAT anchor, or flush it when its NAT is off."""
        if network.get("nat", True):
            self.load_anchor(nat_anchor(network.get("name")), render_nat_anchor(network, egress_if))
        else:
            self.flush_anchor(nat_anchor(network_name(network.get("name"))))

    def publish(self, jail, ports, egress_if) -> None:
        """Load the pod's filter anchor, then its rdr anchor (never a redirect without its pass);
        with no ports, unpublish. ports: resolved (resolve_ports)."""
        if not ports:
            self.unpublish(jail)
            return
        self.load_anchor(filter_anchor(jail), render_filter_anchor(ports))
        self.load_anchor(rdr_anchor(jail), render_rdr_anchor(ports, egress_if))

    def unpublish(self, jail) -> None:
        """Flush the pod's rdr anchor, then its filter anchor."""
        self.flush_anchor(rdr_anchor(jail))
        self.flush_anchor(filter_anchor(jail))

    def redirects(self, jail) -> list:
        """The pod's redirects as pf has them loaded ([] when the anchor has none)."""
        try:
            out = self.show_anchor(rdr_anchor(jail), "nat")
        except AnchorNotFound:
            return []
        try:
            return loaded_redirects(out)
        except ValueError as e:
            raise CommandError("unexpected output from pfctl: %s; report it with the output" % e,
                               argv_pf_show(rdr_anchor(jail)), 0, out) from e

    def check_hooks(self) -> None:
        """PfHooksMissing unless /etc/pf.conf's loaded ruleset calls jetpack's anchors."""
        missing = missing_hooks(self.check(argv_pf_show_main("nat")), self.check(argv_pf_show_main("rules")))
        if missing:
            raise PfHooksMissing("pf does not evaluate jetpack's anchors: add %s to /etc/pf.conf (the"
                                 " anchor lines with the other translation rules, `anchor` among the"
                                 " filter rules) and reload it with `pfctl -f /etc/pf.conf`; jetpack"
                                 " never edits pf.conf" % " and ".join("'%s'" % line for line in missing),
                                 missing)
