"""Networks: their definitions, the addresses pods get on them, and the names pods resolve.

    <mountpoint>/networks/<name>.json          a network: name, subnet(s), NAT, bridge
    <mountpoint>/networks/<name>.leases.json   {address: pod key}: never given twice while leased

The network `default` (172.23.0.0/16 with NAT, as Jetpack had it) exists without being declared.
An address is leased under the store lock, skipping the gateway, every lease and every address
already configured on the host, and freed when its pod is destroyed. Platform work (bridges,
veth, jails, NAT rules) belongs to the engines.
"""
from __future__ import annotations

import ipaddress
import os
import re
from typing import Optional

from . import appc
from .errors import AlreadyExists, InUse, InvalidInput, NotFound
from .store import Store, listdir, read_json, write_json

DEFAULT = {"name": "default", "subnet": "172.23.0.0/16", "subnet6": None, "nat": True}
SPECIAL = ("host", "none")  # pod network modes that are not networks
_INTERFACE = re.compile(r"[a-z][a-z0-9_.]{0,14}")  # ifconfig(8) names, e.g. em0, vtnet0, lagg0.100
MAX_NAME = 12  # the bridge is "jp-" + name, and Linux interface names stop at 15 characters


def directory(store: Store) -> str:
    return os.path.join(store.config.mountpoint, "networks")


MODES = ("shared", "vnet")  # FreeBSD: alias on a cloned loopback, or a jail of its own stack (vnet)


def normalize(name: str, subnet: str, subnet6=None, nat: bool = True, mode: str = "shared",
              egress_if: Optional[str] = None) -> dict:
    """A network definition with its gateway(s) and bridge; errors name the option to fix.

    mode and egress_if matter on FreeBSD only (the Linux engine always bridges and NATs through
    the host's routes): egress_if is the interface pf translates and redirects on."""
    appc.validate_acname(name, "name")
    if len(name) > MAX_NAME or name in SPECIAL:
        raise InvalidInput("network name %r must be at most %d characters and not %s"
                           % (name, MAX_NAME, " or ".join(SPECIAL)), field="name")
    if mode not in MODES:
        raise InvalidInput("network mode %r must be one of %s" % (mode, ", ".join(MODES)), field="mode")
    if egress_if is not None and not _INTERFACE.fullmatch(egress_if):
        raise InvalidInput("egress_if %r is not an interface name such as em0 or vtnet0" % egress_if,
                           field="egress_if")
    net = {"name": name, "subnet": str(_subnet(subnet, 4, "subnet")), "subnet6": None, "nat": bool(nat),
           "bridge": "jp-" + name, "mode": mode, "egress_if": egress_if}
    net["gateway"] = str(next(_subnet(subnet, 4, "subnet").hosts()))
    if subnet6:
        net["subnet6"] = str(_subnet(subnet6, 6, "subnet6"))
        net["gateway6"] = str(next(_subnet(subnet6, 6, "subnet6").hosts()))
    return net


def _subnet(text: str, version: int, field: str):
    try:
        subnet = ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise InvalidInput("%s %r is not an IPv%d network such as %s: %s"
                           % (field, text, version, "10.88.0.0/16" if version == 4 else "fd00:88::/64", error),
                           field=field) from None
    if subnet.version != version or subnet.num_addresses < 4:
        raise InvalidInput("%s %s must be an IPv%d network with room for pods" % (field, text, version),
                           field=field)
    return subnet


def list_networks(store: Store) -> list:
    """Every declared network, plus `default` unless it was declared otherwise."""
    found = {}
    for entry in listdir(directory(store)):
        if entry.endswith(".json") and not entry.endswith(".leases.json"):
            net = read_json(os.path.join(directory(store), entry))
            net.setdefault("mode", "shared")  # declared before networks had a mode and egress_if
            net.setdefault("egress_if", None)
            found[net["name"]] = net
    found.setdefault("default", normalize(**DEFAULT))
    return [found[name] for name in sorted(found)]


def get_network(store: Store, name: str) -> dict:
    for net in list_networks(store):
        if net["name"] == name:
            return net
    raise NotFound("network %s is not declared; declare it with jetpack.runtime.jetpack_network" % name)


def declare(store: Store, net: dict) -> None:
    """Write a network definition; refuses a subnet that overlaps another network's."""
    for other in list_networks(store):
        if other["name"] != net["name"] and _overlap(other, net):
            raise AlreadyExists("network %s overlaps network %s (%s); choose another subnet"
                                % (net["name"], other["name"], other["subnet"]))
    os.makedirs(directory(store), mode=0o700, exist_ok=True)
    write_json(os.path.join(directory(store), net["name"] + ".json"), net)


def _overlap(a: dict, b: dict) -> bool:
    pairs = [(a["subnet"], b["subnet"]), (a.get("subnet6"), b.get("subnet6"))]
    return any(x and y and ipaddress.ip_network(x).overlaps(ipaddress.ip_network(y)) for x, y in pairs)


def remove(store: Store, name: str) -> None:
    users = sorted(set(leases(store, name).values()))
    if users:
        raise InUse("network %s still has pods (%s); remove them first" % (name, ", ".join(users)), users)
    for suffix in (".json", ".leases.json"):
        path = os.path.join(directory(store), name + suffix)
        if os.path.exists(path):
            os.unlink(path)


# --- addresses ----------------------------------------------------------------------------------
def leases(store: Store, name: str) -> dict:
    try:
        return read_json(os.path.join(directory(store), name + ".leases.json"))
    except FileNotFoundError:
        return {}


def allocate(store: Store, net: dict, owner: str, in_use=(), wanted=None, version: int = 4) -> str:
    """Lease an address of net to owner (a pod key); with the store lock held.

    wanted: a fixed address, refused clearly when outside the subnet or taken. in_use: addresses
    configured on the host, never handed out.
    """
    subnet = ipaddress.ip_network(net["subnet"] if version == 4 else net["subnet6"])
    gateway = ipaddress.ip_address(net["gateway"] if version == 4 else net["gateway6"])
    taken = leases(store, net["name"])
    blocked = {ipaddress.ip_address(a) for a in in_use} | {gateway}
    if wanted:
        address = _wanted_address(wanted, subnet)
        holder = taken.get(str(address))
        if address in blocked or (holder and holder != owner):
            raise AlreadyExists("address %s on network %s is taken (%s); choose another or leave it out"
                                % (address, net["name"], holder or "in use on the host"))
    else:
        address = next((a for a in subnet.hosts() if a not in blocked and str(a) not in taken), None)
        if address is None:
            raise InUse("network %s (%s) has no free address left; remove pods or use a larger subnet"
                        % (net["name"], net["subnet"]))
    taken[str(address)] = owner
    os.makedirs(directory(store), mode=0o700, exist_ok=True)
    write_json(os.path.join(directory(store), net["name"] + ".leases.json"), taken)
    return str(address)


def _wanted_address(text: str, subnet):
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput("address %r is not an IP address" % text, field="networks") from None
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidInput("address %s is not a host address of %s" % (address, subnet), field="networks")
    return address


def release(store: Store, owner: str) -> list:
    """Free every lease of owner; with the store lock held. Returns the networks it left."""
    left = []
    for entry in listdir(directory(store)):
        if not entry.endswith(".leases.json"):
            continue
        name = entry[:-len(".leases.json")]
        taken = leases(store, name)
        kept = {address: key for address, key in taken.items() if key != owner}
        if kept != taken:
            write_json(os.path.join(directory(store), entry), kept)
            left.append(name)
    return left


# --- names --------------------------------------------------------------------------------------
def hosts_file(records: list, record: dict) -> str:
    """/etc/hosts for one pod: localhost, itself, and every pod sharing one of its networks.

    Written only into an app whose image has no /etc/hosts: an image's own file is never changed,
    and its pod names come from the network's DNS responder (pod_names) instead.

    A pod on the host's network (`host`) has no address of its own and shares no network with
    other pods: its own names (pod name, hostname) are 127.0.1.1, a loopback address, as Debian
    names the host itself.
    """
    mine = {n["name"] for n in record.get("networks", []) if n["name"] not in SPECIAL}
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if not mine:
        return "\n".join(lines + ["127.0.1.1\t" + " ".join(pod_hostnames(record))]) + "\n"
    for other in sorted(records, key=lambda r: r["name"]):
        for n in other.get("networks", []):
            if n["name"] in mine:
                for address in (n["address"], n.get("address6")):
                    if address:
                        lines.append("%s\t%s" % (address, " ".join(pod_hostnames(other))))
    return "\n".join(lines) + "\n"


def pod_hostnames(record: dict) -> list:
    """The names a pod answers to: its name, and its hostname when another (a service role gives
    every generation of a service the service's name as hostname, so others find it by that)."""
    names = [record["name"]]
    if record.get("hostname") and record["hostname"] != record["name"]:
        names.append(record["hostname"])
    return names


def pod_names(records: list) -> dict:
    """{network: {pod name: [addresses]}}: what each network's DNS responder answers (A and AAAA)."""
    names = {}
    for record in records:
        for n in record.get("networks") or ():
            if n.get("address"):
                for name in pod_hostnames(record):
                    found = names.setdefault(n["name"], {}).setdefault(name.lower(), [])
                    found += [a for a in (n["address"], n.get("address6")) if a]
    return names


def resolv_conf(dns=None, host_file="/etc/resolv.conf", gateway=None) -> str:
    """/etc/resolv.conf for apps: the task's nameservers and search domains; else the pod network's
    DNS responder at `gateway` (it answers pod names and asks the host's resolvers the rest, even
    loopback ones a pod cannot reach); else (no network of its own) the host's file."""
    if dns and (dns.get("nameservers") or dns.get("search")):
        lines = ["nameserver %s" % ipaddress.ip_address(ns) for ns in dns.get("nameservers") or ()]
        if not lines and gateway:
            lines.append("nameserver %s" % ipaddress.ip_address(gateway))
        if dns.get("search"):
            lines.append("search %s" % " ".join(dns["search"]))
        return "\n".join(lines) + "\n"
    if gateway:
        return "nameserver %s\n" % ipaddress.ip_address(gateway)
    try:
        with open(host_file) as f:
            return f.read()
    except FileNotFoundError:
        return ""
