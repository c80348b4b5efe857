"""linux_network.py without a kernel: the ruleset it renders (golden text), the argv it runs, validation,
the parsing of nft output and the error classification.

The golden ruleset is also what nft 1.0.6 lists back after loading it, but for the order of anonymous
set elements, which `canonical` sorts as text (nft lists `{ 53, 18112 }`) (checked when it was
written; tests/integration/test_linux_network.py loads rendered
rulesets into a real kernel).
"""
import ipaddress
import json
import re

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import linux_network as L
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    AlreadyExists, CommandError, InUse, InvalidInput, NotFound)

A = {"name": "web-net", "bridge": "jp-web", "subnet": "10.231.1.0/24", "gateway": "10.231.1.1",
     "subnet6": "fd31:231:1::/64", "gateway6": "fd31:231:1::1", "nat": True}
B = {"name": "routed", "bridge": "jp-routed", "subnet": "10.231.2.0/24", "gateway": "10.231.2.1", "nat": False}


def tabs(text):
    """nft indents with tabs; the golden texts below are written with 4 spaces (pep8)."""
    return re.sub(r"(?m)^((?:    )+)", lambda m: "\t" * (len(m.group(1)) // 4), text)


PORTS = [
    {"protocol": "tcp", "host_port": 8080, "pod_port": 80, "address": "10.231.1.2", "address6": "fd31:231:1::2",
     "pod": "web"},
    {"protocol": "udp", "host_port": 5353, "pod_port": 53, "host_ip": "192.0.2.10", "address": "10.231.2.2",
     "pod": "dns"},
    {"protocol": "tcp", "host_port": 443, "pod_port": 8443, "host_ip": "2001:db8::10", "address": "10.231.1.3",
     "address6": "fd31:231:1::3", "pod": "tls"},
]

GOLDEN = tabs("""\
table inet jetpack {
    comment "jetpack pod networks; turned on net.ipv4.ip_forward net.ipv6.conf.all.forwarding"
    chain guard {
        type filter hook prerouting priority raw; policy accept;
        iifname { "jp-routed", "jp-web" } ip saddr 127.0.0.0/8 drop
        iifname { "jp-routed", "jp-web" } ip daddr 127.0.0.0/8 drop
    }

    chain services {
        type filter hook input priority filter; policy accept;
        iifname "jp-routed" ip daddr 10.231.2.1 udp dport 53 accept
        iifname "jp-routed" ip daddr 10.231.2.1 tcp dport { 18112, 53 } accept
        iifname "jp-web" ip daddr 10.231.1.1 udp dport 53 accept
        iifname "jp-web" ip daddr 10.231.1.1 tcp dport { 18112, 53 } accept
        iifname "jp-web" ip6 daddr fd31:231:1::1 udp dport 53 accept
        iifname "jp-web" ip6 daddr fd31:231:1::1 tcp dport { 18112, 53 } accept
        ip daddr { 10.231.1.1, 10.231.2.1 } udp dport 53 drop
        ip daddr { 10.231.1.1, 10.231.2.1 } tcp dport { 18112, 53 } drop
        ip6 daddr fd31:231:1::1 udp dport 53 drop
        ip6 daddr fd31:231:1::1 tcp dport { 18112, 53 } drop
    }

    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
        ct status dnat accept
        iifname "jp-routed" oifname "jp-routed" accept
        iifname "jp-web" oifname "jp-web" accept
        iifname { "jp-routed", "jp-web" } oifname { "jp-routed", "jp-web" } drop
        oifname "jp-web" drop
    }

    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local jump published
    }

    chain output {
        type nat hook output priority -100; policy accept;
        fib daddr type local jump published
    }

    chain published {
        ip6 daddr 2001:db8::10 tcp dport 443 dnat ip6 to [fd31:231:1::3]:8443 comment "pod tls"
        meta nfproto ipv4 tcp dport 8080 dnat ip to 10.231.1.2:80 comment "pod web"
        ip6 daddr != ::1 tcp dport 8080 dnat ip6 to [fd31:231:1::2]:80 comment "pod web"
        ip daddr 192.0.2.10 udp dport 5353 dnat ip to 10.231.2.2:53 comment "pod dns"
    }

    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "jp-routed" ip saddr 127.0.0.0/8 masquerade
        oifname "jp-routed" ip saddr 10.231.2.0/24 ct status dnat masquerade
        oifname "jp-web" ip saddr 127.0.0.0/8 masquerade
        oifname "jp-web" ip saddr 10.231.1.0/24 ct status dnat masquerade
        oifname "jp-web" ip6 saddr fd31:231:1::/64 ct status dnat masquerade
        oifname != "jp-web" ip saddr 10.231.1.0/24 masquerade
        oifname != "jp-web" ip6 saddr fd31:231:1::/64 masquerade
    }
}
""")

GOLDEN_ONE_NETWORK = tabs("""\
table inet jetpack {
    comment "jetpack pod networks"
    chain guard {
        type filter hook prerouting priority raw; policy accept;
        iifname "jp-default" ip saddr 127.0.0.0/8 drop
        iifname "jp-default" ip daddr 127.0.0.0/8 drop
    }

    chain services {
        type filter hook input priority filter; policy accept;
        iifname "jp-default" ip daddr 172.23.0.1 udp dport 53 accept
        iifname "jp-default" ip daddr 172.23.0.1 tcp dport { 18112, 53 } accept
        ip daddr 172.23.0.1 udp dport 53 drop
        ip daddr 172.23.0.1 tcp dport { 18112, 53 } drop
    }

    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
        ct status dnat accept
        iifname "jp-default" oifname "jp-default" accept
        oifname "jp-default" drop
    }

    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
    }

    chain output {
        type nat hook output priority -100; policy accept;
    }

    chain published {
    }

    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "jp-default" ip saddr 127.0.0.0/8 masquerade
        oifname "jp-default" ip saddr 172.23.0.0/16 ct status dnat masquerade
        oifname != "jp-default" ip saddr 172.23.0.0/16 masquerade
    }
}
""")

DEFAULT = {"name": "default", "bridge": "jp-default", "subnet": "172.23.0.0/16", "gateway": "172.23.0.1", "nat": True}

# `nft -j list chain inet jetpack published` of GOLDEN's ports, as nft 1.0.6 printed it (handles as printed).
PUBLISHED_JSON = (
    '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},'
    ' {"chain": {"family": "inet", "table": "jetpack", "name": "published", "handle": 5}},'
    ' {"rule": {"family": "inet", "table": "jetpack", "chain": "published", "handle": 15, "expr": [{"match":'
    ' {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "fd31:231:1::1"}},'
    ' {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 443}},'
    ' {"dnat": {"family": "ip6", "addr": "fd31:231:1::3", "port": 8443}}]}},'
    ' {"rule": {"family": "inet", "table": "jetpack", "chain": "published", "handle": 16, "comment": "pod web",'
    ' "expr": [{"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}}, {"match": {"op":'
    ' "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}}, {"dnat": {"family": "ip",'
    ' "addr": "10.231.1.2", "port": 80}}]}},'
    ' {"rule": {"family": "inet", "table": "jetpack", "chain": "published", "handle": 18, "comment": "pod dns",'
    ' "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right":'
    ' "10.231.1.1"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right":'
    ' 5353}}, {"dnat": {"family": "ip", "addr": "10.231.1.3", "port": 53}}]}}]}'
)


# --- the ruleset ----------------------------------------------------------------------------

def test_render_golden():
    assert L.render_ruleset([A, B], PORTS, ["net.ipv6.conf.all.forwarding", "net.ipv4.ip_forward"]) == GOLDEN


def test_render_does_not_depend_on_input_order():
    assert L.render_ruleset([B, A], PORTS[::-1], ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]) == GOLDEN


def test_render_default_network_without_ports():
    assert L.render_ruleset([DEFAULT], []) == GOLDEN_ONE_NETWORK


def test_render_nothing_is_an_empty_table():
    text = L.render_ruleset([], [])
    assert "drop" not in text and "masquerade" not in text and "jump" not in text
    assert text.startswith('table inet jetpack {\n\tcomment "jetpack pod networks"\n')


def test_unknown_forwarding_keys_are_not_recorded():
    assert L.table_comment(["net.ipv4.ip_forward", "kernel.panic"]) == \
        "jetpack pod networks; turned on net.ipv4.ip_forward"


@pytest.mark.parametrize("ports, match", [
    ([dict(PORTS[0]), dict(PORTS[0], pod="other")], r"tcp port 8080 on every host address is published twice "
                                                    r"\(pods other and web\)"),
    ([dict(PORTS[1]), dict(PORTS[1], host_ip=None, pod="any")], "udp port 5353 .* published twice"),
])
def test_render_refuses_a_port_published_twice(ports, match):
    with pytest.raises(InUse, match=match):
        L.render_ruleset([A, B], ports)


def test_same_port_on_two_addresses_or_protocols_is_fine():
    ports = [dict(PORTS[1], host_ip="192.0.2.10"), dict(PORTS[1], host_ip="192.0.2.11"),
             dict(PORTS[1], protocol="tcp", host_ip=None)]
    assert L.render_ruleset([A, B], ports).count("dport 5353") == 3


@pytest.mark.parametrize("networks, ports, match", [
    ([A, dict(B, subnet="10.231.0.0/16", gateway="10.231.0.1")], [], "overlap"),
    ([A, dict(B, bridge="jp-web")], [], "share a name or a bridge"),
    ([A], [PORTS[1]], "10.231.2.2, which is in no network given"),
    ([A, B], [dict(PORTS[0], address6="fd99::2")], "fd99::2, which is in no network given"),
])
def test_render_refuses_inconsistent_input(networks, ports, match):
    with pytest.raises(InvalidInput, match=match):
        L.render_ruleset(networks, ports)


def test_table_comment_round_trip():
    assert L.parse_table_comment(GOLDEN) == ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
    assert L.parse_table_comment(GOLDEN_ONE_NETWORK) == []
    assert L.parse_table_comment("") == []
    rewritten = L._with_comment(GOLDEN_ONE_NETWORK, L.table_comment(["net.ipv4.ip_forward"]))
    assert L.parse_table_comment(rewritten) == ["net.ipv4.ip_forward"]
    assert rewritten == L.render_ruleset([DEFAULT], [], ["net.ipv4.ip_forward"])


def test_canonical_sorts_anonymous_set_elements_only():
    listed = GOLDEN.replace('{ "jp-routed", "jp-web" }', '{ "jp-web", "jp-routed" }')
    assert listed != GOLDEN and L.canonical(listed) == L.canonical(GOLDEN) == GOLDEN
    assert L.canonical(GOLDEN.replace("jp-routed", "jp-other")) != GOLDEN


def test_parse_published():
    found = L.parse_published(PUBLISHED_JSON)
    assert found == [
        {"protocol": "tcp", "host_port": 443, "host_ip": ipaddress.ip_address("fd31:231:1::1"), "pod": ""},
        {"protocol": "tcp", "host_port": 8080, "host_ip": None, "pod": "web"},
        {"protocol": "udp", "host_port": 5353, "host_ip": ipaddress.ip_address("10.231.1.1"), "pod": "dns"},
    ]
    assert L.parse_published('{"nftables": []}') == []


# --- validation -----------------------------------------------------------------------------

def test_network_defaults_and_normalisation():
    n = L.network({"name": "x", "bridge": "jp-x", "subnet": "10.9.0.0/16", "subnet6": "fd09::/64"})
    assert (str(n.gateway), str(n.gateway6), n.nat) == ("10.9.0.1", "fd09::1", True)


@pytest.mark.parametrize("change, field", [
    ({"name": "Bad_Name"}, "network.name"),
    ({"bridge": "jp-this-name-is-too-long"}, "networks[web-net].bridge"),
    ({"bridge": "-jp"}, "networks[web-net].bridge"),
    ({"bridge": "jp web"}, "networks[web-net].bridge"),
    ({"subnet": "10.231.1.1/24"}, "networks[web-net].subnet"),       # host bits set
    ({"subnet": "fd00::/64"}, "networks[web-net].subnet"),
    ({"subnet": "10.231.1.0/31"}, "networks[web-net].subnet"),
    ({"gateway": "10.231.2.1"}, "networks[web-net].gateway"),
    ({"gateway": "10.231.1.255"}, "networks[web-net].gateway"),      # broadcast
    ({"gateway": "10.231.1.0"}, "networks[web-net].gateway"),
    ({"subnet6": "10.0.0.0/8"}, "networks[web-net].subnet6"),
    ({"subnet6": None}, "networks[web-net].gateway6"),              # gateway6 without subnet6
    ({"nat": "yes"}, "networks[web-net].nat"),
])
def test_network_refused(change, field):
    with pytest.raises(InvalidInput) as info:
        L.network(dict(A, **change))
    assert info.value.field == field


@pytest.mark.parametrize("change, match", [
    ({"protocol": "sctp"}, "use tcp or udp"),
    ({"host_port": 0}, "not a port number"),
    ({"pod_port": 65536}, "not a port number"),
    ({"host_port": True}, "not a port number"),
    ({"host_ip": "localhost"}, "not an IP address"),
    ({"address": "fd00::1"}, "the pod's address"),
    ({"host_ip": "2001:db8::1", "address6": None}, "host_ip 2001:db8::1 is IPv6 but the pod has no IPv6"),
    ({"host_ip": "::1"}, "::1 cannot be published"),
])
def test_port_refused(change, match):
    with pytest.raises(InvalidInput, match=match):
        L.port(dict(PORTS[0], **change))


def test_comment_text_is_sanitised():
    rendered = L.render_ruleset([A], [dict(PORTS[0], pod='x" drop; table ip evil {')])
    assert 'comment "pod x_ drop_ table ip evil _"' in rendered


def test_interface_names():
    assert L.veth_name("3c1f", "default", "eth0") == L.veth_name("3c1f", "default", "eth0")
    names = {L.veth_name("3c1f", "default", "eth0"), L.veth_name("3c1f", "default", "eth1"),
             L.veth_name("3c20", "default", "eth0"), L.veth_name("3c1f", "other", "eth0")}
    assert len(names) == 4
    assert all(len(name) == 15 and name.startswith("jpv") and L.ifname_arg(name) for name in names)
    mac = L.bridge_mac("jp-default")
    assert mac == L.bridge_mac("jp-default") != L.bridge_mac("jp-other")
    assert int(mac[:2], 16) & 0x03 == 0x02  # locally administered, unicast


# --- argv -----------------------------------------------------------------------------------

ARGV = [
    (L.argv_link_show("jp-a"), ["ip", "-j", "-d", "link", "show", "dev", "jp-a"]),
    (L.argv_link_show(kind="bridge"), ["ip", "-j", "-d", "link", "show", "type", "bridge"]),
    (L.argv_addr_show(), ["ip", "-j", "addr", "show"]),
    (L.argv_addr_show("jp-a"), ["ip", "-j", "addr", "show", "dev", "jp-a"]),
    (L.argv_bridges_show(), ["ip", "-j", "-d", "addr", "show", "type", "bridge"]),
    (L.argv_bridge_add("jp-a", "02:00:00:00:00:01"),
     ["ip", "link", "add", "name", "jp-a", "address", "02:00:00:00:00:01", "type", "bridge"]),
    (L.argv_link_alias("jp-a", "jetpack:network=a"), ["ip", "link", "set", "dev", "jp-a", "alias", "jetpack:network=a"]),
    (L.argv_link_up("jp-a"), ["ip", "link", "set", "dev", "jp-a", "up"]),
    (L.argv_link_del("jpv0123456789ab"), ["ip", "link", "del", "dev", "jpv0123456789ab"]),
    (L.argv_addr_add("jp-a", ipaddress.ip_interface("10.0.0.1/24")), ["ip", "addr", "add", "10.0.0.1/24", "dev", "jp-a"]),
    (L.argv_addr_add("jp-a", "fd00::1/64", nodad=True), ["ip", "addr", "add", "fd00::1/64", "dev", "jp-a", "nodad"]),
    (L.argv_veth_add("jpv0123456789ab", "jp-a", "eth0", "/proc/self/fd/5"),
     ["ip", "link", "add", "name", "jpv0123456789ab", "up", "master", "jp-a", "type", "veth",
      "peer", "name", "eth0", "netns", "/proc/self/fd/5"]),
    (L.argv_in_netns("/proc/self/fd/5", L.argv_ip_batch()),
     ["nsenter", "--net=/proc/self/fd/5", "--", "ip", "-batch", "-"]),
    (L.argv_nft_apply(), ["nft", "-f", "-"]),
    (L.argv_nft_list_table(), ["nft", "list", "table", "inet", "jetpack"]),
    (L.argv_nft_list_chain_json("published"), ["nft", "-j", "list", "chain", "inet", "jetpack", "published"]),
    (L.argv_ra_routes(), ["ip", "-6", "-j", "route", "show", "proto", "ra"]),
]


@pytest.mark.parametrize("argv, expected", ARGV, ids=[" ".join(e[:4]) for _a, e in ARGV])
def test_argv(argv, expected):
    assert argv == expected


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "éth0", "x" * 16, None, "eth0\n"])
def test_argv_refuses_bad_interface_names(name):
    with pytest.raises(InvalidInput):
        L.argv_link_del(name)


def test_pod_batch():
    assert L.pod_batch("eth0", "10.231.1.2", 24, "10.231.1.1", "fd31::2", 64, "fd31::1") == (
        "link set dev eth0 up\n"
        "addr add 10.231.1.2/24 dev eth0\n"
        "route add default via 10.231.1.1 dev eth0\n"
        "addr add fd31::2/64 dev eth0 nodad\n"
        "route add ::/0 via fd31::1 dev eth0\n")
    assert L.pod_batch("eth1", "10.231.2.2", 24) == "link set dev eth1 up\naddr add 10.231.2.2/24 dev eth1\n"


# --- running and errors ---------------------------------------------------------------------

@pytest.mark.parametrize("stderr, cls, text", [
    ("RTNETLINK answers: File exists\n", AlreadyExists, "ip failed: RTNETLINK answers: File exists. Do this"),
    ('Device "jp-a" does not exist.\n', NotFound, 'Device "jp-a" does not exist'),
    ('Cannot find device "jp-a"\n', NotFound, "Cannot find device"),
    ("RTNETLINK answers: Operation not permitted\n", CommandError, "need root"),
    ("Error: something else\n", CommandError, "ip failed: Error: something else. Do this"),
])
def test_error_for(stderr, cls, text):
    argv = ["ip", "link", "add", "name", "jp-a", "type", "bridge"]
    err = L.error_for(argv, 2, "", stderr, "Do this")
    assert isinstance(err, cls) and isinstance(err, CommandError)
    assert text in str(err) and "(command: ip link add name jp-a type bridge; exit status 2)" in str(err)
    assert (err.argv, err.rc, err.stderr) == (argv, 2, stderr)


def test_error_names_the_command_nsenter_runs():
    err = L.error_for(L.argv_in_netns("/proc/self/fd/5", L.argv_ip_batch()), 1, "", "Command failed -:3\n")
    assert str(err).startswith("ip failed: Command failed -:3.")


def test_run_reports_a_missing_tool():
    with pytest.raises(CommandError, match="cannot run jetpack-no-such-tool: .*; install jetpack-no-such-tool"):
        L.run(["jetpack-no-such-tool"])


def test_run_passes_input_and_environment():
    rc, out, _err = L.run(["sh", "-c", 'cat; printf " $LC_ALL"'], input="hello")
    assert (rc, out) == (0, "hello C")


class FakeRun:
    """Records argv and stdin; answers from a {argv tuple: (rc, out, err)} table, (0, "", "") otherwise."""

    def __init__(self, answers=None):
        self.calls, self.answers = [], answers or {}

    def __call__(self, argv, input=None, pass_fds=()):
        self.calls.append((list(argv), input))
        return self.answers.get(tuple(argv), (0, "", ""))


def test_apply_ruleset_replaces_only_the_collections_table(monkeypatch):
    fake = FakeRun()
    monkeypatch.setattr(L, "run", fake)
    L.apply_ruleset(GOLDEN)
    assert fake.calls == [(["nft", "-f", "-"], "table inet jetpack\ndelete table inet jetpack\n" + GOLDEN)]


@pytest.mark.parametrize("extra", ["table ip filter {\n}\n", "flush ruleset\n", "delete table ip nat\n",
                                   "add rule ip filter input drop\n"])
def test_apply_ruleset_refuses_anything_else(monkeypatch, extra):
    fake = FakeRun()
    monkeypatch.setattr(L, "run", fake)
    with pytest.raises(InvalidInput, match="does more than define table inet jetpack"):
        L.apply_ruleset(GOLDEN + extra)
    assert fake.calls == []


def test_nft_failure_says_nothing_changed(monkeypatch):
    err = "/dev/stdin:9:3-40: Error: Could not process rule: Operation not supported\n"
    monkeypatch.setattr(L, "run", FakeRun({("nft", "-f", "-"): (1, "", err)}))
    with pytest.raises(CommandError, match="Nothing was changed. The kernel lacks an nftables feature"):
        L.apply_ruleset(GOLDEN)


def test_sync_loads_nothing_when_the_table_reads_as_rendered(monkeypatch):
    listing = L.render_ruleset([A, B], PORTS, ["net.ipv4.ip_forward"])
    fake = FakeRun({tuple(L.argv_nft_list_table()): (0, listing, "")})
    monkeypatch.setattr(L, "run", fake)
    assert L.sync([B, A], PORTS[::-1]) is False
    assert [argv for argv, _input in fake.calls] == [L.argv_nft_list_table()]
    assert L.sync([A], []) is True  # keeps the recorded forwarding
    assert fake.calls[-1][1].endswith(L.render_ruleset([A], [], ["net.ipv4.ip_forward"]))


def test_published_ports_and_port_in_use_read_the_live_table(monkeypatch):
    monkeypatch.setattr(L, "run", FakeRun({tuple(L.argv_nft_list_chain_json("published")): (0, PUBLISHED_JSON, "")}))
    monkeypatch.setattr(L, "_socket_user", lambda *args: "")
    assert L.port_in_use("tcp", 8080) == "published by jetpack for pod web"
    assert L.port_in_use("udp", 5353) == "published by jetpack on 10.231.1.1 for pod dns"
    assert L.port_in_use("tcp", 443) == "published by jetpack on fd31:231:1::1 for pod ?"
    assert L.port_in_use("udp", 8080) == ""


def test_no_table_means_nothing_published_and_nothing_recorded(monkeypatch):
    missing = (1, "", "Error: No such file or directory\nlist table inet jetpack\n")
    monkeypatch.setattr(L, "run", FakeRun({tuple(L.argv_nft_list_chain_json("published")): missing,
                                           tuple(L.argv_nft_list_table()): missing}))
    assert L.published_ports() == [] and L.recorded_forwarding() == [] and L.table_listing() == ""


def test_check_ports_refuses_duplicates_among_the_new(monkeypatch):
    monkeypatch.setattr(L, "port_in_use", lambda *args: "")
    with pytest.raises(InUse, match=r"tcp port 8080 on every host address is asked for twice \(pods web and api\)"):
        L.check_ports([PORTS[0], dict(PORTS[0], pod="api")])
    L.check_ports(PORTS[:2])


def test_forwarding_warnings_name_the_interfaces_living_on_router_advertisements(monkeypatch):
    routes = json.dumps([{"dst": "default", "gateway": "fe80::1", "dev": "eth0", "protocol": "ra"},
                         {"dst": "2001:db8::/64", "dev": "eth0", "protocol": "ra"}])
    monkeypatch.setattr(L, "run", FakeRun({tuple(L.argv_ra_routes()): (0, routes, "")}))
    assert L.forwarding_warnings(["net.ipv4.ip_forward"]) == []
    warning, = L.forwarding_warnings(["net.ipv6.conf.all.forwarding"])
    assert "eth0 got routes from them: set net.ipv6.conf.<interface>.accept_ra=2" in warning
    monkeypatch.setattr(L, "run", FakeRun({tuple(L.argv_ra_routes()): (0, "[]", "")}))
    assert L.forwarding_warnings(["net.ipv6.conf.all.forwarding"]) == []


def test_json_output_is_required(monkeypatch):
    monkeypatch.setattr(L, "run", FakeRun({tuple(L.argv_addr_show()): (0, "1: lo: <LOOPBACK>", "")}))
    with pytest.raises(CommandError, match="too old"):
        L.addresses_in_use()


def test_addresses_and_subnets_in_use(monkeypatch):
    lo = [{"local": "127.0.0.1", "prefixlen": 8}, {"local": "::1", "prefixlen": 128}]
    out = json.dumps([{"ifname": "lo", "addr_info": lo},
                      {"ifname": "eth0", "addr_info": [{"local": "192.0.2.2", "prefixlen": 24}]},
                      {"ifname": "dummy0"}])
    monkeypatch.setattr(L, "run", FakeRun({tuple(L.argv_addr_show()): (0, out, "")}))
    assert L.addresses_in_use() == {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "192.0.2.2")}
    assert ipaddress.ip_network("192.0.2.0/24") in L.subnets_in_use()


def test_the_services_chain_opens_each_gateway_to_its_own_bridge_only():
    """The host service (hostd.py: metadata on 18112, DNS on 53) answers a network's pods on their
    gateway; the same ports on any gateway are dropped for everyone else (another network's pods,
    other machines), so no pod learns another network's pod names."""
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import dns, metadata
    assert (L.METADATA_PORT, L.DNS_PORT) == (metadata.DEFAULT_PORT, dns.PORT)
    chain = L.render_ruleset([A, B], []).split("chain services {")[1].split("}\n\n")[0]
    rules = [line.strip() for line in chain.splitlines()[2:] if line.strip()]
    accepts = [r for r in rules if r.endswith("accept")]
    assert all(r.startswith('iifname "jp-') for r in accepts) and len(accepts) == 6
    assert rules.index(accepts[-1]) < min(rules.index(r) for r in rules if r.endswith("drop"))
    assert L.render_ruleset([], []).count("chain services {\n\t\ttype filter hook input") == 1
