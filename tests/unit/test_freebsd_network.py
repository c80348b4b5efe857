"""FreeBSD pod networking contract (engines/freebsd_network.py), tested without FreeBSD.

- jail(8) network parameters are rendered with the engine's own jail.conf line writer into
  fragments compared with golden files under golden/freebsd/network/, and each fragment is parsed
  independently with the PyPI `jailconf` parser; the expected parameters are written out by hand;
- the pf anchors are golden files too; every rule line carries the pf.conf(5) section that
  justifies it, and the redirects are read back with the parser that reads pfctl's output;
- argv expectations cite ifconfig(8), route(8), pfctl(8) and shared/reference/freebsd/commands.md;
- the parsers and the error classification are fed the real recordings of
  shared/reference/freebsd/outputs/ (split on the first '# ---' line; the test ids carry each
  recording's `source:` and the body lines used, which are the lines the tool printed, per the
  recordings' notes). Texts nobody recorded are the source-derived formats of outputs/MISSING.md
  (or of the FreeBSD source named), and their ids say so.
"""
import re
import subprocess
import sys
from pathlib import Path

import jailconf
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import network
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import freebsd as F
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import freebsd_network as N
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    AlreadyExists, CommandError, InvalidInput, JetpackError, NotFound)
from tests.helpers.samples import sample

GOLDEN = Path(__file__).parent / "golden" / "freebsd" / "network"

JAIL = "jetpack-3c1f5e2a8d4b4f6e9a7c0b1d2e3f4a5b"
KEY = "3c1f5e2a8d4b4f6e9a7c0b1d2e3f4a5b"

# Network definitions as network.py writes them (normalize()), plus the pod's lease on each.
DEFAULT = {"name": "default", "subnet": "172.23.0.0/16", "subnet6": None, "nat": True, "bridge": "jp-default",
           "gateway": "172.23.0.1"}
BACKEND = {"name": "backend", "subnet": "10.88.0.0/24", "subnet6": "fd00:88::/64", "nat": False,
           "bridge": "jp-backend", "gateway": "10.88.0.1", "gateway6": "fd00:88::1"}


def on(net, address, address6=None):
    return dict(net, address=address, address6=address6)


ONE = [on(DEFAULT, "172.23.0.2")]
TWO = [on(DEFAULT, "172.23.0.2"), on(BACKEND, "10.88.0.5", "fd00:88::5")]

J = "/sbin/ifconfig -j " + JAIL
R = "/sbin/route -j " + JAIL

# case: (networks, mode, {parameter: value as jail(8) receives it}) -- written out by hand.
CASES = {
    "shared-one": (ONE, "shared", {"ip4": "new", "ip4.addr": "jp-default|172.23.0.2/32", "ip6": "disable"}),
    "shared-two": (TWO, "shared", {
        "ip4": "new", "ip4.addr": ["jp-default|172.23.0.2/32", "jp-backend|10.88.0.5/32"],
        "ip6": "new", "ip6.addr": "jp-backend|fd00:88::5/128"}),
    "vnet-one": (ONE, "vnet", {
        "vnet": True, "vnet.interface": "e0b_3c1f5e2a8d4", "devfs_ruleset": "5",
        "exec.poststart": [J + " lo0 inet 127.0.0.1/8",
                           J + " e0b_3c1f5e2a8d4 inet 172.23.0.2/16",
                           R + " -n add -inet default 172.23.0.1"]}),
    "vnet-two": (TWO, "vnet", {
        "vnet": True, "vnet.interface": ["e0b_3c1f5e2a8d4", "e1b_3c1f5e2a8d4"], "devfs_ruleset": "5",
        "exec.poststart": [J + " lo0 inet 127.0.0.1/8",
                           J + " lo0 inet6 ::1/128",
                           J + " e0b_3c1f5e2a8d4 inet 172.23.0.2/16",
                           J + " e1b_3c1f5e2a8d4 inet 10.88.0.5/24",
                           J + " e1b_3c1f5e2a8d4 inet6 fd00:88::5/64",
                           R + " -n add -inet default 172.23.0.1",
                           R + " -n add -inet6 default fd00:88::1"]}),
    "no-network": ([], "shared", {"ip4": "disable", "ip6": "disable"}),
}


def fragment(params):
    """The parameters as the engine writes them into jail.conf (engines/freebsd.py _conf_line);
    a None value (drop the parameter) is not written."""
    lines = ["# jail(8) network parameters of engines/freebsd_network.py, written by engines/freebsd.py",
             JAIL + " {"]
    lines += [F._conf_line(name, value) for name, value in params if value is not None]
    return "\n".join(lines + ["}"]) + "\n"


def unquote(value):
    """A value as jailconf returns it (raw token) -> the string jail(8) receives."""
    if value is True:
        return True
    if isinstance(value, list):
        return [unquote(v) for v in value]
    assert value[0] == value[-1] == "'", "every value is single-quoted: %r" % value
    return re.sub(r"\\(.)", r"\1", value[1:-1])


def parse_conf(text):
    """{parameter: value} of the one jail block, through jailconf; no statement hidden by a dict."""
    conf = jailconf.loads(text)
    blocks = list(conf.jails())
    assert len(blocks) == 1 and len(conf) == 1
    name, block = blocks[0]
    assert name == JAIL
    statements = [line for line in text.split("\n") if line.startswith("  ") and line.endswith(";")]
    assert len(statements) == len(block)
    return {key: unquote(value) for key, value in block.items()}


def params_of(case):
    nets, mode, _expected = CASES[case]
    return N.jail_network_parameters(nets, mode, jail=JAIL)


# --- jail.conf fragments ------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_jail_conf_fragment_matches_golden_file(case):
    assert fragment(params_of(case)) == (GOLDEN / (case + ".jail.conf")).read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_jail_conf_fragment_parsed_by_jailconf(case):
    assert parse_conf((GOLDEN / (case + ".jail.conf")).read_text()) == CASES[case][2]


@pytest.mark.parametrize("case", ["vnet-one", "vnet-two"])
def test_vnet_drops_every_ip_restriction(case):
    """kern_jail.c refuses a VNET jail with PR_IP4_USER or PR_IP6_USER, which ip4/ip6=disable set
    too ("vnet jails cannot have IP address restrictions", commands.md s1): both are dropped."""
    params = dict(params_of(case))
    assert params["ip4"] is None and params["ip6"] is None
    assert not {"ip4.addr", "ip6.addr", "interface"} & set(params)


@pytest.mark.parametrize("case", ["vnet-one", "vnet-two"])
def test_vnet_poststart_commands_are_the_declared_argv_and_need_no_shell(case):
    """jail(8) runs a command with none of !"$&'()*;<>?[\\]`{|}~ directly, split on whitespace
    (usr.sbin/jail/command.c run_command): each string is exactly one declared argv list."""
    nets = CASES[case][0]
    strings = dict(params_of(case))["exec.poststart"]
    assert [s.split() for s in strings] == N.vnet_poststart_argv(JAIL, nets)
    for s in strings:
        assert not set(s) & set("!\"$&'()*;<>?[\\]`{|}~") and "\n" not in s
        assert s.startswith(("/sbin/ifconfig -j %s " % JAIL, "/sbin/route -j %s " % JAIL))


def test_vnet_uses_devfs_ruleset_5_which_unhides_pf():
    """devfs.rules(5) devfsrules_jail_vnet=5: ruleset 4 plus 'add path pf unhide'."""
    header, body = sample("devfs-rules-defaults-1")
    section = body[body.index("[devfsrules_jail_vnet=5]"):]
    assert "add include $devfsrules_jail" in section and "add path pf unhide" in section
    assert dict(params_of("vnet-one"))["devfs_ruleset"] == N.VNET_DEVFS_RULESET == "5"


def test_epair_names_fit_ifnamsiz_and_name_the_pod():
    host, inside = N.epair_names(JAIL, 0)
    assert (host, inside) == ("e0a_3c1f5e2a8d4", "e0b_3c1f5e2a8d4")
    assert all(len(name) <= 15 for i in range(N.MAX_VNET_NETWORKS) for name in N.epair_names(JAIL, i))
    assert N.epair_names(JAIL, 9) == ("e9a_3c1f5e2a8d4", "e9b_3c1f5e2a8d4")
    with pytest.raises(InvalidInput):
        N.epair_names(JAIL, 10)


def test_host_mode_is_an_explicit_choice_and_none_disables():
    """jail(8) ip4/ip6: "inherit" only when asked for; no networks means no network at all."""
    assert N.jail_network_parameters([], "host") == [("ip4", "inherit"), ("ip6", "inherit")]
    assert N.jail_network_parameters(ONE, "none") == [("ip4", "disable"), ("ip6", "disable")]
    with pytest.raises(InvalidInput):
        N.jail_network_parameters(ONE, "host")


def test_vnet_parameters_need_the_jail_name():
    with pytest.raises(InvalidInput, match="jail="):
        N.jail_network_parameters(ONE, "vnet")


def test_vnet_needs_the_subnet_for_the_prefix_length():
    with pytest.raises(InvalidInput, match="subnet"):
        N.jail_network_parameters([{"name": "default", "address": "172.23.0.2"}], "vnet", jail=JAIL)
    # shared-IP needs no subnet: the alias is a /32
    assert dict(N.jail_network_parameters([{"name": "default", "address": "172.23.0.2"}]))["ip4.addr"] == \
        ["jp-default|172.23.0.2/32"]


def test_a_pod_is_vnet_or_shared_never_both():
    assert N.pod_mode([dict(on(DEFAULT, "172.23.0.2"), mode="vnet")]) == "vnet"
    assert N.pod_mode(ONE) == "shared" and N.pod_mode([]) == "none"
    with pytest.raises(InvalidInput, match="one kind"):
        N.pod_mode([dict(on(DEFAULT, "172.23.0.2"), mode="vnet"), on(BACKEND, "10.88.0.5")])


def test_networks_from_network_py_are_accepted_as_they_are():
    """network.normalize() output plus a lease: its "bridge" is the FreeBSD interface name."""
    default = network.normalize(**network.DEFAULT)
    entry = dict(default, address="172.23.0.2")
    assert N.pod_network(entry).interface == default["bridge"] == "jp-default"
    assert N.pod_network(entry).prefixlen == 16 and N.pod_network(entry).gateway == default["gateway"]
    assert dict(N.jail_network_parameters([entry], "vnet", jail=JAIL))["vnet.interface"] == ["e0b_3c1f5e2a8d4"]


def test_an_operators_own_interface_can_be_named():
    """Jetpack (2015) hosts have lo1 with 172.23.0.1/16 (jetpack-2015.md): a network can name it."""
    entry = dict(on(DEFAULT, "172.23.0.2"), interface="lo1")
    assert dict(N.jail_network_parameters([entry]))["ip4.addr"] == ["lo1|172.23.0.2/32"]


# --- wired into the engine's parameters ------------------------------------------------------------

def wired_conf(record, nets, mode):
    """What engines/freebsd.py writes for a pod on these networks (jail_parameters applies the
    network parameters over SECURE_DEFAULTS, before the pod's overrides): ({parameter: value},
    the names after the engine's own six, path .. stop.timeout, in order)."""
    params = F.jail_parameters(dict(record, networks=[dict(n, mode=mode) for n in nets]))
    lines = ["%s {" % JAIL] + [F._conf_line(n, v) for n, v in params] + ["}"]
    return parse_conf("\n".join(lines) + "\n"), [n for n, _v in params[6:]]


RECORD = {"uuid": "3c1f5e2a-8d4b-4f6e-9a7c-0b1d2e3f4a5b", "name": "web", "hostname": "web",
          "pod_dir": "/var/jetpack/pods/" + KEY, "root": "/var/jetpack/pods/%s/rootfs" % KEY, "jail": {},
          "apps": [], "volumes": []}


def test_wired_vnet_jail_conf_has_no_ip_parameter_and_one_devfs_ruleset():
    assert F.jail_name(RECORD) == JAIL
    params, order = wired_conf(RECORD, TWO, "vnet")
    assert "ip4" not in params and "ip6" not in params
    assert params["devfs_ruleset"] == "5" and params["vnet"] is True
    assert order.index("devfs_ruleset") == [n for n, _v in F.SECURE_DEFAULTS].index("devfs_ruleset")
    assert order[-3:] == ["vnet", "vnet.interface", "exec.poststart"]
    assert params["securelevel"] == "2" and params["exec.clean"] is True   # the other defaults stay


def test_wired_shared_jail_conf_replaces_ip4_and_ip6_in_place():
    params, order = wired_conf(RECORD, TWO, "shared")
    assert (params["ip4"], params["ip6"], params["devfs_ruleset"]) == ("new", "new", "4")
    assert order.index("ip4") == [n for n, _v in F.SECURE_DEFAULTS].index("ip4")
    assert order[-2:] == ["ip4.addr", "ip6.addr"]


def test_apply_reads_jail8_no_prefix_spelling():
    """jail(8): "novnet" is vnet=false; the network's vnet replaces it."""
    assert N.apply_jail_parameters([("novnet", True), ("ip4", "disable")], [("vnet", True), ("ip4", None)]) == \
        [("vnet", True)]


# --- pf anchors ---------------------------------------------------------------------------------

PORTS = [
    {"host_port": 8080, "pod_port": 80, "protocol": "tcp"},
    {"host_port": 8443, "pod_port": 443, "protocol": "tcp", "host_ip": "203.0.113.10"},
    {"host_port": 5353, "pod_port": 53, "protocol": "udp", "network": "backend"},
]
RESOLVED = N.resolve_ports(PORTS, TWO)

ANCHORS = {
    "nat-default.pf": lambda: N.render_nat_anchor(DEFAULT, "em0"),
    "nat-backend-off.pf": lambda: N.render_nat_anchor(BACKEND, "em0"),
    "rdr-web.pf": lambda: N.render_rdr_anchor(RESOLVED, "em0"),
    "filter-web.pf": lambda: N.render_filter_anchor(RESOLVED),
    "pf.conf.hooks": lambda: "\n".join(N.anchor_hooks()) + "\n",
}


@pytest.mark.parametrize("name", sorted(ANCHORS))
def test_anchor_matches_golden_file(name):
    assert ANCHORS[name]() == (GOLDEN / name).read_text()


def rule_lines(text):
    return [line for line in text.split("\n") if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("name", ["nat-default.pf", "rdr-web.pf", "filter-web.pf"])
def test_every_golden_rule_is_justified_by_a_pf_conf_section(name):
    lines = (GOLDEN / name).read_text().split("\n")
    rules = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    assert rules
    for i in rules:
        assert lines[i - 1].startswith("# pf.conf(5) "), lines[i]
        assert re.match(r"# pf\.conf\(5\) (TRANSLATION|PACKET FILTERING)", lines[i - 1])


def test_golden_nat_rule():
    """pf.conf(5) TRANSLATION nat, PARAMETERS "(if)" and ":0" (the recorded iocage rule has the same
    target form, outputs/pfctl-s-nat-3); the network's NAT off leaves the anchor without rules."""
    assert rule_lines((GOLDEN / "nat-default.pf").read_text()) == [
        "nat on em0 inet from 172.23.0.0/16 to any -> (em0:0)"]
    assert rule_lines((GOLDEN / "nat-backend-off.pf").read_text()) == []


def test_golden_rdr_rules_read_back_as_the_redirects():
    """The rules as the pfctl-output parser reads them are exactly the redirects asked for:
    specific host addresses first (the first matching rdr rule decides, pf.conf(5) TRANSLATION)."""
    text = "\n".join(rule_lines((GOLDEN / "rdr-web.pf").read_text()))
    assert N.loaded_redirects(text) == N.redirects(RESOLVED) == [
        N.Redirect("inet", "tcp", "203.0.113.10", 8443, "172.23.0.2", 443),
        N.Redirect("inet", "tcp", None, 8080, "172.23.0.2", 80),
        N.Redirect("inet", "udp", None, 5353, "10.88.0.5", 53),
        N.Redirect("inet6", "udp", None, 5353, "fd00:88::5", 53),
    ]
    rules = N.parse_pfctl_nat(text)
    assert {(r.action, r.pass_, r.interface, r.tag) for r in rules} == {("rdr", False, "em0", N.RDR_TAG)}


def test_golden_filter_rules_pass_only_tagged_packets_and_are_not_quick():
    """pf.conf(5) PACKET FILTERING: the last matching rule decides unless "quick"; "tagged" keeps
    the pass to what the rdr rules moved (the split of Bastille PR #1565: no `rdr pass`)."""
    rules = rule_lines((GOLDEN / "filter-web.pf").read_text())
    assert rules == [
        "pass in inet proto tcp from any to 172.23.0.2 port 443 tagged jetpack_rdr",
        "pass in inet proto tcp from any to 172.23.0.2 port 80 tagged jetpack_rdr",
        "pass in inet proto udp from any to 10.88.0.5 port 53 tagged jetpack_rdr",
        "pass in inet6 proto udp from any to fd00:88::5 port 53 tagged jetpack_rdr",
    ]
    assert not any(" quick" in r for r in rules)
    assert not any(" pass " in r for r in rule_lines((GOLDEN / "rdr-web.pf").read_text()))


def test_golden_hooks_are_the_three_anchor_lines():
    """pf.conf(5) ANCHORS: nat-anchor / rdr-anchor / anchor; "jetpack/*" evaluates every anchor
    attached under jetpack; a name holding "/" must be double-quoted."""
    assert (GOLDEN / "pf.conf.hooks").read_text().split("\n")[:-1] == [
        'nat-anchor "jetpack/*"', 'rdr-anchor "jetpack/*"', 'anchor "jetpack/*"']


def test_ports_on_a_pod_without_ipv6_publish_ipv4_only():
    ports = N.resolve_ports([{"host_port": 80, "pod_port": 8080, "protocol": "tcp"}], ONE)
    assert [r.family for r in N.redirects(ports)] == ["inet"]
    assert [r.family for r in N.redirects([dict(ports[0], host_ip="0.0.0.0")])] == ["inet"]


def test_the_same_host_port_twice_is_refused_and_an_exact_repeat_is_merged():
    ports = N.resolve_ports([{"host_port": 8080, "pod_port": 80, "protocol": "tcp"},
                             {"host_port": 8080, "pod_port": 81, "protocol": "tcp"}], ONE)
    with pytest.raises(InvalidInput, match="published twice"):
        N.redirects(ports)
    assert len(N.redirects([ports[0], dict(ports[0])])) == 1
    # tcp and udp on one port number are two different redirects
    assert len(N.redirects([ports[0], dict(ports[0], protocol="udp")])) == 2


def test_ports_name_a_network_the_pod_joins():
    with pytest.raises(InvalidInput, match="does not join"):
        N.resolve_ports([{"host_port": 1, "pod_port": 1, "network": "other"}], TWO)
    with pytest.raises(InvalidInput, match="no network"):
        N.resolve_ports([{"host_port": 1, "pod_port": 1}], [])


def test_hooks_found_in_the_main_ruleset_source_derived():
    """source-derived (sbin/pfctl prints an anchor call as a rule, e.g. `nat-anchor "jetpack/*" all`);
    no recording exists. Only the start of the line is compared."""
    nat = 'nat on em0 inet from 10.0.0.0/8 to any -> (em0) round-robin\nnat-anchor "jetpack/*" all\n' \
          'rdr-anchor "jetpack/*" all\n'
    assert N.missing_hooks(nat, 'block drop in all\nanchor "jetpack/*" all\n') == []
    assert N.missing_hooks("", "") == N.anchor_hooks()
    assert N.missing_hooks('nat-anchor "jetpack/*/x" all\n', 'anchor "jetpackx/*" all\n') == N.anchor_hooks()


# --- argv ---------------------------------------------------------------------------------------

ARGV = [
    (N.argv_probe("jp-default"), ["ifconfig", "jp-default"],
     "ifconfig(8) IF: probe; 'interface IF does not exist' when absent (outputs/ifconfig-error-1)"),
    (N.argv_list_all(), ["ifconfig", "-a"], "ifconfig(8) -a: every address in use on the host"),
    (N.argv_clone_loopback("jp-default"), ["ifconfig", "lo", "create", "name", "jp-default"],
     "ifconfig(8) create + name: clone lo(4) and rename it in the same invocation, which then prints nothing"),
    (N.argv_create_bridge("jp-default"), ["ifconfig", "bridge", "create", "name", "jp-default"],
     "ifconfig(8) create + name: a named if_bridge(4) (commands.md s11)"),
    (N.argv_up("jp-default"), ["ifconfig", "jp-default", "up"],
     "ifconfig(8) up: a new bridge is not UP (outputs/ifconfig-bridge-1)"),
    (N.argv_alias_add("jp-default", "172.23.0.1/16"), ["ifconfig", "jp-default", "inet", "172.23.0.1/16", "alias"],
     "ifconfig(8) inet A/LEN alias (commands.md s11)"),
    (N.argv_alias_add("jp-backend", "fd00:88::1/64"),
     ["ifconfig", "jp-backend", "inet6", "fd00:88::1", "prefixlen", "64", "alias"],
     "ifconfig(8) inet6 A prefixlen LEN alias (commands.md s11)"),
    (N.argv_alias_remove("jp-default", "172.23.0.2"), ["ifconfig", "jp-default", "inet", "172.23.0.2", "-alias"],
     "ifconfig(8) inet A -alias (commands.md s11)"),
    (N.argv_alias_remove("jp-backend", "fd00:88::5"), ["ifconfig", "jp-backend", "inet6", "fd00:88::5", "-alias"],
     "ifconfig(8) inet6 A -alias"),
    (N.argv_epair_create(), ["ifconfig", "epair", "create"],
     "ifconfig(8) epair create: prints epairNa (source-derived, outputs/MISSING.md)"),
    (N.argv_rename("epair3a", "e0a_3c1f5e2a8d4"), ["ifconfig", "epair3a", "name", "e0a_3c1f5e2a8d4"],
     "ifconfig(8) name: a stable name (commands.md s11)"),
    (N.argv_bridge_addm("jp-default", "e0a_3c1f5e2a8d4"), ["ifconfig", "jp-default", "addm", "e0a_3c1f5e2a8d4"],
     "ifconfig(8) addm: the host side joins the bridge (commands.md s11)"),
    (N.argv_bridge_deletem("jp-default", "e0a_3c1f5e2a8d4"),
     ["ifconfig", "jp-default", "deletem", "e0a_3c1f5e2a8d4"], "ifconfig(8) deletem"),
    (N.argv_destroy("e0a_3c1f5e2a8d4"), ["ifconfig", "e0a_3c1f5e2a8d4", "destroy"],
     "ifconfig(8) destroy: an epair's a side takes the b side with it (commands.md s11)"),
    (N.argv_jail_address(JAIL, "lo0", "127.0.0.1/8"), ["/sbin/ifconfig", "-j", JAIL, "lo0", "inet", "127.0.0.1/8"],
     "ifconfig(8) -j JAIL (13.3+): from the host into the jail's vnet; FreeBSD's own tests configure lo0 so"),
    (N.argv_jail_address(JAIL, "e0b_3c1f5e2a8d4", "fd00:88::5/64"),
     ["/sbin/ifconfig", "-j", JAIL, "e0b_3c1f5e2a8d4", "inet6", "fd00:88::5/64"],
     "ifconfig(8) inet6 with the prefix length in slash notation"),
    (N.argv_jail_default_route(JAIL, "172.23.0.1"), ["/sbin/route", "-j", JAIL, "-n", "add", "-inet", "default",
                                                     "172.23.0.1"],
     "route(8) -j JAIL -n add -inet default GW (13.3+; -n: no name lookups)"),
    (N.argv_jail_default_route(JAIL, "fd00:88::1"), ["/sbin/route", "-j", JAIL, "-n", "add", "-inet6", "default",
                                                     "fd00:88::1"], "route(8) -inet6 default"),
    (N.argv_pf_load("jetpack/rdr-" + KEY), ["pfctl", "-a", "jetpack/rdr-" + KEY, "-f", "-"],
     "pfctl(8) -a ANCHOR -f -: replace one anchor from stdin, never the main ruleset (commands.md s10)"),
    (N.argv_pf_flush("jetpack/nat-default"), ["pfctl", "-a", "jetpack/nat-default", "-F", "all"],
     "pfctl(8) -a ANCHOR -F all: that anchor's rules, nat and tables only (pfctl.c: the rest without -a)"),
    (N.argv_pf_show("jetpack/rdr-" + KEY), ["pfctl", "-a", "jetpack/rdr-" + KEY, "-P", "-s", "nat"],
     "pfctl(8) -s nat, -P numeric ports (as recorded: outputs/pfctl-s-nat-1, -2)"),
    (N.argv_pf_show("jetpack/filter-" + KEY, "rules"), ["pfctl", "-a", "jetpack/filter-" + KEY, "-P", "-s", "rules"],
     "pfctl(8) -s rules"),
    (N.argv_pf_show_main("nat"), ["pfctl", "-P", "-s", "nat"], "pfctl(8) -s nat on the main ruleset (hooks)"),
    (N.argv_pf_anchors(), ["pfctl", "-a", "jetpack", "-s", "Anchors"],
     "pfctl(8) -a jetpack -s Anchors: jetpack's anchors (no recording, outputs/MISSING.md)"),
]


@pytest.mark.parametrize("argv,expected", [case[:2] for case in ARGV], ids=[case[2] for case in ARGV])
def test_argv(argv, expected):
    assert argv == expected


def test_anchor_names():
    assert (N.nat_anchor("default"), N.rdr_anchor(JAIL), N.filter_anchor(JAIL)) == \
        ("jetpack/nat-default", "jetpack/rdr-" + KEY, "jetpack/filter-" + KEY)


# --- recorded outputs ---------------------------------------------------------------------------

def body_lines(name, *numbers):
    """The given 1-based body lines of a recording (the ones the tool printed), newline-ended."""
    lines = sample(name)[1].split("\n")
    return "".join(lines[n - 1] + "\n" for n in numbers)


def recorded(name, *args, lines=""):
    return pytest.param(name, *args, id="%s%s [%s]" % (name, lines, sample(name)[0]["source"][0]))


def T(action, interface, family, proto, source, dport, target, tport=None, options=(), passed=False,
      destination="any"):
    return N.PfTranslation(action, False, passed, interface, family, proto, source, None, destination, dport,
                           None, None, target, tport, tuple(options))


@pytest.mark.parametrize("name,line_numbers,expected", [
    recorded("pfctl-s-nat-1", (3,), [T("rdr", "em0", "inet", "tcp", "any", 2001, "10.17.89.1", 22)],
             lines=" line 3 (first --list)"),
    recorded("pfctl-s-nat-1", (6, 7), [T("rdr", "em0", "inet", "tcp", "any", 2001, "10.17.89.1", 22),
                                       T("rdr", "em0", "inet", "udp", "any", 2053, "10.17.89.1", 53)],
             lines=" lines 6-7 (second --list)"),
    recorded("pfctl-s-nat-2", (2, 3), [T("rdr", "vtnet0", "inet", "tcp", "any", 8080, "10.0.0.111", 800, passed=True),
                                       T("rdr", "lo0", "inet", "tcp", "any", 8080, "10.0.0.111", 80, passed=True)],
             lines=" lines 2-3 (rdr pass)"),
    recorded("pfctl-s-nat-3", (17,), [T("nat", "bridge0", "inet", None, "172.16.0.0/24", None, "(bridge0:0)",
                                        options=["static-port"])],
             lines=" line 17 (pool option static-port)"),
    recorded("pfctl-s-nat-4", (2,), [T("nat", "vtnet0", "inet", None, "10.0.0.2", None, "(vtnet0)",
                                       options=["round-robin"])],
             lines=" line 2 (pool option round-robin)"),
])
def test_parse_recorded_pfctl_s_nat(name, line_numbers, expected):
    assert N.parse_pfctl_nat(body_lines(name, *line_numbers)) == expected


@pytest.mark.parametrize("name", [recorded("pfctl-s-nat-3", lines=" lines 1-2: `pfctl -sn` printed nothing")])
def test_recorded_empty_nat_ruleset_prints_nothing(name):
    """The prompt of line 2 follows the prompt of line 1 at once: an empty ruleset prints nothing."""
    assert body_lines(name, 1).rstrip().endswith("pfctl -sn") and body_lines(name, 2).startswith("root@host")
    assert N.parse_pfctl_nat("") == []


@pytest.mark.parametrize("name,line", [
    recorded("pfctl-s-nat-1", 9, lines=" line 9: 'nat cleared' is -F's message on stderr"),
    recorded("pfctl-s-nat-4", 3, lines=" line 3: the reporter's elision mark"),
    recorded("pfctl-s-nat-2", 1, lines=" line 1: the prompt"),
])
def test_recorded_lines_pfctl_did_not_print_as_rules_are_refused(name, line):
    with pytest.raises(ValueError):
        N.parse_pfctl_nat(body_lines(name, line))


@pytest.mark.parametrize("name,line_numbers,expected", [
    recorded("pfctl-s-nat-1", (6, 7), [N.Redirect("inet", "tcp", None, 2001, "10.17.89.1", 22),
                                       N.Redirect("inet", "udp", None, 2053, "10.17.89.1", 53)],
             lines=" lines 6-7 ('to any')"),
    recorded("pfctl-s-nat-2", (2,), [N.Redirect("inet", "tcp", None, 8080, "10.0.0.111", 800)], lines=" line 2"),
])
def test_recorded_redirects(name, line_numbers, expected):
    assert N.loaded_redirects(body_lines(name, *line_numbers)) == expected


IF_BRIDGE_1 = {"bridge10": N.Interface("bridge10", ("BROADCAST", "SIMPLEX", "MULTICAST"), 1500, (), (),
                                       ("bridge",), ())}
IF_JAIL_ALIAS_1 = {
    "em0": N.Interface("em0", ("UP", "BROADCAST", "RUNNING", "SIMPLEX", "MULTICAST"), 1500,
                       (("192.168.101.121", 32),), (), (), ()),
    "lo0": N.Interface("lo0", ("UP", "LOOPBACK", "RUNNING", "MULTICAST"), 16384, (), (), (), ()),
}
IF_LO0_VNET_1 = {
    "lo0": N.Interface("lo0", ("UP", "LOOPBACK", "RUNNING", "MULTICAST", "LOWER_UP"), 16384,
                       (("127.0.0.1", 8),), (("::1", 128), ("fe80::1", 64)), ("lo",), ()),
}


@pytest.mark.parametrize("name,line_numbers,expected", [
    recorded("ifconfig-bridge-1", tuple(range(3, 10)), IF_BRIDGE_1, lines=" lines 3-9 (a new bridge, not UP)"),
    recorded("ifconfig-jail-alias-1", tuple(range(2, 10)), IF_JAIL_ALIAS_1,
             lines=" lines 2-9 (alias netmask 0xffffffff; lo0 without inet)"),
    recorded("ifconfig-lo0-vnet-1", tuple(range(1, 8)), IF_LO0_VNET_1,
             lines=" lines 1-7 (8 spaces for TABs, as the note says)"),
])
def test_parse_recorded_ifconfig(name, line_numbers, expected):
    assert N.parse_ifconfig(body_lines(name, *line_numbers)) == expected


@pytest.mark.parametrize("name", [recorded("ifconfig-bridge-2", lines=" (whole excerpt)")])
def test_parse_recorded_ifconfig_host_with_a_vnet_bridge(name):
    found = N.parse_ifconfig(sample(name)[1])
    assert list(found) == ["re0", "lo0", "re0bridge"]
    assert found["re0"].inet == (("192.168.1.239", 24),)
    assert [a for a, _l in found["re0"].inet6] == ["fe80::428d:5cff:fe58:c5f6", "2605:59c8:892:2010:428d:5cff:fe58:c5f6",
                                                   "fd1f:71ae:fb88:10:428d:5cff:fe58:c5f6"]
    assert "UP" in found["re0bridge"].flags and "LOWER_UP" in found["re0bridge"].flags
    assert N.host_addresses(sample(name)[1]) >= {"192.168.1.239", "127.0.0.1", "::1", "fe80::1"}


@pytest.mark.parametrize("name,line", [
    recorded("ifconfig-bridge-1", 1, lines=" line 1 (the prompt)"),
    recorded("ifconfig-error-1", 1, lines=" line 1 (cbsd's text)"),
])
def test_lines_ifconfig_did_not_print_are_not_parsed_as_interfaces(name, line):
    with pytest.raises(ValueError):
        N.parse_ifconfig(body_lines(name, line))


def test_created_epair_name_source_derived():
    """source-derived (outputs/MISSING.md: `ifconfig epair create` prints one line, epairNa;
    FreeBSD's jail_basic_test.sh saves it without a literal): no recording exists."""
    assert N.parse_created_epair("epair3a\n") == ("epair3a", "epair3b")
    for text in ("", "epair3b\n", "epair3a; rm\n", "bridge0\n"):
        with pytest.raises(ValueError):
            N.parse_created_epair(text)


# --- a fake runner ------------------------------------------------------------------------------

class FakeRunner:
    """run(argv, stdin) -> (rc, stdout, stderr) from a script; records every (argv, stdin)."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.calls = []

    def __call__(self, argv, stdin=None):
        self.calls.append((list(argv), stdin))
        return self.responses.pop(0)

    @property
    def argvs(self):
        return [argv for argv, _stdin in self.calls]


OK = (0, "", "")


def absent(name):
    return (1, "", "ifconfig: interface %s does not exist\n" % name)


def loopback(name, *aliases, up=True):
    """source-derived (outputs/MISSING.md `ifconfig lo1` layout); no recording of a cloned lo."""
    flags = "8049<UP,LOOPBACK,RUNNING,MULTICAST>" if up else "8008<LOOPBACK,MULTICAST>"
    text = "%s: flags=%s metric 0 mtu 16384\n\toptions=600003<RXCSUM,TXCSUM,RXCSUM_IPV6,TXCSUM_IPV6>\n" % (name, flags)
    text += "".join("\tinet %s netmask 0xffffffff\n" % a for a in aliases)
    return (0, text + "\tgroups: lo\n\tnd6 options=29<PERFORMNUD,IFDISABLED,NO_DAD>\n", "")


def test_ensure_shared_network_clones_the_loopback_with_the_gateway_as_a_host_address():
    """The gateway on the shared loopback is where the metadata service and the DNS responder
    listen (freebsd_limits.metadata_addresses, shared mode); a loopback alias is /32 (ifconfig(8),
    commands.md s11: `ifconfig lo1 inet 10.88.0.5/32 alias`)."""
    run = FakeRunner(absent("jp-default"), OK, OK, OK)
    assert N.FreeBSDNetwork(run=run).ensure_network(DEFAULT) is True
    assert run.argvs == [["/sbin/ifconfig", "jp-default"], ["/sbin/ifconfig", "lo", "create", "name", "jp-default"],
                         ["/sbin/ifconfig", "jp-default", "inet", "172.23.0.1/32", "alias"],
                         ["/sbin/ifconfig", "jp-default", "up"]]


def test_ensure_shared_network_adds_both_gateways_as_host_addresses():
    """IPv6 on a loopback: `ifconfig lo1 inet6 fd00::5 prefixlen 128 alias` (commands.md s11)."""
    run = FakeRunner(loopback("jp-backend"), OK, OK)
    assert N.FreeBSDNetwork(run=run).ensure_network(BACKEND) is True
    assert run.argvs[1:] == [["/sbin/ifconfig", "jp-backend", "inet", "10.88.0.1/32", "alias"],
                             ["/sbin/ifconfig", "jp-backend", "inet6", "fd00:88::1", "prefixlen", "128", "alias"]]


def test_ensure_shared_network_that_exists_changes_nothing():
    run = FakeRunner(loopback("jp-default", "172.23.0.1", "172.23.0.2"))
    assert N.FreeBSDNetwork(run=run).ensure_network(DEFAULT) is False
    assert len(run.calls) == 1


def test_the_shared_gateway_alias_is_where_the_metadata_service_listens():
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import freebsd_limits
    run = FakeRunner(absent("jp-default"), OK, OK, OK)
    N.FreeBSDNetwork(run=run).ensure_network(DEFAULT)
    added = [argv[3].split("/")[0] for argv in run.argvs if argv[-1] == "alias"]
    listen = freebsd_limits.metadata_addresses([dict(DEFAULT, address="172.23.0.2")], "shared")
    assert [address for _ifname, address in listen] == added == ["172.23.0.1"]


@pytest.mark.parametrize("name", [recorded("ifconfig-bridge-1", lines=" lines 3-9 as the probe's output")])
def test_ensure_vnet_network_on_a_recorded_new_bridge_adds_the_gateway_and_brings_it_up(name):
    run = FakeRunner((0, body_lines(name, *range(3, 10)), ""), OK, OK)
    net = dict(DEFAULT, bridge="bridge10")
    assert N.FreeBSDNetwork(run=run).ensure_network(net, "vnet") is True
    assert run.argvs[1:] == [["/sbin/ifconfig", "bridge10", "inet", "172.23.0.1/16", "alias"],
                             ["/sbin/ifconfig", "bridge10", "up"]]


def test_ensure_vnet_network_creates_the_bridge_with_both_gateways():
    run = FakeRunner(absent("jp-backend"), OK, OK, OK, OK)
    N.FreeBSDNetwork(run=run).ensure_network(BACKEND, "vnet")
    assert run.argvs[1:] == [["/sbin/ifconfig", "bridge", "create", "name", "jp-backend"],
                             ["/sbin/ifconfig", "jp-backend", "inet", "10.88.0.1/24", "alias"],
                             ["/sbin/ifconfig", "jp-backend", "inet6", "fd00:88::1", "prefixlen", "64", "alias"],
                             ["/sbin/ifconfig", "jp-backend", "up"]]


@pytest.mark.parametrize("name", [recorded("ifconfig-bridge-1", lines=" lines 3-9: a bridge where a loopback is wanted")])
def test_ensure_refuses_an_interface_of_the_wrong_kind(name):
    run = FakeRunner((0, body_lines(name, *range(3, 10)), ""))
    with pytest.raises(InvalidInput, match="not a loopback"):
        N.FreeBSDNetwork(run=run).ensure_network(dict(DEFAULT, bridge="bridge10"))
    assert len(run.calls) == 1


def test_clear_stale_aliases_removes_only_the_pods_addresses():
    run = FakeRunner(loopback("jp-default", "172.23.0.9", "172.23.0.2"), OK)
    assert N.FreeBSDNetwork(run=run).clear_stale_aliases(ONE) == ["172.23.0.2"]
    assert run.argvs[1] == ["/sbin/ifconfig", "jp-default", "inet", "172.23.0.2", "-alias"]


def test_create_pod_interfaces_source_derived_epair_name():
    """`ifconfig epair create` prints 'epair3a' (source-derived, outputs/MISSING.md)."""
    run = FakeRunner(absent("e0a_3c1f5e2a8d4"), (0, "epair3a\n", ""), OK, OK, OK, OK,
                     absent("e1a_3c1f5e2a8d4"), (0, "epair4a\n", ""), OK, OK, OK, OK)
    assert N.FreeBSDNetwork(run=run).create_pod_interfaces(JAIL, TWO) == ["e0a_3c1f5e2a8d4", "e1a_3c1f5e2a8d4"]
    assert run.argvs[1:6] == [["/sbin/ifconfig", "epair", "create"],
                              ["/sbin/ifconfig", "epair3a", "name", "e0a_3c1f5e2a8d4"],
                              ["/sbin/ifconfig", "epair3b", "name", "e0b_3c1f5e2a8d4"],
                              ["/sbin/ifconfig", "jp-default", "addm", "e0a_3c1f5e2a8d4"],
                              ["/sbin/ifconfig", "e0a_3c1f5e2a8d4", "up"]]
    assert run.argvs[10] == ["/sbin/ifconfig", "jp-backend", "addm", "e1a_3c1f5e2a8d4"]


def test_create_pod_interfaces_destroys_a_stale_pair_first():
    run = FakeRunner(loopback("e0a_3c1f5e2a8d4"), OK, (0, "epair0a\n", ""), OK, OK, OK, OK)
    N.FreeBSDNetwork(run=run).create_pod_interfaces(JAIL, ONE)
    assert run.argvs[1] == ["/sbin/ifconfig", "e0a_3c1f5e2a8d4", "destroy"]


@pytest.mark.parametrize("name", [recorded("jail-c-error-5", lines=" line 2 (BRDGADD: File exists)")])
def test_create_pod_interfaces_undoes_its_work_when_a_step_fails(name):
    run = FakeRunner(absent("e0a_3c1f5e2a8d4"), (0, "epair0a\n", ""), OK, OK, (1, "", body_lines(name, 2)), OK)
    with pytest.raises(N.InterfaceExists) as caught:
        N.FreeBSDNetwork(run=run).create_pod_interfaces(JAIL, ONE)
    assert isinstance(caught.value, AlreadyExists) and "deletem" in str(caught.value)
    assert run.argvs[-1] == ["/sbin/ifconfig", "e0a_3c1f5e2a8d4", "destroy"]


def test_create_pod_interfaces_with_unexpected_create_output_destroys_nothing_it_cannot_name():
    run = FakeRunner(absent("e0a_3c1f5e2a8d4"), (0, "", ""))
    with pytest.raises(CommandError, match="epairNa"):
        N.FreeBSDNetwork(run=run).create_pod_interfaces(JAIL, ONE)
    assert len(run.calls) == 2


@pytest.mark.parametrize("name", [recorded("ifconfig-error-1", lines=" line 2")])
def test_destroy_pod_interfaces_tolerates_a_pair_already_gone(name):
    run = FakeRunner((1, "", body_lines(name, 2)), OK)
    assert N.FreeBSDNetwork(run=run).destroy_pod_interfaces(JAIL, TWO) is None
    assert run.argvs == [["/sbin/ifconfig", "e0a_3c1f5e2a8d4", "destroy"], ["/sbin/ifconfig", "e1a_3c1f5e2a8d4", "destroy"]]


def test_publish_loads_filter_then_rdr_and_unpublish_flushes_in_reverse():
    run = FakeRunner(OK, OK)
    N.FreeBSDNetwork(run=run).publish(JAIL, RESOLVED, "em0")
    assert run.calls == [(["/sbin/pfctl", "-a", "jetpack/filter-" + KEY, "-f", "-"], N.render_filter_anchor(RESOLVED)),
                         (["/sbin/pfctl", "-a", "jetpack/rdr-" + KEY, "-f", "-"], N.render_rdr_anchor(RESOLVED, "em0"))]
    run = FakeRunner((0, "", "rules cleared\nnat cleared\n"), (0, "", "rules cleared\n"))
    N.FreeBSDNetwork(run=run).publish(JAIL, [], "em0")
    assert run.argvs == [["/sbin/pfctl", "-a", "jetpack/rdr-" + KEY, "-F", "all"],
                         ["/sbin/pfctl", "-a", "jetpack/filter-" + KEY, "-F", "all"]]


def test_apply_nat_loads_the_anchor_or_flushes_it_when_nat_is_off():
    run = FakeRunner(OK, OK)
    net = N.FreeBSDNetwork(run=run)
    net.apply_nat(DEFAULT, "em0")
    net.apply_nat(BACKEND, "em0")
    assert run.calls == [(["/sbin/pfctl", "-a", "jetpack/nat-default", "-f", "-"], N.render_nat_anchor(DEFAULT, "em0")),
                         (["/sbin/pfctl", "-a", "jetpack/nat-backend", "-F", "all"], None)]


def test_remove_network_destroys_only_interfaces_jetpack_made():
    run = FakeRunner(OK, OK)
    N.FreeBSDNetwork(run=run).remove_network(DEFAULT)
    assert run.argvs == [["/sbin/pfctl", "-a", "jetpack/nat-default", "-F", "all"],
                         ["/sbin/ifconfig", "jp-default", "destroy"]]
    run = FakeRunner(OK)
    N.FreeBSDNetwork(run=run).remove_network(dict(DEFAULT, interface="lo1"))
    assert len(run.calls) == 1


@pytest.mark.parametrize("name", [recorded("pfctl-s-nat-1", lines=" lines 6-7 as the anchor's listing")])
def test_loaded_redirects_of_a_pod(name):
    run = FakeRunner((0, body_lines(name, 6, 7), ""))
    assert N.FreeBSDNetwork(run=run).redirects(JAIL) == N.loaded_redirects(body_lines(name, 6, 7))
    assert run.argvs == [["/sbin/pfctl", "-a", "jetpack/rdr-" + KEY, "-P", "-s", "nat"]]


def test_check_hooks_names_the_lines_to_add_source_derived():
    """source-derived listing of the main ruleset (see test_hooks_found_in_the_main_ruleset_source_derived)."""
    run = FakeRunner((0, 'nat-anchor "jetpack/*" all\n', ""), (0, "pass all flags S/SA keep state\n", ""))
    with pytest.raises(N.PfHooksMissing) as caught:
        N.FreeBSDNetwork(run=run).check_hooks()
    assert caught.value.missing == ['rdr-anchor "jetpack/*"', 'anchor "jetpack/*"']
    assert "never edits pf.conf" in str(caught.value) and "pfctl -f /etc/pf.conf" in str(caught.value)
    assert caught.value.details() == {"missing_pf_conf_lines": caught.value.missing}


# --- recorded and source-derived errors -----------------------------------------------------------

@pytest.mark.parametrize("name", [recorded("pfctl-load-error-1", lines=" lines 2-5 (stdin:N syntax errors)")])
def test_recorded_pfctl_syntax_error_quotes_the_rules_it_refused(name):
    run = FakeRunner((1, "", body_lines(name, 2, 3, 4, 5)))
    rules = N.render_rdr_anchor(RESOLVED, "em0")
    with pytest.raises(N.PfRulesRefused) as caught:
        N.FreeBSDNetwork(run=run).load_anchor(N.rdr_anchor(JAIL), rules)
    message = str(caught.value)
    assert "line 3 (syntax error): %s" % rules.split("\n")[2] in message
    assert "line 4 (syntax error): %s" % rules.split("\n")[3] in message
    assert "loaded none of them" in message and "ifconfig -l" in message
    assert caught.value.argv == ["/sbin/pfctl", "-a", "jetpack/rdr-" + KEY, "-f", "-"] and caught.value.rc == 1


@pytest.mark.parametrize("name", [recorded("pfctl-load-error-1", lines=" line 1 as stored (the issue's typo kept)")])
def test_recorded_diocgetrules_on_a_listing_is_an_empty_anchor_unverified(name):
    """The recording's note: this 'typically appears when listing an anchor that has no ruleset
    yet (not verified here)'; it is a NotFound, which redirects() takes as no redirects."""
    run = FakeRunner((1, "", body_lines(name, 1)))
    with pytest.raises(N.AnchorNotFound) as caught:
        N.FreeBSDNetwork(run=run).show_anchor(N.rdr_anchor(JAIL))
    assert isinstance(caught.value, NotFound)
    assert N.FreeBSDNetwork(run=FakeRunner((1, "", body_lines(name, 1)))).redirects(JAIL) == []


@pytest.mark.parametrize("name,line", [
    recorded("ifconfig-error-1", 2, lines=" line 2"),
    recorded("ifconfig-error-1", 4, lines=" line 4"),
])
def test_recorded_missing_interface(name, line):
    argv = N.argv_rename("epair1b", "e0b_3c1f5e2a8d4")
    with pytest.raises(N.InterfaceNotFound) as caught:
        N.FreeBSDNetwork(run=FakeRunner((1, "", body_lines(name, line)))).check(argv)
    assert isinstance(caught.value, NotFound) and isinstance(caught.value, CommandError)
    assert "interface epair1b does not exist" in str(caught.value) and "ifconfig -l" in str(caught.value)


def test_missing_network_interface_says_to_set_up_the_network():
    with pytest.raises(N.InterfaceNotFound, match="ensure_network"):
        N.FreeBSDNetwork(run=FakeRunner(absent("jp-default"))).check(N.argv_up("jp-default"))


@pytest.mark.parametrize("name", [recorded("jail-c-error-5", lines=" stderr lines 5-6 (vnet.interface move failed)")])
def test_recorded_vnet_interface_missing_at_jail_create(name):
    """jail(8) created the jail, `/sbin/ifconfig epair0b vnet packages` failed, jail(8) removed it."""
    error = N.error_for(["/usr/sbin/jail", "-c", "packages"], 1, "", body_lines(name, 5, 6))
    assert isinstance(error, N.InterfaceNotFound)
    assert "could not move epair0b into jail packages" in str(error)
    assert "create_pod_interfaces" in str(error)


def test_pf_not_loaded_source_derived():
    """source-derived (commands.md s10): 'pfctl: /dev/pf: No such file or directory'."""
    error = N.error_for(["/sbin/pfctl", "-a", "jetpack/nat-default", "-f", "-"], 1, "",
                        "pfctl: /dev/pf: No such file or directory\n")
    assert isinstance(error, N.PfNotLoaded) and "pf_enable" in str(error) and 'anchor "jetpack/*"' in str(error)


def test_ifconfig_without_j_source_derived():
    """source-derived (getopt(3)'s message on an ifconfig older than 13.3); jail(8) then reports the
    exec.poststart command as failed and removes the jail."""
    error = N.error_for(["/usr/sbin/jail", "-c", JAIL], 1, "",
                        "ifconfig: illegal option -- j\nusage: ifconfig [-j jail] ...\n")
    assert isinstance(error, N.VnetUnsupported) and "13.3" in str(error)


def test_unclassified_errors_still_say_what_failed():
    error = N.error_for(["/sbin/route", "-j", JAIL, "add"], 1, "", "route: writing to routing socket: Bad thing\n")
    assert error.__class__ is CommandError and "route failed: route: writing to routing socket" in str(error)
    assert error.details()["cmd"] == ["/sbin/route", "-j", JAIL, "add"]


def test_a_missing_tool_is_a_command_error_that_says_what_is_needed():
    with pytest.raises(CommandError, match="ifconfig\\(8\\)"):
        N.run_command(["/nonexistent/ifconfig", "-a"])


def test_run_command_feeds_stdin_and_closes_it_otherwise():
    assert N.run_command(["cat"], stdin="nat on em0\n") == (0, "nat on em0\n", "")
    assert N.run_command(["cat"]) == (0, "", "")


def test_importing_the_module_runs_nothing_freebsd_only():
    code = ("import sys; import ansible_collections.jetpack.runtime.plugins.module_utils.jetpack."
            "engines.freebsd_network; print('ctypes' in sys.modules)")
    collections = [p for p in sys.path if (Path(p) / "ansible_collections").is_dir()]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": ":".join(collections), "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "False"


# --- injection attempts ---------------------------------------------------------------------------

BAD_INTERFACES = [
    ("em0; pass all", "semicolon and a rule"), ("em0\n", "trailing newline"), ("-a", "an option"),
    ("em0 proto", "space"), ("(em0)", "parentheses"), ("", "empty"), ("e" * 16, "over IFNAMSIZ"),
    ("any", "pf keyword"), ("em0/24", "slash"), ("em0{", "brace"), ("em0:0", "pf modifier"),
    ("em0#", "pf comment"), ("em0-", "trailing dash"), ("\u00e9m0", "non-ASCII"), (None, "none"), (5, "number"),
]


@pytest.mark.parametrize("value", [c[0] for c in BAD_INTERFACES], ids=[c[1] for c in BAD_INTERFACES])
def test_unsafe_interface_names_are_refused_everywhere(value):
    builds = [lambda: N.render_nat_anchor(DEFAULT, value), lambda: N.render_rdr_anchor(RESOLVED, value),
              lambda: N.argv_probe(value), lambda: N.argv_bridge_addm("jp-default", value)]
    if value is not None:   # a network's interface None means "not given": its bridge name is used
        builds.append(lambda: N.jail_network_parameters([dict(on(DEFAULT, "172.23.0.2"), interface=value)]))
        builds.append(lambda: N.FreeBSDNetwork(run=FakeRunner()).ensure_network(dict(DEFAULT, interface=value)))
    for build in builds:
        with pytest.raises(InvalidInput):
            build()


BAD_PORTS = [(0, "zero"), (65536, "too big"), (-1, "negative"), (True, "bool"), (1.5, "float"),
             ("80; pass all", "injection"), ("80\n", "newline"), (" 80", "space"), ("080", "leading zero"),
             (None, "missing")]


@pytest.mark.parametrize("value", [c[0] for c in BAD_PORTS], ids=[c[1] for c in BAD_PORTS])
@pytest.mark.parametrize("key", ["host_port", "pod_port"])
def test_unsafe_port_values_are_refused(key, value):
    with pytest.raises(InvalidInput, match=key):
        N.render_rdr_anchor([dict(RESOLVED[0], **{key: value})], "em0")


def test_port_numbers_as_digit_strings_are_read():
    assert N.redirects([dict(RESOLVED[0], host_port="8080")]) == N.redirects([RESOLVED[0]])


BAD_PROTOCOLS = [("tcp; pass all", "injection"), ("TCP", "capitals"), ("icmp", "no ports"),
                 ("sctp", "pf keeps SCTP ports"), ("tcp udp", "two words"), ("{tcp,udp}", "pf list"), ("", "empty"),
                 (None, "none")]


@pytest.mark.parametrize("value", [c[0] for c in BAD_PROTOCOLS], ids=[c[1] for c in BAD_PROTOCOLS])
def test_unsafe_protocols_are_refused(value):
    with pytest.raises(InvalidInput, match="protocol"):
        N.render_filter_anchor([dict(RESOLVED[0], protocol=value)])


BAD_ADDRESSES = [
    ("172.23.0.2; pass all", "injection"), ("172.23.0.2/32", "a network"), ("172.023.0.2", "not canonical"),
    ("172.23.0.2\n", "newline"), ("256.0.0.1", "not an address"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("127.0.0.1", "loopback"), ("172.24.0.2", "outside the subnet"),
    ("172.23.0.0", "the network address"), ("172.23.255.255", "the broadcast address"),
    ("172.23.0.1", "the gateway"), ("fd00::2", "IPv6 as IPv4"), ("em0", "an interface"), (None, "missing"),
]


@pytest.mark.parametrize("value", [c[0] for c in BAD_ADDRESSES], ids=[c[1] for c in BAD_ADDRESSES])
@pytest.mark.parametrize("mode", ["shared", "vnet"])
def test_unsafe_pod_addresses_are_refused(mode, value):
    with pytest.raises(InvalidInput, match="address"):
        N.jail_network_parameters([on(DEFAULT, value)], mode, jail=JAIL)


BAD_ADDRESSES6 = [("fe80::1%em0", "scoped"), ("fe80::5", "link-local"), ("FD00:88::5", "not canonical"),
                  ("fd00:88:0::5", "not compressed"), ("fd00:89::5", "outside subnet6"), ("172.23.0.2", "IPv4"),
                  ("fd00:88::5/64", "a network"), ("::1", "loopback")]


@pytest.mark.parametrize("value", [c[0] for c in BAD_ADDRESSES6], ids=[c[1] for c in BAD_ADDRESSES6])
def test_unsafe_pod_ipv6_addresses_are_refused(value):
    with pytest.raises(InvalidInput, match="address6"):
        N.jail_network_parameters([on(BACKEND, "10.88.0.5", value)], "vnet", jail=JAIL)


BAD_HOST_IPS = [("203.0.113.10 port 22", "injection"), ("em0", "interface"), ("(em0)", "dynamic"),
                ("203.0.113.0/24", "network"), ("127.0.0.1", "loopback: rdr on the egress never sees it"),
                ("2001:db8::1", "IPv6 for a pod without IPv6")]


@pytest.mark.parametrize("value", [c[0] for c in BAD_HOST_IPS], ids=[c[1] for c in BAD_HOST_IPS])
def test_unsafe_host_ips_are_refused(value):
    with pytest.raises(InvalidInput, match="host_ip"):
        N.render_rdr_anchor(N.resolve_ports([{"host_port": 80, "pod_port": 80, "host_ip": value}], ONE), "em0")


BAD_NETWORKS = [("default;", "semicolon"), ("Default", "capitals"), ("a/b", "anchor path"), ("..", "dots"),
                ("x" * 13, "longer than network.py allows"), ("-x", "leading dash"), ("", "empty"), (None, "none"),
                ("a b", "space")]


@pytest.mark.parametrize("value", [c[0] for c in BAD_NETWORKS], ids=[c[1] for c in BAD_NETWORKS])
def test_unsafe_network_names_are_refused(value):
    with pytest.raises(InvalidInput):
        N.render_nat_anchor(dict(DEFAULT, name=value), "em0")
    with pytest.raises(InvalidInput):
        N.nat_anchor(value)


BAD_SUBNETS = [("172.23.0.0/16; pass", "injection"), ("172.23.0.1/16", "host bits set"), ("172.23.0.0", "no length"),
               ("any", "keyword"), ("fd00::/64", "IPv6"), (None, "missing")]


@pytest.mark.parametrize("value", [c[0] for c in BAD_SUBNETS], ids=[c[1] for c in BAD_SUBNETS])
def test_unsafe_subnets_are_refused(value):
    with pytest.raises(InvalidInput, match="subnet"):
        N.render_nat_anchor(dict(DEFAULT, subnet=value), "em0")


@pytest.mark.parametrize("value", ["jetpack-x", "web", "jetpack-" + "0" * 32 + "\n", "-c", None,
                                   "jetpack-" + "A" * 32],
                         ids=["short", "not jetpack's", "trailing newline", "an option", "none", "capitals"])
def test_unsafe_jail_names_are_refused(value):
    for build in (lambda: N.rdr_anchor(value), lambda: N.epair_names(value, 0),
                  lambda: N.jail_network_parameters(ONE, "vnet", jail=value),
                  lambda: N.argv_jail_default_route(value, "172.23.0.1")):
        with pytest.raises(InvalidInput):
            build()


@pytest.mark.parametrize("anchor", ["", "jetpack", "jetpack/*", "jetpack/../x", "_x", "jetpack/rdr-x; y",
                                    "other/rdr-" + KEY, "jetpack/rdr-" + KEY + "/sub", "jetpack/rdr-" + KEY + "\n",
                                    None],
                         ids=["main ruleset", "the root", "wildcard", "dot-dot", "reserved underscore",
                              "injection", "another tool's anchor", "a child", "newline", "none"])
def test_pfctl_argv_only_for_jetpacks_own_anchors(anchor):
    for build in (N.argv_pf_load, N.argv_pf_flush, N.argv_pf_show):
        with pytest.raises(InvalidInput):
            build(anchor)


@pytest.mark.parametrize("token", ["a;b", "$(x)", "a b", "a\tb", "`x`", "a|b", "a&", "x\n", "", "'", "*"])
def test_exec_commands_that_would_need_a_shell_are_refused(token):
    with pytest.raises(InvalidInput, match="shell"):
        N._command(["/sbin/ifconfig", token])


@pytest.mark.parametrize("value", ["172.23.0.1", "172.23.0.1/33", "172.23.0.1/016", "x/8", "172.23.0.1/8 up",
                                   "::1/129"])
def test_alias_arguments_need_an_exact_address_and_length(value):
    with pytest.raises(InvalidInput):
        N.argv_alias_add("jp-default", value)


def test_duplicate_networks_or_addresses_in_a_pod_are_refused():
    with pytest.raises(InvalidInput, match="twice"):
        N.jail_network_parameters([on(DEFAULT, "172.23.0.2"), on(DEFAULT, "172.23.0.3")])
    with pytest.raises(InvalidInput, match="twice"):
        N.jail_network_parameters([on(DEFAULT, "172.23.0.2"), dict(on(BACKEND, "10.88.0.5"), bridge="jp-default")])


def test_errors_are_jetpack_errors_with_fields():
    with pytest.raises(InvalidInput) as caught:
        N.jail_network_parameters([on(DEFAULT, "172.24.0.2")])
    assert caught.value.field == "networks[0].address" and isinstance(caught.value, JetpackError)
    assert "not a host address of 172.23.0.0/16" in str(caught.value)
