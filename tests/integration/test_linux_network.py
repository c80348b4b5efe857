"""Pod networks on the real kernel (engines/linux_network.py): bridges, veth pairs, nftables, sysctls.

Needs root, ip(8), nft(8), nsenter(1) and unshare(1). Everything happens in network namespaces the
tests create (tests/helpers/netlab.py), so the machine's own interfaces, ruleset and sysctls are
never touched:

- `lab.host`: a fresh namespace that this process enters (setns) for the duration of one test; it
  stands for the host: bridges, the nftables table and the forwarding sysctls are created there;
- pods: `unshare --net sleep` processes (the pod holder's role), each with its own namespace;
- `lab.other()`: a namespace linked to the host by a veth pair, standing for another machine.

Addresses used, only inside those namespaces: 10.231.x.0/24 and fd31:231:x::/64 for pod networks,
10.232.1.0/24 and fd31:232:1::/64 for the link to the other machine. Bridges are named jpt-*.
Connections use timeouts so that nothing hangs; no assertion is about speed.
"""
import ipaddress
import json
import os
import socket
import sys

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import linux_network as net
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    AlreadyExists, CommandError, InUse, InvalidInput, NotFound)
from tests.helpers.netlab import (DROPPED, HOST_LINK, HOST_LINK6, OTHER, OTHER6, entered_lab, link_names, need,
                                  netns_names, nft_tables, sh)

pytestmark = pytest.mark.integration

A = {"name": "ta", "bridge": "jpt-a", "subnet": "10.231.1.0/24", "gateway": "10.231.1.1",
     "subnet6": "fd31:231:1::/64", "gateway6": "fd31:231:1::1", "nat": True}
B = {"name": "tb", "bridge": "jpt-b", "subnet": "10.231.2.0/24", "gateway": "10.231.2.1", "nat": False}


@pytest.fixture
def lab():
    with entered_lab() as lab:
        yield lab


def port(host_port, pod_port, address, pod, **extra):
    return dict({"protocol": "tcp", "host_port": host_port, "pod_port": pod_port, "address": address,
                 "pod": pod}, **extra)


def sysctl(key):
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


# --- tests ------------------------------------------------------------------------------------

def test_the_host_namespace_is_the_tests_own(lab):
    assert link_names() == ["lo"]
    assert nft_tables() == ""


def test_two_pods_on_one_bridge_exchange_tcp(lab):
    net.ensure_network(A)
    first, second = lab.pod(), lab.pod()
    net.attach_pod(A, first, "10.231.1.2", "fd31:231:1::2")
    net.attach_pod(A, second, "10.231.1.3", "fd31:231:1::3")
    lab.server(second, 7000, "second")
    assert lab.connect(first, "10.231.1.3", 7000) == "10.231.1.2 second"
    assert lab.connect(first, "fd31:231:1::3", 7000) == "fd31:231:1::2 second"
    links = json.loads(sh("ip", "-j", "link", "show", "master", "jpt-a").stdout)
    assert len(links) == 2 and all(link["ifname"].startswith("jpv") for link in links)


def test_ensure_network_is_idempotent(lab):
    before = {key: sysctl(key) for key in net.FORWARDING.values()}
    first = net.ensure_network(A, [A, B], [])
    snapshot = (json.loads(sh("ip", "-j", "-d", "link", "show", "dev", "jpt-a").stdout)[0],
                sh("ip", "addr", "show", "dev", "jpt-a").stdout, sh("nft", "list", "ruleset").stdout)
    again = net.ensure_network(A, [A, B], [])
    also = net.ensure_network(A)  # without the picture: the rules stay as they are
    assert net.sync([B, A], []) is False  # the table already reads as rendered: nothing loaded
    assert first["created"] and not again["created"] and not also["created"]
    assert first["forwarding_enabled"] == sorted(key for key, value in before.items() if value != "1")
    assert again["forwarding_enabled"] == also["forwarding_enabled"] == []
    assert all(sysctl(key) == "1" for key in net.FORWARDING.values())
    assert net.recorded_forwarding() == first["forwarding_enabled"]
    link = json.loads(sh("ip", "-j", "-d", "link", "show", "dev", "jpt-a").stdout)[0]
    assert (link["ifindex"], link["address"], link["ifalias"]) == (snapshot[0]["ifindex"], net.bridge_mac("jpt-a"),
                                                                   "jetpack:network=ta")
    assert sh("ip", "addr", "show", "dev", "jpt-a").stdout == snapshot[1]
    assert sh("nft", "list", "ruleset").stdout == snapshot[2]
    assert "10.231.1.1/24" in snapshot[1] and "fd31:231:1::1/64" in snapshot[1]
    assert sysctl("net.ipv4.conf.jpt-a.route_localnet") == "1"


def test_bad_input_changes_nothing_on_the_host(lab):
    before = {key: sysctl(key) for key in net.FORWARDING.values()}
    with pytest.raises(InvalidInput, match="10.231.9.2, which is in no network given"):
        net.ensure_network(A, [A], [port(8080, 80, "10.231.9.2", "web")])
    with pytest.raises(InvalidInput, match="is not an IPv4 network"):
        net.ensure_network(dict(A, subnet="10.231.1.0/33"))
    assert link_names() == ["lo"] and nft_tables() == ""
    assert {key: sysctl(key) for key in net.FORWARDING.values()} == before


def test_an_interface_jetpack_did_not_create_is_left_alone(lab):
    sh("ip", "link", "add", "name", "jpt-c", "type", "bridge")  # a bridge, not marked as ours
    with pytest.raises(AlreadyExists, match="jpt-c exists and is not network tc's bridge"):
        net.ensure_network(dict(A, name="tc", bridge="jpt-c"))
    with pytest.raises(InUse, match="leaves it alone"):
        net.remove_network(dict(A, name="tc", bridge="jpt-c"))
    assert "jpt-c" in link_names()


def test_published_port_answers_from_the_host_and_another_machine(lab):
    net.ensure_network(A)
    web, neighbour = lab.pod(), lab.pod()
    net.attach_pod(A, web, "10.231.1.2", "fd31:231:1::2")
    net.attach_pod(A, neighbour, "10.231.1.3", "fd31:231:1::3")
    other = lab.other()
    lab.server(web, 80, "web")
    net.sync([A], [port(8080, 80, "10.231.1.2", "web", address6="fd31:231:1::2")])
    # Another machine: DNAT only, the pod sees the client's own address.
    assert lab.connect(other, HOST_LINK, 8080) == OTHER + " web"
    assert lab.connect(other, HOST_LINK6, 8080) == OTHER6 + " web"
    # The host itself, to a local address that is not 127.0.0.1, and to the bridge's.
    assert lab.connect(None, HOST_LINK, 8080) == HOST_LINK + " web"
    assert lab.connect(None, "10.231.1.1", 8080) == "10.231.1.1 web"
    assert lab.connect(None, HOST_LINK6, 8080) == HOST_LINK6 + " web"
    # 127.0.0.1: route_localnet on the bridge, masqueraded to the bridge's address. [::1] cannot be
    # routed off the host: refused at once (a client falls back to 127.0.0.1), not left waiting.
    assert lab.connect(None, "127.0.0.1", 8080) == "10.231.1.1 web"
    assert lab.connect(None, "::1", 8080) == "error ConnectionRefusedError"
    # A pod of the same network through the host's address (hairpin).
    assert lab.connect(neighbour, HOST_LINK, 8080) == "10.231.1.1 web"


def test_host_ip_restricts_a_port_to_one_address(lab):
    net.ensure_network(A)
    web = lab.pod()
    net.attach_pod(A, web, "10.231.1.2")
    other = lab.other()
    lab.server(web, 80, "web")
    net.sync([A], [port(8080, 80, "10.231.1.2", "web", host_ip=HOST_LINK)])
    assert lab.connect(other, HOST_LINK, 8080) == OTHER + " web"
    assert lab.connect(None, HOST_LINK, 8080) == HOST_LINK + " web"
    assert lab.connect(None, "10.231.1.1", 8080) == "error ConnectionRefusedError"
    assert lab.connect(None, "127.0.0.1", 8080) == "error ConnectionRefusedError"
    # host_ip 127.0.0.1: this host only.
    net.sync([A], [port(8080, 80, "10.231.1.2", "web", host_ip=HOST_LINK),
                   port(8081, 80, "10.231.1.2", "web", host_ip="127.0.0.1")])
    assert lab.connect(None, "127.0.0.1", 8081) == "10.231.1.1 web"
    assert lab.connect(other, HOST_LINK, 8081) == "error ConnectionRefusedError"
    assert lab.connect(None, HOST_LINK, 8081) == "error ConnectionRefusedError"


def test_nat_masquerades_what_leaves_the_subnet_and_keeps_others_out(lab):
    net.ensure_network(A, [A, B], [])
    net.ensure_network(B, [A, B], [])
    on_a, on_b = lab.pod(), lab.pod()
    net.attach_pod(A, on_a, "10.231.1.2")
    net.attach_pod(B, on_b, "10.231.2.2")
    other = lab.other()
    lab.server(other, 9000, "other")
    lab.server(on_a, 9001, "a")
    lab.server(on_b, 9002, "b")
    for subnet in ("10.231.1.0/24", "10.231.2.0/24"):  # the other machine knows the way to both
        sh(*lab.inside(other, ["ip", "route", "add", subnet, "via", HOST_LINK]))
    assert lab.connect(on_a, OTHER, 9000) == HOST_LINK + " other"     # nat: masqueraded
    assert lab.connect(on_b, OTHER, 9000) == "10.231.2.2 other"       # no nat: routed as is
    assert lab.connect(other, "10.231.2.2", 9002) == OTHER + " b"     # a routed network is reachable
    assert lab.connect(other, "10.231.1.2", 9001, DROPPED) == "error TimeoutError"  # a NAT network is not
    assert lab.connect(on_a, "10.231.2.2", 9002, DROPPED) == "error TimeoutError"   # nor one network from another
    assert lab.connect(on_b, "10.231.1.2", 9001, DROPPED) == "error TimeoutError"


def test_a_conflicting_published_port_is_refused(lab):
    net.ensure_network(A)
    web = lab.pod()
    net.attach_pod(A, web, "10.231.1.2")
    net.sync([A], [port(8080, 80, "10.231.1.2", "web")])
    assert net.port_in_use("tcp", 8080) == "published by jetpack for pod web"
    assert net.port_in_use("tcp", 8080, "10.231.1.1") == "published by jetpack for pod web"  # any address
    assert net.port_in_use("udp", 8080) == net.port_in_use("tcp", 8081) == ""
    with pytest.raises(InUse, match=r"cannot publish tcp port 8080 on every host address for pod api: it is "
                                    r"published by jetpack for pod web\. Choose another host_port"):
        net.check_ports([port(8080, 80, "10.231.1.3", "api")])
    with pytest.raises(InUse, match="published twice"):
        net.sync([A], [port(8080, 80, "10.231.1.2", "web"), port(8080, 81, "10.231.1.3", "api")])
    lab.server(None, 9090, "host service", host="127.0.0.1")
    assert "a socket of the host is bound to tcp 0.0.0.0 port 9090" in net.port_in_use("tcp", 9090)
    with pytest.raises(InUse, match="it is a socket of the host"):
        net.check_ports([port(9090, 80, "10.231.1.3", "api")])
    with pytest.raises(InvalidInput, match="not an address of this host"):
        net.port_in_use("tcp", 9091, "10.231.9.9")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # this process is on the host
        udp.bind(("10.231.1.1", 9053))
        assert "bound to udp 10.231.1.1 port 9053" in net.port_in_use("udp", 9053, "10.231.1.1")
        assert "bound to udp 0.0.0.0 port 9053" in net.port_in_use("udp", 9053)
        assert net.port_in_use("tcp", 9053) == ""
    net.check_ports([port(8081, 80, "10.231.1.3", "api")])


def test_a_bad_ruleset_changes_nothing(lab):
    net.ensure_network(A)
    net.sync([A], [port(8080, 80, "10.231.1.2", "web")])
    before = sh("nft", "list", "ruleset").stdout
    good = net.render_ruleset([A], [])
    broken = good.replace("ct status dnat accept", "ct status dnat acept")
    with pytest.raises(CommandError, match="Nothing was changed"):
        net.apply_ruleset(broken)
    assert sh("nft", "list", "ruleset").stdout == before
    # Valid syntax the kernel refuses (NAT in a filter chain), after the deletion in the same transaction.
    refused = good.replace("ct status dnat accept", "meta nfproto ipv4 tcp dport 1 dnat ip to 10.231.1.9")
    with pytest.raises(CommandError, match="Nothing was changed"):
        net.apply_ruleset(refused)
    assert sh("nft", "list", "ruleset").stdout == before
    with pytest.raises(InvalidInput, match="does more than define table inet jetpack"):
        net.apply_ruleset(good + "table ip somebody_else {\n}\n")
    assert sh("nft", "list", "ruleset").stdout == before


def test_forwarding_recorded_when_the_table_exists_already(lab):
    net.ensure_network(B, [B], [port(8080, 80, "10.231.2.2", "web")])
    rules = sh("nft", "list", "table", "inet", "jetpack").stdout
    for key in net.FORWARDING.values():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write("0")
    result = net.ensure_network(A)  # IPv6 too now; rules untouched, the comment updated
    assert result["forwarding_enabled"] == sorted(net.FORWARDING.values())
    assert net.recorded_forwarding() == sorted(net.FORWARDING.values())
    after = sh("nft", "list", "table", "inet", "jetpack").stdout
    assert [line for line in after.splitlines() if "comment" not in line or "pod web" in line] == \
        [line for line in rules.splitlines() if "comment" not in line or "pod web" in line]


def test_removing_everything_leaves_nothing(lab):
    before = {key: sysctl(key) for key in net.FORWARDING.values()}
    net.ensure_network(A, [A, B], [])
    net.ensure_network(B, [A, B], [])
    pods = [lab.pod() for _pod in range(3)]
    attached = [net.attach_pod(A, pods[0], "10.231.1.2", "fd31:231:1::2"),
                net.attach_pod(A, pods[1], "10.231.1.3"),
                net.attach_pod(B, pods[2], "10.231.2.2")]
    ports = [port(8080, 80, "10.231.1.2", "web"), port(8081, 80, "10.231.2.2", "api")]
    net.sync([A, B], ports)
    # Detaching a running pod removes its veth; again, there is nothing left to do.
    assert net.detach_pod(attached[1]) is True
    assert net.detach_pod(attached[1]) is False
    assert attached[1]["host_ifname"] not in link_names()
    assert "eth0" not in sh(*lab.inside(pods[1], ["ip", "-br", "link"])).stdout
    for pid in pods:
        lab.stop(pid)
    for attachment in attached:
        net.detach_pod(attachment)  # the kernel may still be tearing the namespace down
        assert net.detach_pod(attachment) is False
    first = net.remove_network(B, [A], ports[:1])
    assert first["bridge_removed"] and not first["table_removed"]
    assert "jpt-b" not in sh("nft", "list", "table", "inet", "jetpack").stdout
    last = net.remove_network(A, restore_forwarding=True)
    assert last["bridge_removed"] and last["table_removed"]
    assert last["forwarding"] == last["restored"] == sorted(k for k, v in before.items() if v != "1")
    assert {key: sysctl(key) for key in net.FORWARDING.values()} == before
    assert link_names() == ["lo"]
    assert nft_tables() == ""
    again = net.remove_network(A)
    assert not again["bridge_removed"] and again["table_removed"] and again["forwarding"] == []


def test_sync_host_reads_twice_when_all_is_in_place_and_repairs_what_is_not(lab, monkeypatch):
    ports = [port(8080, 80, "10.231.1.2", "web", address6="fd31:231:1::2")]
    first = net.sync_host([A, B], ports, [])
    assert first["created"] == ["jpt-a", "jpt-b"] and first["table"] == "replaced"

    def picture():
        """The bridges as `ip addr` shows them but for their index; the rules but for the table's comment
        (it records the forwarding jetpack turned on, and goes with the table)."""
        rules = [line for line in sh("nft", "list", "ruleset").stdout.splitlines() if not line.startswith('\tcomment "')]
        return [sh("ip", "addr", "show", "dev", bridge).stdout.split(":", 1)[1] for bridge in ("jpt-a", "jpt-b")] + rules
    before = picture()
    ran = []
    real_run = net.run
    monkeypatch.setattr(net, "run", lambda argv, **kw: ran.append(argv) or real_run(argv, **kw))
    again = net.sync_host([B, A], ports, [])
    assert ran == [net.argv_bridges_show(), net.argv_nft_list_table()]
    assert again == {"created": [], "removed": [], "forwarding_enabled": [], "table": "unchanged"}
    # What a reboot, a firewall reload or a hand on the host undoes, the next sync makes again.
    sh("ip", "link", "del", "jpt-b")
    sh("ip", "addr", "del", "10.231.1.1/24", "dev", "jpt-a")
    sh("ip", "link", "set", "jpt-a", "down")
    sh("nft", "delete", "table", "inet", "jetpack")
    repaired = net.sync_host([A, B], ports, [])
    assert repaired["created"] == ["jpt-b"] and repaired["table"] == "replaced"
    assert picture() == before
    # The networks no pod uses lose their bridge; the table goes with the last one.
    assert net.sync_host([A], [], [B])["removed"] == ["jpt-b"]
    assert "jpt-b" not in link_names() and "jpt-b" not in sh("nft", "list", "table", "inet", "jetpack").stdout
    assert net.sync_host([], [], [A, B]) == {"created": [], "removed": ["jpt-a"], "forwarding_enabled": [],
                                             "table": "removed"}
    assert link_names() == ["lo"] and nft_tables() == ""


def test_sync_host_refuses_bad_input_and_leaves_others_bridges_alone(lab):
    with pytest.raises(InvalidInput, match="in no network given"):
        net.sync_host([A], [port(8080, 80, "10.231.9.2", "web")], [])
    assert link_names() == ["lo"] and nft_tables() == ""
    sh("ip", "link", "add", "name", "jpt-b", "type", "bridge")  # named as network tb's, but not marked ours
    assert net.sync_host([], [], [B]) == {"created": [], "removed": [], "forwarding_enabled": [],
                                          "table": "unchanged"}
    assert "jpt-b" in link_names()
    with pytest.raises(AlreadyExists, match="jpt-b exists and is not network tb's bridge"):
        net.sync_host([B], [], [])


def test_forwarding_is_reported_and_left_on_by_default(lab):
    for key in net.FORWARDING.values():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write("0")
    net.ensure_network(A)
    result = net.remove_network(A)
    assert result["forwarding"] == sorted(net.FORWARDING.values()) and result["restored"] == []
    assert "left it on" in result["message"]
    assert all(sysctl(key) == "1" for key in net.FORWARDING.values())


def test_attach_refuses_clearly_and_leaves_nothing(lab):
    pod = lab.pod()
    with pytest.raises(NotFound, match="network ta has no bridge jpt-a: ensure_network"):
        net.attach_pod(A, pod, "10.231.1.2")
    net.ensure_network(A)
    with pytest.raises(InvalidInput, match="refusing to configure the host as a pod"):
        net.attach_pod(A, os.getpid(), "10.231.1.2")
    with pytest.raises(InvalidInput, match="is the network's gateway"):
        net.attach_pod(A, pod, "10.231.1.1")
    with pytest.raises(InvalidInput, match="not a host address of 10.231.1.0/24"):
        net.attach_pod(A, pod, "10.231.2.2")
    first = net.attach_pod(A, pod, "10.231.1.2", pod_id="p1")
    with pytest.raises(AlreadyExists, match="attached to network ta already"):
        net.attach_pod(A, pod, "10.231.1.3", pod_id="p1")
    net.ensure_network(B)
    with pytest.raises(AlreadyExists, match="has an interface named eth0 already"):
        net.attach_pod(B, pod, "10.231.2.2", pod_id="p1")
    # A failure inside the pod (a second default route) removes the new veth again.
    with pytest.raises(CommandError, match="ip failed"):
        net.attach_pod(B, pod, "10.231.2.2", ifname="eth1", pod_id="p1")
    assert [name for name in link_names() if name.startswith("jpv")] == [first["host_ifname"]]
    second = net.attach_pod(B, pod, "10.231.2.2", ifname="eth1", default_route=False, pod_id="p1")
    inside = sh(*lab.inside(pod, ["ip", "-4", "-br", "addr"])).stdout
    assert "10.231.1.2/24" in inside and "10.231.2.2/24" in inside
    assert second["host_ifname"] == net.veth_name("p1", "tb", "eth1")


def test_pods_cannot_reach_the_hosts_loopback(lab):
    """route_localnet=1 on the bridge would let a pod reach 127.0.0.1 services of the host: guarded."""
    net.ensure_network(A, [A], [])
    pod = lab.pod()
    net.attach_pod(A, pod, "10.231.1.2")
    lab.server(None, 9100, "loopback only", host="127.0.0.1")
    # The pod sends to 127.0.0.1 through the bridge (what a hostile pod can do, being root inside).
    for argv in (["ip", "addr", "flush", "dev", "lo"], ["ip", "route", "add", "127.0.0.0/8", "via", "10.231.1.1"],
                 [sys.executable, "-c", "open('/proc/sys/net/ipv4/conf/eth0/route_localnet', 'w').write('1')"]):
        sh(*lab.inside(pod, argv))
    sh("nft", "flush", "chain", "inet", "jetpack", "guard")  # without the guard: the hole is real
    assert lab.connect(pod, "127.0.0.1", 9100) == "10.231.1.2 loopback only"
    net.sync([A], [])
    assert lab.connect(pod, "127.0.0.1", 9100, DROPPED) == "error TimeoutError"


def test_host_addresses_in_use(lab):
    net.ensure_network(A)
    used = net.addresses_in_use()
    for address in ("10.231.1.1", "fd31:231:1::1", "127.0.0.1", "::1"):
        assert ipaddress.ip_address(address) in used
    assert ipaddress.ip_address("10.231.1.2") not in used
    assert ipaddress.ip_network("10.231.1.0/24") in net.subnets_in_use()
    assert net.jetpack_bridges() == {"jpt-a": "ta"}


def test_no_test_namespace_or_interface_is_left_on_the_machine():
    need(os.geteuid() == 0, "needs root")
    assert not [name for name in netns_names() if name.startswith("jpt-")]
    # Pods' veths ("jpv...") are left out: the tests' pods run in lab namespaces, and a real pod of
    # this machine (the demo's) may well be running beside the tests.
    assert not [name for name in link_names() if name.startswith("jpt")]
