"""Network definitions, address leases and name files (no ZFS needed: they are files in the store)."""
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import network
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    AlreadyExists, InUse, InvalidInput, NotFound)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig


@pytest.fixture
def store(tmp_path):
    return Store(StoreConfig("pool/jetpack", str(tmp_path)))


def test_the_default_network_exists_without_declaration(store):
    default = network.get_network(store, "default")
    assert default == {"name": "default", "subnet": "172.23.0.0/16", "subnet6": None, "nat": True,
                       "bridge": "jp-default", "gateway": "172.23.0.1", "mode": "shared", "egress_if": None}


def test_declare_list_and_refuse_overlaps(store):
    network.declare(store, network.normalize("back", "10.88.0.0/24", "fd00:88::/64", nat=False))
    assert [n["name"] for n in network.list_networks(store)] == ["back", "default"]
    assert network.get_network(store, "back")["gateway6"] == "fd00:88::1"
    with pytest.raises(AlreadyExists) as overlap:
        network.declare(store, network.normalize("other", "10.88.0.128/25"))
    assert "overlaps network back" in str(overlap.value)
    with pytest.raises(NotFound):
        network.get_network(store, "nope")


@pytest.mark.parametrize("args, words", [
    (("Bad_Name", "10.0.0.0/24"), "name"),
    (("waytoolongname", "10.0.0.0/24"), "at most 12"),
    (("host", "10.0.0.0/24"), "not host"),
    (("n", "10.0.0.1/24"), "host bits set"),
    (("n", "fd00::/64"), "IPv4"),
    (("n", "10.0.0.0/31"), "room for pods"),
    (("n", "10.0.0.0/24", "10.1.0.0/24"), "IPv6"),
    (("n", "10.0.0.0/24", None, True, "bridge"), "shared, vnet"),
    (("n", "10.0.0.0/24", None, True, "vnet", "em0; rm -rf /"), "egress_if"),
])
def test_bad_definitions_say_what_to_fix(args, words):
    with pytest.raises(InvalidInput) as refused:
        network.normalize(*args)
    assert words in str(refused.value)


def test_addresses_are_leased_once_skip_the_host_and_are_freed(store):
    net, host = network.normalize("n", "10.9.0.0/29"), {"10.9.0.2"}  # 10.9.0.2: configured on the host
    assert network.allocate(store, net, "pod1", in_use=host) == "10.9.0.3"
    assert network.allocate(store, net, "pod2", in_use=host) == "10.9.0.4"
    with pytest.raises(AlreadyExists) as taken:
        network.allocate(store, net, "pod3", in_use=host, wanted="10.9.0.3")
    assert "taken (pod1)" in str(taken.value)
    with pytest.raises(AlreadyExists):
        network.allocate(store, net, "pod3", in_use=host, wanted="10.9.0.2")
    with pytest.raises(InvalidInput):
        network.allocate(store, net, "pod3", in_use=host, wanted="10.9.0.7")  # the broadcast address
    assert network.allocate(store, net, "pod3", in_use=host, wanted="10.9.0.6") == "10.9.0.6"
    assert network.allocate(store, net, "pod4", in_use=host) == "10.9.0.5"
    with pytest.raises(InUse) as full:
        network.allocate(store, net, "pod5", in_use=host)
    assert "no free address" in str(full.value)
    assert network.release(store, "pod1") == ["n"]
    assert network.allocate(store, net, "pod5", in_use=host) == "10.9.0.3"
    with pytest.raises(InUse):
        network.remove(store, "n")


def test_hosts_file_names_pods_sharing_a_network():
    a = {"name": "a", "networks": [{"name": "n", "address": "10.9.0.3"}]}
    b = {"name": "b", "networks": [{"name": "n", "address": "10.9.0.4"}, {"name": "m", "address": "10.8.0.2"}]}
    c = {"name": "c", "networks": [{"name": "m", "address": "10.8.0.3"}]}
    hosts = network.hosts_file([a, b, c], a)
    assert "10.9.0.3\ta\n" in hosts and "10.9.0.4\tb\n" in hosts and "10.8.0" not in hosts
    assert network.hosts_file([a, b, c], c).count("\t") == 2 + 2  # localhost lines, b and c on m


def test_a_pod_is_also_found_by_its_hostname_in_hosts_and_dns():
    """A service's generations (app-3f2a..., app-9c1b...) share the service's name as hostname."""
    old = {"name": "app-3f2a", "hostname": "app", "networks": [{"name": "n", "address": "10.9.0.3"}]}
    new = {"name": "app-9c1b", "hostname": "app", "networks": [{"name": "n", "address": "10.9.0.4"}]}
    web = {"name": "web", "hostname": "web", "networks": [{"name": "n", "address": "10.9.0.5"}]}
    hosts = network.hosts_file([old, new, web], web).splitlines()[2:]
    assert hosts == ["10.9.0.3\tapp-3f2a app", "10.9.0.4\tapp-9c1b app", "10.9.0.5\tweb"]
    names = network.pod_names([old, new, web])["n"]
    assert names["app"] == ["10.9.0.3", "10.9.0.4"] and names["app-9c1b"] == ["10.9.0.4"] and names["web"] == ["10.9.0.5"]


def test_hosts_file_of_a_pod_on_the_host_network_names_itself_only():
    host = [{"name": "host", "requested": None}]
    a = {"name": "a", "hostname": "a", "networks": host}
    b = {"name": "b", "hostname": "b.example", "networks": host}
    c = {"name": "c", "networks": [{"name": "n", "address": "10.9.0.3"}]}
    assert network.hosts_file([a, b, c], a).splitlines()[2:] == ["127.0.1.1\ta"]
    assert network.hosts_file([a, b, c], b).splitlines()[2:] == ["127.0.1.1\tb b.example"]
    assert network.hosts_file([a, b, c], c).splitlines()[2:] == ["10.9.0.3\tc"]


def test_resolv_conf_from_the_task_or_the_host(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 192.0.2.53\n")
    assert network.resolv_conf(None, str(host)) == "nameserver 192.0.2.53\n"
    assert network.resolv_conf({"nameservers": ["9.9.9.9"], "search": ["example.com"]}, str(host)) == \
        "nameserver 9.9.9.9\nsearch example.com\n"
    with pytest.raises(ValueError):
        network.resolv_conf({"nameservers": ["not-an-address"]})


def test_a_network_declared_before_modes_existed_reads_as_shared_without_egress(store):
    declared = network.normalize("old", "10.77.0.0/24")
    for key in ("mode", "egress_if"):
        del declared[key]
    network.declare(store, declared)
    found = network.get_network(store, "old")
    assert (found["mode"], found["egress_if"]) == ("shared", None)
    assert found == network.normalize("old", "10.77.0.0/24"), "a re-run of its task must see no change"
