"""Pod networks on Linux: a bridge per network, a veth pair per pod and network, one nftables table.

Host side, per network: a bridge named by the network (`net["bridge"]`), marked as jetpack's with
the interface alias `jetpack:network=<name>` (nothing without that mark is ever changed or deleted),
given a MAC address derived from its name (a bridge otherwise takes its lowest port's, which changes
as pods come and go) and the gateway address(es). Per pod and network: a veth pair whose host end,
`jpv` + 12 hex digits derived from the pod, is a port of the bridge; its other end is created
directly inside the pod's network namespace under its final name (eth0...), so it never exists on
the host under a name that could collide with a host interface. Inside, it gets the pod's
address(es) and, by default, the default route(s) through the gateway(s).

Rules live in one table the collection owns, `table inet jetpack`, regenerated from the full list of
networks and published ports (`render_ruleset`) and replaced in one nftables transaction
(`apply_ruleset`: add, delete and re-create the table in a single `nft -f -`): a syntax error, or
a rule the kernel refuses, changes nothing. Nothing else of the host's ruleset is read or written.
The chains:

- guard (filter, prerouting, priority raw): nothing coming from a pod may use 127.0.0.0/8. The
  bridges have route_localnet=1 (see below), which would otherwise let a pod reach the host's
  loopback-only services (CVE-2020-8558 in Kubernetes).
- forward (filter): replies and published ports go in; pods of one network reach each other; traffic
  between two jetpack networks is dropped; nothing else enters a NAT network (it is private). The
  chain's policy is accept: it never drops traffic that is not a pod's.
- prerouting and output (nat, priority -100): traffic to a local address (`fib daddr type local`)
  jumps to `published`, which DNATs each published port to its pod. Prerouting serves other hosts,
  output the host itself. `host_ip` restricts a port to one local address.
- postrouting (nat, srcnat): masquerade what leaves a NAT network's subnet through anything but its
  bridge; masquerade the host's 127.0.0.0/8 sources going to a published port (127.0.0.1 works thanks
  to route_localnet=1 on the bridge, an IPv4-only switch: [::1] cannot be published this way) and a
  pod reaching a published port of its own network (hairpin: the reply must come back through us).
  [::1] is left out of the DNAT: a client trying it first is refused at once and falls back to
  127.0.0.1, where a DNATed [::1] packet would be dropped and the client left waiting.

Forwarding: ensure_network turns on net.ipv4.ip_forward (and net.ipv6.conf.all.forwarding for a
network with IPv6) when off, and records what it turned on in the table's comment; remove_network,
once the last jetpack network is gone, deletes the table and reports what is still on (it turns it
back off only when asked: something else may have come to rely on it).

What the host must allow: a base chain of another table (firewalld, Docker's FORWARD policy DROP,
a hand-written nftables.conf) that drops forwarded traffic still drops it, as nftables runs every
table's chains; such a firewall must accept the jetpack bridges.

Commands are iproute2's `ip`, nftables' `nft` and util-linux's `nsenter`; every argv comes from a
pure `argv_*` function. Inside the pod, `nsenter --net=/proc/self/fd/N ip -batch -` configures the
interface in one process. nsenter rather than setns(2) in the child of a fork: no Python code runs
between fork and exec (a preexec_fn is unsafe in a threaded caller), every step stays a declared argv,
and the namespace is an fd opened once and checked not to be ours, so a reused holder pid cannot
make us configure the host.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import shlex
import socket
import subprocess
from collections import namedtuple

from ..errors import AlreadyExists, CommandError, InUse, InvalidInput, JetpackError, NotFound

FAMILY = "inet"
TABLE = "jetpack"
MARK = "jetpack:network="       # the bridge's ifalias: jetpack:network=<network name>
VETH_PREFIX = "jpv"
IFNAMSIZ = 15                   # usable bytes of a Linux interface name
PROTOCOLS = ("tcp", "udp")
LOOPBACK4 = "127.0.0.0/8"
FORWARDING = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}
COMMENT = "jetpack pod networks"
TURNED_ON = "; turned on "
TOOLS = {"ip": "iproute2", "nft": "nftables", "nsenter": "util-linux"}
PROC_SYS = "/proc/sys"
METADATA_PORT = 18112           # metadata.DEFAULT_PORT: the host service on each gateway (hostd.py)
DNS_PORT = 53

_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_COMMENT_TEXT = re.compile(r"[^A-Za-z0-9 ._:/@=,+-]")

Network = namedtuple("Network", "name bridge subnet gateway subnet6 gateway6 nat")
Port = namedtuple("Port", "protocol host_port pod_port host_ip address address6 pod")


# --- errors ----------------------------------------------------------------------------------

class NetworkNotFound(NotFound, CommandError):
    pass


class NetworkExists(AlreadyExists, CommandError):
    pass


def error_for(argv, rc, stdout, stderr, hint="") -> CommandError:
    """The typed error for a failed ip/nft/nsenter command; `hint` says what to do."""
    text = "; ".join(line.strip() for line in (stderr or stdout).strip().splitlines() if line.strip())
    cmd = "(command: %s; exit status %s)" % (shlex.join(argv), rc)
    if "Operation not permitted" in stderr:
        msg = "%s was refused: %s. Pod networks need root (CAP_NET_ADMIN) %s" % (_tool(argv), text, cmd)
        return _error(CommandError, msg, argv, rc, stdout, stderr)
    if "File exists" in stderr:
        cls = NetworkExists
    elif "does not exist" in stderr or "Cannot find device" in stderr or "No such file or directory" in stderr:
        cls = NetworkNotFound
    else:
        cls = CommandError
    msg = "%s failed: %s. %s %s" % (_tool(argv), text or "no message", hint or "Fix the cause above and retry", cmd)
    return _error(cls, msg, argv, rc, stdout, stderr)


def _error(cls, msg, argv, rc, stdout, stderr):
    err = cls(msg)
    err.argv, err.rc, err.stdout, err.stderr = list(argv), rc, stdout, stderr
    return err


def _tool(argv) -> str:
    """The command that really runs: `ip`, `nft`, or the one nsenter runs."""
    if argv and argv[0] == "nsenter" and "--" in argv:
        return argv[argv.index("--") + 1]
    return argv[0] if argv else "command"


# --- running ---------------------------------------------------------------------------------

def run(argv, input=None, pass_fds=()):
    """Run argv without a shell, LC_ALL=C so the messages are the ones recognised here.

    `input` (str) is written to stdin; `pass_fds` are inherited by the command (a namespace fd).
    Returns (rc, stdout, stderr).
    """
    try:
        proc = subprocess.run(argv, input=None if input is None else input.encode(),
                              stdin=subprocess.DEVNULL if input is None else None,
                              capture_output=True, check=False, pass_fds=tuple(pass_fds),
                              env=dict(os.environ, LC_ALL="C"))
    except OSError as e:
        tool = argv[0] if argv else "?"
        raise CommandError("cannot run %s: %s; install %s" % (tool, e.strerror, TOOLS.get(tool, tool)),
                           argv) from e
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def _check(argv, input=None, pass_fds=(), ok=(), hint="") -> str:
    """stdout of a successful command; a typed error otherwise (stderr texts in `ok` pass)."""
    rc, out, err = run(argv, input=input, pass_fds=pass_fds)
    if rc != 0 and not any(text in err for text in ok):
        raise error_for(argv, rc, out, err, hint)
    return out


# --- argv builders (pure) --------------------------------------------------------------------

def argv_link_show(name=None, kind=None) -> list:
    """ip-link(8): ip -j -d link show [dev NAME] [type KIND]"""
    return (["ip", "-j", "-d", "link", "show"] + (["dev", ifname_arg(name)] if name else [])
            + (["type", kind] if kind else []))


def argv_addr_show(name=None) -> list:
    """ip-address(8): ip -j addr show [dev NAME]"""
    return ["ip", "-j", "addr", "show"] + (["dev", ifname_arg(name)] if name else [])


def argv_bridges_show() -> list:
    """ip-address(8): ip -j -d addr show type bridge (every bridge: kind, alias, flags, addresses)"""
    return ["ip", "-j", "-d", "addr", "show", "type", "bridge"]


def argv_bridge_add(bridge, mac) -> list:
    """ip-link(8): ip link add name BRIDGE address MAC type bridge"""
    return ["ip", "link", "add", "name", ifname_arg(bridge), "address", mac, "type", "bridge"]


def argv_link_alias(name, alias) -> list:
    """ip-link(8): ip link set dev NAME alias ALIAS"""
    return ["ip", "link", "set", "dev", ifname_arg(name), "alias", alias]


def argv_link_up(name) -> list:
    """ip-link(8): ip link set dev NAME up"""
    return ["ip", "link", "set", "dev", ifname_arg(name), "up"]


def argv_link_del(name) -> list:
    """ip-link(8): ip link del dev NAME"""
    return ["ip", "link", "del", "dev", ifname_arg(name)]


def argv_addr_add(name, cidr, nodad=False) -> list:
    """ip-address(8): ip addr add ADDRESS/PREFIX dev NAME [nodad] (IPv6: usable at once, no DAD)"""
    return ["ip", "addr", "add", str(cidr), "dev", ifname_arg(name)] + (["nodad"] if nodad else [])


def argv_veth_add(host_ifname, bridge, ifname, netns) -> list:
    """ip-link(8): a veth pair, host end up on the bridge, peer created inside netns (a path)."""
    return ["ip", "link", "add", "name", ifname_arg(host_ifname), "up", "master", ifname_arg(bridge),
            "type", "veth", "peer", "name", ifname_arg(ifname), "netns", netns]


def argv_ip_batch() -> list:
    """ip(8): ip -batch - (commands on stdin, stops at the first failure)"""
    return ["ip", "-batch", "-"]


def argv_in_netns(netns, argv) -> list:
    """nsenter(1): run argv in the network namespace at path netns (only that namespace)."""
    return ["nsenter", "--net=" + netns, "--"] + list(argv)


def argv_nft_apply() -> list:
    """nft(8): nft -f - (one transaction: all of stdin or nothing)"""
    return ["nft", "-f", "-"]


def argv_nft_list_table() -> list:
    """nft(8): nft list table inet jetpack"""
    return ["nft", "list", "table", FAMILY, TABLE]


def argv_nft_list_chain_json(chain) -> list:
    """nft(8): nft -j list chain inet jetpack CHAIN"""
    return ["nft", "-j", "list", "chain", FAMILY, TABLE, chain]


def argv_ra_routes() -> list:
    """ip-route(8): the IPv6 routes learnt from router advertisements"""
    return ["ip", "-6", "-j", "route", "show", "proto", "ra"]


def pod_batch(ifname, address, prefixlen, gateway=None, address6=None, prefixlen6=None, gateway6=None) -> str:
    """The `ip -batch` input configuring a pod's interface (pure)."""
    lines = ["link set dev %s up" % ifname_arg(ifname),
             "addr add %s/%d dev %s" % (address, prefixlen, ifname)]
    if gateway:
        lines.append("route add default via %s dev %s" % (gateway, ifname))
    if address6:
        lines.append("addr add %s/%d dev %s nodad" % (address6, prefixlen6, ifname))
        if gateway6:
            lines.append("route add ::/0 via %s dev %s" % (gateway6, ifname))
    return "\n".join(lines) + "\n"


# --- validation (pure) -----------------------------------------------------------------------

def ifname_arg(name, field="ifname") -> str:
    """A Linux interface name: 1..15 bytes of letters, digits, _ . -, not starting with - or ."""
    if not isinstance(name, str) or len(name.encode()) > IFNAMSIZ or not _IFNAME.fullmatch(name):
        raise InvalidInput("invalid interface name %r: use 1 to %d letters, digits, '_', '.' or '-', starting"
                           " with a letter or digit (for a network, e.g. 'jp-' + a short name)"
                           % (name, IFNAMSIZ), field)
    return name


def network(net) -> Network:
    """Validate a network dict {name, bridge, subnet, gateway, subnet6?, gateway6?, nat} (pure)."""
    # Imported here: attach_pod, run by the supervisor of every networked pod, does without appc (~9 ms).
    from ..appc import validate_acname
    return _addressing(net, validate_acname(_as_dict(net).get("name"), "network.name"))


def _as_dict(net) -> dict:
    if not isinstance(net, dict):
        raise InvalidInput("a network is a dict with name, bridge, subnet, gateway, nat", "network")
    return net


def _addressing(net: dict, name: str) -> Network:
    """network() with the name taken as given (attach_pod: it only names the veth and the messages)."""
    field = "networks[%s]." % name
    bridge = ifname_arg(net.get("bridge"), field + "bridge")
    subnet = _subnet(net.get("subnet"), 4, field + "subnet", max_prefix=30)
    gateway = _member(subnet, net.get("gateway") or str(subnet.network_address + 1), field + "gateway")
    subnet6 = gateway6 = None
    if net.get("subnet6"):
        subnet6 = _subnet(net["subnet6"], 6, field + "subnet6", max_prefix=126)
        gateway6 = _member(subnet6, net.get("gateway6") or str(subnet6.network_address + 1), field + "gateway6")
    elif net.get("gateway6"):
        raise InvalidInput("network %s has gateway6 but no subnet6: give both or neither" % name, field + "gateway6")
    nat = net.get("nat", True)
    if not isinstance(nat, bool):
        raise InvalidInput("network %s: nat must be true or false, not %r" % (name, nat), field + "nat")
    return Network(name, bridge, subnet, gateway, subnet6, gateway6, nat)


def _subnet(value, version, field, max_prefix):
    try:
        subnet = ipaddress.ip_network(value, strict=True)
    except (TypeError, ValueError) as e:
        raise InvalidInput("%s: %r is not an IPv%d network in CIDR form (%s), e.g. %s"
                           % (field, value, version, e, "172.23.0.0/16" if version == 4 else "fd23::/64"),
                           field) from None
    if subnet.version != version or subnet.prefixlen > max_prefix:
        raise InvalidInput("%s: %s must be an IPv%d network of prefix length %d at most"
                           % (field, value, version, max_prefix), field)
    return subnet


def _member(subnet, value, field):
    """An address of subnet usable by a host: not its network address, not its broadcast address."""
    try:
        address = ipaddress.ip_address(value)
    except (TypeError, ValueError):
        raise InvalidInput("%s: %r is not an IP address" % (field, value), field) from None
    if address not in subnet or address == subnet.network_address or \
            (subnet.version == 4 and address == subnet.broadcast_address):
        raise InvalidInput("%s: %s is not a host address of %s; pick one inside it" % (field, address, subnet),
                           field)
    return address


def _pod_address(subnet, gateway, value, field):
    address = _member(subnet, value, field)
    if address == gateway:
        raise InvalidInput("%s: %s is the network's gateway; give the pod another address" % (field, address), field)
    return address


def port(value) -> Port:
    """Validate a published port dict (pure): {protocol, host_port, pod_port, host_ip?, address,
    address6?, pod?}; address(6) is the pod's address on the network the port leads to."""
    if not isinstance(value, dict):
        raise InvalidInput("a published port is a dict with protocol, host_port, pod_port, address", "ports")
    pod = _comment_text(str(value.get("pod") or ""))
    field = "ports[%s]" % (pod or value.get("host_port"))
    protocol = value.get("protocol", "tcp")
    if protocol not in PROTOCOLS:
        raise InvalidInput("%s: protocol %r is not supported; use tcp or udp" % (field, protocol), field + ".protocol")
    numbers = [_port_number(value.get(key), "%s.%s" % (field, key)) for key in ("host_port", "pod_port")]
    host_ip = None
    if value.get("host_ip"):
        try:
            host_ip = ipaddress.ip_address(value["host_ip"])
        except ValueError:
            raise InvalidInput("%s.host_ip: %r is not an IP address of this host" % (field, value["host_ip"]),
                               field + ".host_ip") from None
    try:
        address = ipaddress.IPv4Address(value.get("address"))
        address6 = ipaddress.IPv6Address(value["address6"]) if value.get("address6") else None
    except ValueError as e:
        raise InvalidInput("%s: the pod's address: %s" % (field, e), field + ".address") from None
    if host_ip is not None and host_ip == ipaddress.IPv6Address("::1"):
        raise InvalidInput("%s.host_ip: ::1 cannot be published, Linux never routes it off the host; use"
                           " 127.0.0.1 for a port reachable from this host only" % field, field + ".host_ip")
    if host_ip is not None and host_ip.version == 6 and address6 is None:
        raise InvalidInput("%s: host_ip %s is IPv6 but the pod has no IPv6 address on this network"
                           % (field, host_ip), field + ".host_ip")
    return Port(protocol, numbers[0], numbers[1], host_ip, address, address6, pod)


def _port_number(value, field) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput("%s: %r is not a port number (1-65535)" % (field, value), field)
    return value


def _comment_text(text) -> str:
    return _COMMENT_TEXT.sub("_", text)[:96]


def veth_name(pod_key, network_name, ifname) -> str:
    """The host end of a pod's veth: jpv + 12 hex digits of (pod, network, interface)."""
    import hashlib  # here, not at the top: a pod's supervisor that is told the name needs none (3 ms)
    digest = hashlib.sha256(("%s\0%s\0%s" % (pod_key, network_name, ifname)).encode()).hexdigest()
    return VETH_PREFIX + digest[:IFNAMSIZ - len(VETH_PREFIX)]


def bridge_mac(bridge) -> str:
    """A locally administered unicast MAC derived from the bridge name: stable whatever its ports."""
    import hashlib
    octets = bytearray(hashlib.sha256(("jetpack:" + bridge).encode()).digest()[:6])
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join("%02x" % b for b in octets)


# --- the ruleset (pure) ----------------------------------------------------------------------

def render_ruleset(networks, ports, forwarding=()) -> str:
    """The text of `table inet jetpack` for these networks and published ports.

    `forwarding`: the sysctl keys jetpack turned on, kept in the table's comment. The output does not
    depend on the order of the inputs. Raises InvalidInput for inconsistent networks or ports and
    InUse for a port published twice.
    """
    nets = _networks(networks)
    pubs = _ports(ports, nets)
    bridges = _set([n.bridge for n in nets])
    chains = [
        ("guard", "type filter hook prerouting priority raw; policy accept;", _guard_rules(bridges)),
        ("services", "type filter hook input priority filter; policy accept;", _service_rules(nets)),
        ("forward", "type filter hook forward priority filter; policy accept;", _forward_rules(nets, bridges)),
        ("prerouting", "type nat hook prerouting priority dstnat; policy accept;", _jump_rules(pubs)),
        ("output", "type nat hook output priority -100; policy accept;", _jump_rules(pubs)),
        ("published", None, [rule for p in pubs for rule in _dnat_rules(p)]),
        ("postrouting", "type nat hook postrouting priority srcnat; policy accept;",
         [rule for n in nets for rule in _postrouting_rules(n)]),
    ]
    lines = ["table %s %s {" % (FAMILY, TABLE), '\tcomment "%s"' % table_comment(forwarding)]
    for i, (name, head, rules) in enumerate(chains):
        lines += ([""] if i else []) + ["\tchain %s {" % name]
        lines += (["\t\t" + head] if head else []) + ["\t\t" + rule for rule in rules] + ["\t}"]
    return "\n".join(lines + ["}"]) + "\n"


def table_comment(forwarding=()) -> str:
    keys = [key for key in FORWARDING.values() if key in set(forwarding)]
    return COMMENT + (TURNED_ON + " ".join(keys) if keys else "")


def parse_table_comment(listing: str) -> list:
    """The sysctl keys recorded as turned on by jetpack, from `nft list table` output (pure)."""
    found = re.search(r'^\s*comment "([^"]*)"\s*$', listing, re.M)
    if not found or TURNED_ON not in found.group(1):
        return []
    recorded = found.group(1).split(TURNED_ON, 1)[1].split()
    return [key for key in FORWARDING.values() if key in recorded]


def _networks(networks) -> list:
    nets = sorted((network(n) for n in networks), key=lambda n: n.bridge)
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            if a.name == b.name or a.bridge == b.bridge:
                raise InvalidInput("networks %s and %s share a name or a bridge (%s): give each its own"
                                   % (a.name, b.name, a.bridge), "networks")
            for sa, sb in ((a.subnet, b.subnet), (a.subnet6, b.subnet6)):
                if sa is not None and sb is not None and sa.overlaps(sb):
                    raise InvalidInput("networks %s (%s) and %s (%s) overlap: give them disjoint subnets"
                                       % (a.name, sa, b.name, sb), "networks")
    return nets


def _ports(ports, nets) -> list:
    pubs = sorted((port(p) for p in ports), key=lambda p: (p.protocol, p.host_port, str(p.host_ip or ""), p.pod))
    for p in pubs:
        if not any(p.address in n.subnet for n in nets):
            raise InvalidInput("port %s/%d leads to %s, which is in no network given: pass the pod's network too"
                               % (p.protocol, p.host_port, p.address), "ports")
        if p.address6 is not None and not any(n.subnet6 and p.address6 in n.subnet6 for n in nets):
            raise InvalidInput("port %s/%d leads to %s, which is in no network given: pass the pod's network too"
                               % (p.protocol, p.host_port, p.address6), "ports")
    for i, a in enumerate(pubs):
        for b in pubs[i + 1:]:
            if _overlap(a.protocol, a.host_port, a.host_ip, b.protocol, b.host_port, b.host_ip):
                pods = [a.pod or "?", b.pod or "?"]
                raise InUse("%s port %d %s is published twice (pods %s and %s): choose another host_port for one of"
                            " them, or give each its own host_ip"
                            % (a.protocol, a.host_port, _where(a.host_ip), pods[0], pods[1]),
                            [x for x in (a.pod, b.pod) if x])
    return pubs


def _overlap(proto_a, port_a, ip_a, proto_b, port_b, ip_b) -> bool:
    """Two publications catch the same packets: same protocol and port, same or any address."""
    return proto_a == proto_b and port_a == port_b and (ip_a is None or ip_b is None or ip_a == ip_b)


def _where(host_ip) -> str:
    return "on %s" % host_ip if host_ip else "on every host address"


def _set(values) -> str:
    """An nft value or anonymous set of quoted names ("" when there is none)."""
    quoted = ['"%s"' % v for v in values]
    if len(quoted) < 2:
        return "".join(quoted)
    return "{ %s }" % ", ".join(quoted)


def _guard_rules(bridges) -> list:
    if not bridges:
        return []
    return ["iifname %s ip saddr %s drop" % (bridges, LOOPBACK4),
            "iifname %s ip daddr %s drop" % (bridges, LOOPBACK4)]


def _service_rules(nets) -> list:
    """The host service (metadata, DNS) on a network's gateway answers that network's pods only: a
    pod of another network, or another machine, must not learn a network's pod names."""
    rules, gateways = [], {4: [], 6: []}
    for n in nets:
        for family, gateway in (("ip", n.gateway), ("ip6", n.gateway6)):
            if gateway is None:
                continue
            gateways[gateway.version].append(str(gateway))
            rules += ['iifname "%s" %s daddr %s udp dport %d accept' % (n.bridge, family, gateway, DNS_PORT),
                      'iifname "%s" %s daddr %s tcp dport { %d, %d } accept'  # nft's own order would be 53 first
                      % (n.bridge, family, gateway, METADATA_PORT, DNS_PORT)]
    for version, family in ((4, "ip"), (6, "ip6")):
        if gateways[version]:
            addresses = _values(sorted(gateways[version], key=ipaddress.ip_address))
            rules += ["%s daddr %s udp dport %d drop" % (family, addresses, DNS_PORT),
                      "%s daddr %s tcp dport { %d, %d } drop" % (family, addresses, METADATA_PORT, DNS_PORT)]
    return rules


def _values(values) -> str:
    """An nft value or anonymous set of unquoted values."""
    return values[0] if len(values) == 1 else "{ %s }" % ", ".join(values)


def _forward_rules(nets, bridges) -> list:
    if not nets:
        return []
    rules = ["ct state established,related accept", "ct status dnat accept"]
    rules += ['iifname "%s" oifname "%s" accept' % (n.bridge, n.bridge) for n in nets]
    if len(nets) > 1:
        rules.append("iifname %s oifname %s drop" % (bridges, bridges))
    nat = _set([n.bridge for n in nets if n.nat])
    if nat:
        rules.append("oifname %s drop" % nat)
    return rules


def _jump_rules(pubs) -> list:
    return ["fib daddr type local jump published"] if pubs else []


def _dnat_rules(p) -> list:
    comment = ' comment "pod %s"' % p.pod if p.pod else ""
    rules = []
    if p.host_ip is None or p.host_ip.version == 4:
        match = "ip daddr %s" % p.host_ip if p.host_ip else "meta nfproto ipv4"
        rules.append("%s %s dport %d dnat ip to %s:%d%s"
                     % (match, p.protocol, p.host_port, p.address, p.pod_port, comment))
    if p.address6 is not None and (p.host_ip is None or p.host_ip.version == 6):
        match = "ip6 daddr %s" % p.host_ip if p.host_ip else "ip6 daddr != ::1"  # refused at once, not lost
        rules.append("%s %s dport %d dnat ip6 to [%s]:%d%s"
                     % (match, p.protocol, p.host_port, p.address6, p.pod_port, comment))
    return rules


def _postrouting_rules(n) -> list:
    rules = ['oifname "%s" ip saddr %s masquerade' % (n.bridge, LOOPBACK4),
             'oifname "%s" ip saddr %s ct status dnat masquerade' % (n.bridge, n.subnet)]
    if n.subnet6 is not None:
        rules.append('oifname "%s" ip6 saddr %s ct status dnat masquerade' % (n.bridge, n.subnet6))
    if n.nat:
        rules.append('oifname != "%s" ip saddr %s masquerade' % (n.bridge, n.subnet))
        if n.subnet6 is not None:
            rules.append('oifname != "%s" ip6 saddr %s masquerade' % (n.bridge, n.subnet6))
    return rules


# --- the table -------------------------------------------------------------------------------

def apply_ruleset(text: str) -> None:
    """Replace the collection's table with `text` in one transaction: on any error nothing changes.

    `text` may only define `table inet jetpack` (InvalidInput otherwise).
    """
    head = "table %s %s" % (FAMILY, TABLE)
    for line in text.splitlines():
        if line and not line[0].isspace() and line not in ("}", head + " {"):
            raise InvalidInput("refusing a ruleset that does more than define %s (line %r)" % (head, line), "ruleset")
    _nft(head + "\ndelete " + head + "\n" + text)


def delete_table() -> None:
    """Delete the collection's table if it exists (one transaction)."""
    head = "table %s %s" % (FAMILY, TABLE)
    _nft(head + "\ndelete " + head + "\n")


def _nft(text: str) -> None:
    argv = argv_nft_apply()
    rc, out, err = run(argv, input=text)
    if rc == 0:
        return
    if "Could not process rule" in err and ("not supported" in err or "No such file" in err):
        hint = ("Nothing was changed. The kernel lacks an nftables feature these rules use: load nf_tables, "
                "nft_chain_nat, nft_nat, nft_masq, nft_ct and nft_fib_inet (modprobe) and retry")
    else:
        hint = "Nothing was changed (nft applies all or nothing); report this as a jetpack bug with the message"
    raise error_for(argv, rc, out, err, hint)


def table_listing() -> str:
    """`nft list table inet jetpack` output; "" when the table does not exist."""
    argv = argv_nft_list_table()
    rc, out, err = run(argv)
    if rc != 0:
        if "No such file or directory" in err:
            return ""
        raise error_for(argv, rc, out, err, "Check that nftables works on this host (nft list tables)")
    return out


def recorded_forwarding() -> list:
    """The forwarding sysctls jetpack turned on, as recorded in its table ([] without a table)."""
    return parse_table_comment(table_listing())


def sync(networks, ports) -> bool:
    """Regenerate the table from every network in use and every published port (atomically).

    Returns whether it changed: nothing is loaded when the table already reads as rendered.
    """
    listing = table_listing()
    return _replace(render_ruleset(networks, ports, parse_table_comment(listing)), listing)


def _replace(text: str, listing: str) -> bool:
    """apply_ruleset(text) unless the live table lists as text does (nft prints what we render)."""
    if canonical(text) == canonical(listing):
        return False
    apply_ruleset(text)
    return True


def canonical(text: str) -> str:
    """A ruleset text with the elements of its anonymous sets sorted: nft lists them in hash order."""
    return re.sub(r"\{ ([^{}\n]*) \}", lambda m: "{ %s }" % ", ".join(sorted(m.group(1).split(", "))), text)


def published_ports() -> list:
    """What the live table publishes: [{"protocol", "host_port", "host_ip" (None = any), "pod"}]."""
    argv = argv_nft_list_chain_json("published")
    rc, out, err = run(argv)
    if rc != 0:
        if "No such file or directory" in err:
            return []
        raise error_for(argv, rc, out, err, "Check that nftables works on this host (nft list tables)")
    return parse_published(out)


def parse_published(text: str) -> list:
    """Published ports from `nft -j list chain inet jetpack published` output (pure)."""
    found = []
    for item in json.loads(text).get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        entry = {"protocol": None, "host_port": None, "host_ip": None, "pod": ""}
        for expr in rule.get("expr", []):
            payload = expr.get("match", {}).get("left", {}).get("payload", {})
            if payload.get("field") == "dport" and payload.get("protocol") in PROTOCOLS:
                entry["protocol"], entry["host_port"] = payload["protocol"], int(expr["match"]["right"])
            elif payload.get("field") == "daddr" and payload.get("protocol") in ("ip", "ip6"):
                entry["host_ip"] = ipaddress.ip_address(expr["match"]["right"])
        comment = rule.get("comment", "")
        entry["pod"] = comment[4:] if comment.startswith("pod ") else comment
        if entry["protocol"]:
            found.append(entry)
    return found


# --- host queries ----------------------------------------------------------------------------

def _json(argv) -> list:
    out = _check(argv, hint="Check that iproute2 works on this host")
    try:
        return json.loads(out or "[]")
    except ValueError:
        raise CommandError("%s printed no JSON: this iproute2 is too old (it needs -j, iproute2 >= 4.15)"
                           % shlex.join(argv), argv, 0, out) from None


def _link(name):
    """The `ip -j -d link` entry of an interface; None when there is none."""
    try:
        links = _json(argv_link_show(name))
    except NotFound:
        return None
    return links[0] if links else None


def bridges() -> dict:
    """{name: `ip -j -d addr show` entry} of every bridge of the host, in one command."""
    return {link["ifname"]: link for link in _json(argv_bridges_show())}


def jetpack_bridges() -> dict:
    """{bridge: network name} of the bridges carrying jetpack's mark."""
    found = {}
    for link in _json(argv_link_show(kind="bridge")):
        alias = link.get("ifalias") or ""
        if alias.startswith(MARK):
            found[link["ifname"]] = alias[len(MARK):]
    return found


def addresses_in_use() -> set:
    """Every IPv4/IPv6 address configured on an interface of the host (ipaddress objects)."""
    return {ipaddress.ip_address(a["local"]) for link in _json(argv_addr_show())
            for a in link.get("addr_info", []) if a.get("local")}


def subnets_in_use() -> set:
    """The subnets of the host's interfaces (ipaddress networks), e.g. to refuse an overlapping network."""
    return {ipaddress.ip_interface("%s/%s" % (a["local"], a["prefixlen"])).network
            for link in _json(argv_addr_show()) for a in link.get("addr_info", []) if a.get("local")}


def port_in_use(protocol, port_number, host_ip="") -> str:
    """Why this port cannot be published ("" when it can): published by jetpack, or a host socket has it.

    Raises InvalidInput when host_ip is not an address of this host.
    """
    p = port({"protocol": protocol, "host_port": port_number, "pod_port": port_number, "host_ip": host_ip,
              "address": "0.0.0.0"})
    if p.host_ip is not None and p.host_ip not in addresses_in_use():
        raise InvalidInput("host_ip %s is not an address of this host: use one it has (ip addr), or none for all"
                           % p.host_ip, "host_ip")
    for other in published_ports():
        if _overlap(p.protocol, p.host_port, p.host_ip, other["protocol"], other["host_port"], other["host_ip"]):
            return "published by jetpack %sfor pod %s" % (
                "on %s " % other["host_ip"] if other["host_ip"] else "", other["pod"] or "?")
    return _socket_user(p.protocol, p.host_port, p.host_ip)


def _socket_user(protocol, port_number, host_ip) -> str:
    """A host socket already bound there? Found by binding: it sees listeners of every process."""
    if host_ip is not None:
        targets = [(socket.AF_INET if host_ip.version == 4 else socket.AF_INET6, str(host_ip))]
    else:
        targets = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    for family, address in targets:
        try:
            sock = socket.socket(family, kind)
        except OSError:  # no IPv6 on this host: nothing can listen there
            continue
        with sock:
            if protocol == "tcp":  # a TIME_WAIT connection is no conflict; a listener still is
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((address, port_number))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return "a socket of the host is bound to %s %s port %d (see ss -tulpn)" % (
                        protocol, address, port_number)
                raise JetpackError("cannot check %s port %d on %s: %s"
                                   % (protocol, port_number, address, e.strerror)) from None
    return ""


def check_ports(ports) -> None:
    """Refuse (InUse) ports published twice among `ports`, published already, or used by a host socket."""
    pubs = [port(p) for p in ports]
    for i, p in enumerate(pubs):
        for q in pubs[:i]:
            if _overlap(p.protocol, p.host_port, p.host_ip, q.protocol, q.host_port, q.host_ip):
                raise InUse("%s port %d %s is asked for twice (pods %s and %s): choose another host_port"
                            % (p.protocol, p.host_port, _where(p.host_ip), q.pod or "?", p.pod or "?"),
                            [x for x in (q.pod, p.pod) if x])
        reason = port_in_use(p.protocol, p.host_port, str(p.host_ip or ""))
        if reason:
            raise InUse("cannot publish %s port %d %s for pod %s: it is %s. Choose another host_port, or free it first"
                        % (p.protocol, p.host_port, _where(p.host_ip), p.pod or "?", reason), [reason])


# --- sysctls ---------------------------------------------------------------------------------

def _sysctl_path(key) -> str:
    return os.path.join(PROC_SYS, *key.split("."))


def read_sysctl(key):
    """The value of a sysctl of our network namespace; None when it does not exist."""
    try:
        with open(_sysctl_path(key)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def write_sysctl(key, value) -> None:
    try:
        with open(_sysctl_path(key), "w") as f:
            f.write(str(value))
    except OSError as e:
        raise JetpackError("cannot set %s=%s: %s; pod networks need root" % (key, value, e.strerror)) from None


def enable_forwarding(net: Network) -> list:
    """Turn on the forwarding the network needs; returns the keys that were off."""
    changed = []
    for version in (4, 6) if net.subnet6 is not None else (4,):
        key = FORWARDING[version]
        value = read_sysctl(key)
        if value is None:
            raise InvalidInput("network %s: IPv%d is disabled on this host (no %s): remove subnet6 from the"
                               " network or enable IPv%d" % (net.name, version, key, version), "subnet6")
        if value != "1":
            write_sysctl(key, 1)
            changed.append(key)
    return changed


def forwarding_warnings(changed) -> list:
    """What turning these sysctls on may break on the host (said, not fixed: those are not our interfaces)."""
    if FORWARDING[6] not in changed:
        return []
    devices = sorted({route.get("dev") for route in _json(argv_ra_routes()) if route.get("dev")})
    if not devices:
        return []
    return ["net.ipv6.conf.all.forwarding=1 makes interfaces with accept_ra=1 ignore router advertisements;"
            " %s got routes from them: set net.ipv6.conf.<interface>.accept_ra=2 there to keep them"
            % ", ".join(devices)]


# --- networks --------------------------------------------------------------------------------

def ensure_network(net, networks=None, ports=None) -> dict:
    """The network's bridge with its gateway address(es), forwarding on, and the table (idempotent).

    `networks` and `ports`, when given, are every network in use (`net` is added when missing) and
    every published port: the table is regenerated from them, as sync() does. Without them the table's
    rules are left as they are (it is created from `net` alone when missing): call sync() afterwards.
    Returns {"bridge", "created", "forwarding_enabled", "warnings"}.
    """
    n = network(net)
    everything = None
    if networks is not None:
        everything = [x for x in networks if network(x).name != n.name] + [net]
        render_ruleset(everything, ports or ())  # bad input is refused before anything changes
    created = _ensure_bridge(n)
    changed = enable_forwarding(n)
    listing = table_listing()
    record = sorted(set(parse_table_comment(listing)) | set(changed))
    if everything is not None:
        _replace(render_ruleset(everything, ports or (), record), listing)
    elif not listing:
        apply_ruleset(render_ruleset([net], (), record))
    elif changed:
        apply_ruleset(_with_comment(listing, table_comment(record)))
    return {"bridge": n.bridge, "created": created, "forwarding_enabled": changed,
            "warnings": forwarding_warnings(changed)}


def _with_comment(listing: str, comment: str) -> str:
    """The listed table with its comment replaced (nft reads back what it lists)."""
    lines = [line for line in listing.splitlines() if not re.match(r'^\tcomment "[^"]*"$', line)]
    return "\n".join(lines[:1] + ['\tcomment "%s"' % comment] + lines[1:]) + "\n"


def _ensure_bridge(n: Network, bridges=None) -> bool:
    """Create the bridge if missing (True), else check it is this network's; then its addresses, up.

    `bridges`: {name: entry} from bridges(), when several networks are checked from one listing.
    """
    link = _link(n.bridge) if bridges is None else bridges.get(n.bridge)
    if link is None:
        _check(argv_bridge_add(n.bridge, bridge_mac(n.bridge)), hint="Choose another bridge name for network %s"
               % n.name)
        try:
            _check(argv_link_alias(n.bridge, MARK + n.name))
            _configure_bridge(n)
        except BaseException:
            _check(argv_link_del(n.bridge), ok=("Cannot find device",))
            raise
        return True
    kind = (link.get("linkinfo") or {}).get("info_kind")
    if kind != "bridge" or link.get("ifalias") != MARK + n.name:
        raise AlreadyExists("interface %s exists and is not network %s's bridge (kind %s, alias %r): choose another"
                            " bridge name for the network; jetpack never changes an interface it did not create"
                            % (n.bridge, n.name, kind, link.get("ifalias")))
    _configure_bridge(n, link if bridges is not None else None)
    return False


def _configure_bridge(n: Network, listed=None) -> None:
    """The gateway address(es), route_localnet and up; `listed`: the bridge's entry with its
    addresses when the caller has it. Nothing runs for what is in place already."""
    wanted = [ipaddress.ip_interface("%s/%d" % (n.gateway, n.subnet.prefixlen))]
    if n.subnet6 is not None:
        wanted.append(ipaddress.ip_interface("%s/%d" % (n.gateway6, n.subnet6.prefixlen)))
    links = [listed] if listed is not None else _json(argv_addr_show(n.bridge))
    have = {ipaddress.ip_interface("%s/%s" % (a["local"], a["prefixlen"]))
            for link in links for a in link.get("addr_info", []) if a.get("scope") == "global"}
    stale = sorted(str(a) for a in have - set(wanted))
    if stale:
        raise InUse("bridge %s of network %s has %s, not what the network declares (%s): stop the network's pods"
                    " (the bridge goes with the last one) before changing its subnet or gateway"
                    % (n.bridge, n.name, ", ".join(stale), ", ".join(str(w) for w in wanted)), [n.bridge])
    for address in wanted:
        if address not in have:
            _check(argv_addr_add(n.bridge, address, nodad=address.version == 6))
    # 127.0.0.1 on the host may reach a published port: the DNATed packet leaves through the bridge.
    if read_sysctl("net.ipv4.conf.%s.route_localnet" % n.bridge) != "1":
        write_sysctl("net.ipv4.conf.%s.route_localnet" % n.bridge, 1)
    if not links or "UP" not in links[0].get("flags", []):
        _check(argv_link_up(n.bridge))


def remove_network(net, networks=None, ports=None, restore_forwarding=False) -> dict:
    """Delete the network's bridge; once no jetpack bridge remains, delete the table too.

    Call it when the network's last pod has left (pods still on the bridge lose their network).
    `networks` and `ports` (the ones still in use), when given and other networks remain, regenerate the
    table. With no network left, the forwarding jetpack turned on stays on unless restore_forwarding.
    Returns {"bridge_removed", "table_removed", "forwarding", "restored", "message"}.
    """
    n = network(net)
    link = _link(n.bridge)
    removed = False
    if link is not None:
        if link.get("ifalias") != MARK + n.name:
            raise InUse("interface %s is not network %s's bridge (alias %r): jetpack leaves it alone; check the"
                        " network's bridge name" % (n.bridge, n.name, link.get("ifalias")), [n.bridge])
        _check(argv_link_del(n.bridge), ok=("Cannot find device",))
        removed = True
    remaining = {bridge: name for bridge, name in jetpack_bridges().items() if bridge != n.bridge}
    result = {"bridge_removed": removed, "table_removed": False, "forwarding": [], "restored": [], "message": ""}
    if remaining:
        if networks is not None:
            sync([x for x in networks if network(x).name != n.name], ports or ())
        return result
    record = recorded_forwarding()
    delete_table()
    result.update(table_removed=True, forwarding=record)
    if record and restore_forwarding:
        for key in record:
            write_sysctl(key, 0)
        result["restored"] = record
        result["message"] = "turned %s back off" % " and ".join(record)
    elif record:
        result["message"] = ("jetpack had turned on %s for its networks and left it on (something else may rely"
                             " on it now); write 0 to it if nothing on this host routes" % " and ".join(record))
    return result


def sync_host(networks, ports, unused=()) -> dict:
    """The whole host side at once: the bridges of `networks` made or repaired, forwarding on, the
    table regenerated from `networks` and `ports`; the bridges of the `unused` networks deleted, and
    the table with the last jetpack bridge.

    Everything is read once (`ip -j -d addr show type bridge`, `nft list table`) and only what differs
    is changed: on a host that is as it should be, nothing else runs. Bad input is refused before
    anything changes. Returns {"created", "removed", "forwarding_enabled", "table"}; table is
    "unchanged", "replaced" or "removed".
    """
    nets = [network(n) for n in networks]
    gone = [network(n) for n in unused]
    render_ruleset(networks, ports)
    listed = bridges()
    created = [n.bridge for n in nets if _ensure_bridge(n, listed)]
    changed = [key for n in nets for key in enable_forwarding(n)]
    removed = []
    for n in gone:
        if (listed.get(n.bridge) or {}).get("ifalias") == MARK + n.name:
            _check(argv_link_del(n.bridge), ok=("Cannot find device",))
            removed.append(n.bridge)
    listing = table_listing()
    remaining = [name for name, link in listed.items()
                 if (link.get("ifalias") or "").startswith(MARK) and name not in removed]
    if nets or remaining:
        record = sorted(set(parse_table_comment(listing)) | set(changed))
        table = "replaced" if _replace(render_ruleset(networks, ports, record), listing) else "unchanged"
    elif listing:
        delete_table()
        table = "removed"
    else:
        table = "unchanged"
    return {"created": created, "removed": removed, "forwarding_enabled": changed, "table": table}


# --- pods ------------------------------------------------------------------------------------

def attach_pod(net, holder_pid, address, address6=None, ifname="eth0", default_route=True, pod_id=None,
               host_ifname=None) -> dict:
    """Give the pod whose holder is holder_pid an interface on the network; returns what detach_pod needs.

    `address` (and `address6` on a network with IPv6) come from the allocator; `default_route`: route
    everything through this network's gateway(s) (one network of a pod only). The host end of the
    veth is `host_ifname`, else veth_name() of `pod_id` (the pod's uuid), else of the pod's network
    namespace. Two commands: the veth, made with its pod end inside the pod, then that end's
    addresses and routes. On failure nothing is left behind.
    """
    n = _addressing(_as_dict(net), str(net.get("name")))
    ip4 = _pod_address(n.subnet, n.gateway, address, "address")
    ip6 = None
    if address6:
        if n.subnet6 is None:
            raise InvalidInput("network %s has no IPv6 subnet: give no address6" % n.name, "address6")
        ip6 = _pod_address(n.subnet6, n.gateway6, address6, "address6")
    ifname_arg(ifname)
    fd = open_netns(holder_pid)
    try:
        if host_ifname is None:
            st = os.fstat(fd)
            host_ifname = veth_name(pod_id or "netns:%d:%d" % (st.st_dev, st.st_ino), n.name, ifname)
        ifname_arg(host_ifname, "host_ifname")
        netns = "/proc/self/fd/%d" % fd  # resolved by the command itself: the fd it inherits
        _add_veth(n, host_ifname, ifname, netns, fd)
        try:
            batch = pod_batch(ifname, ip4, n.subnet.prefixlen, n.gateway if default_route else None,
                              ip6, n.subnet6.prefixlen if ip6 else None, n.gateway6 if default_route else None)
            _check(argv_in_netns(netns, argv_ip_batch()), input=batch, pass_fds=(fd,),
                   hint="Check the pod's addresses and that it has no other default route")
        except BaseException:
            _check(argv_link_del(host_ifname), ok=("Cannot find device",))
            raise
    finally:
        os.close(fd)
    return {"network": n.name, "bridge": n.bridge, "host_ifname": host_ifname, "ifname": ifname,
            "address": str(ip4), "address6": str(ip6) if ip6 else None}


def _add_veth(n, host_ifname, ifname, netns, fd) -> None:
    try:
        _check(argv_veth_add(host_ifname, n.bridge, ifname, netns), pass_fds=(fd,))
    except NotFound:
        if _link(n.bridge) is None:
            raise NotFound("network %s has no bridge %s: ensure_network() it before attaching pods"
                           % (n.name, n.bridge)) from None
        raise
    except AlreadyExists:
        if _link(host_ifname) is not None:
            raise AlreadyExists("the pod is attached to network %s already (interface %s): detach it first"
                                % (n.name, host_ifname)) from None
        raise AlreadyExists("the pod has an interface named %s already: give each of its networks its own ifname"
                            % ifname) from None


def open_netns(holder_pid) -> int:
    """An fd of the holder's network namespace, refused when it is ours (the holder has its own)."""
    if isinstance(holder_pid, bool) or not isinstance(holder_pid, int) or holder_pid <= 0:
        raise InvalidInput("holder_pid %r is not a process id" % (holder_pid,), "holder_pid")
    try:
        fd = os.open("/proc/%d/ns/net" % holder_pid, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound("no pod holder process %d: start the pod first" % holder_pid) from None
    theirs, ours = os.fstat(fd), os.stat("/proc/thread-self/ns/net")
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        os.close(fd)
        raise InvalidInput("process %d is in the host's network namespace, not a pod holder's: refusing to"
                           " configure the host as a pod" % holder_pid, "holder_pid")
    return fd


def detach_pod(attachment) -> bool:
    """Remove the pod's veth if it is still there (it vanishes with the pod anyway); idempotent.

    Returns whether there was one to remove.
    """
    host_ifname = ifname_arg(attachment["host_ifname"], "host_ifname")
    link = _link(host_ifname)
    if link is None:
        return False
    if link.get("master") != attachment["bridge"]:
        raise InUse("interface %s is not a port of bridge %s: it is not this attachment's; jetpack leaves it"
                    " alone" % (host_ifname, attachment["bridge"]), [host_ifname])
    _check(argv_link_del(host_ifname), ok=("Cannot find device",))
    return True
