"""Pods on networks end to end on the Linux engine: names, addresses, published ports, NAT, the host's
own network, and nothing left once the last pod is gone.

Each test runs in a network namespace of its own standing for the host (tests/helpers/netlab.py): the
zygote its first pod start launches inherits it, and so does every pod supervisor, so the bridges, the
`inet jetpack` table and the forwarding sysctls the pods need are made there, never on the machine.
Addresses used, only inside those namespaces: 10.233.0.0/24 (network jpt) and 10.233.1.0/24 (jpt2).
"""
import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import images, network, pods
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import AlreadyExists, InvalidInput, JetpackError
from tests.helpers.images import make_aci, manifest
from tests.helpers.netlab import HOST_LINK, OTHER, entered_lab, link_names, nft_tables, sh
from tests.integration.conftest import GROUP, PASSWD
from tests.integration.test_pods import busybox_app, run_pod, volume_path, wait_for_file

pytestmark = pytest.mark.integration

HTTPD = "echo %s > /www/index.html; exec httpd -f -v -p %s -h /www"


@pytest.fixture
def host(store, engine):
    """The test's host network namespace; every pod of the store is destroyed before it is left."""
    with entered_lab() as lab:
        try:
            yield lab
        finally:
            for pod in pods.list_pods(store):
                pods.destroy(pod, engine)
            left = [name for name in link_names() if name != "lo" and name != "jpt-link"]
            assert left == [] and nft_tables() == "", "the pods' networks outlived them: %s" % left


@pytest.fixture
def jpt(store):
    net = network.normalize("jpt", "10.233.0.0/24")
    network.declare(store, net)
    return net


def until(fetch, expected, attempts=100):
    """fetch() once it returns expected (a server may still be starting), else its last answer."""
    for _attempt in range(attempts):
        answer = fetch()
        if answer == expected:
            break
        time.sleep(0.1)
    return answer


def holder_pid(pod):
    return pods.read_json(pod.run_file("context.json"))["holder_pid"]


def app_file(pod, path):
    with open(os.path.join(pod.record["apps"][0]["rootfs"], path)) as f:
        return f.read()


def jetpack_links():
    """The bridges and veths jetpack made on the (test's) host."""
    return sorted(name for name in link_names() if name.startswith(("jp-", "jpv")))


def sleeper(name, networks):
    return {"name": name, "networks": networks, "apps": [busybox_app("a", "exec sleep 600")]}


def test_pods_on_a_network_talk_by_name_and_publish_ports(store, engine, busybox, host, jpt):
    server = run_pod(store, engine, {
        "name": "server", "hostname": "web", "networks": ["jpt"], "ports": [{"host_port": 18080, "pod_port": 8080}],
        "apps": [busybox_app("srv", HTTPD % ("hello-by-name", 8080))]})
    client = run_pod(store, engine, {
        "name": "client", "networks": ["jpt"],
        "apps": [busybox_app("c", "sleep 0.5; wget -qO /out/by-hostname http://web:8080/;"
                             " wget -qO /out/got http://server:8080/; exec sleep 600",
                             mounts=[{"volume": "out", "path": "/out"}])],
        "volumes": [{"name": "out", "kind": "empty"}]})
    assert wait_for_file(os.path.join(volume_path(client, "out"), "got")) == "hello-by-name\n"
    with open(os.path.join(volume_path(client, "out"), "by-hostname")) as f:
        assert f.read() == "hello-by-name\n"  # a pod answers to its hostname too
    hosts = app_file(server, "etc/hosts")
    assert "10.233.0.2\tserver web\n" in hosts and "10.233.0.3\tclient\n" in hosts  # the older pod knows the newer
    assert server.info()["networks"] == [{"name": "jpt", "address": "10.233.0.2", "address6": None}]
    assert host.http_get(None, "http://10.233.0.1:18080/") == "hello-by-name\n"

    duplicate = pods.reify(store, {"name": "dup", "networks": ["jpt"], "ports": [{"host_port": 18080}],
                                   "apps": [busybox_app("a", "sleep 600")]}, engine.name)
    with pytest.raises(AlreadyExists, match="published by pod server"):
        pods.create(store, duplicate, engine)
    assert pods.find_pod(store, "dup") is None


def test_a_published_port_answers_from_the_host_and_from_another_machine(store, engine, busybox, host, jpt):
    other = host.other()
    web = run_pod(store, engine, {"name": "web", "networks": ["jpt"], "ports": [{"host_port": 18080, "pod_port": 80}],
                                  "apps": [busybox_app("srv", HTTPD % ("published", 80))]})
    assert until(lambda: host.http_get(None, "http://127.0.0.1:18080/"), "published\n") == "published\n"
    assert host.http_get(None, "http://%s:18080/" % HOST_LINK) == "published\n"    # a host address
    assert host.http_get(None, "http://10.233.0.1:18080/") == "published\n"       # the bridge's
    assert host.http_get(other, "http://%s:18080/" % HOST_LINK) == "published\n"   # another machine
    with open(os.path.join(web.record["pod_dir"], "logs", "srv.log")) as f:
        assert OTHER in f.read()  # DNAT only: the pod sees the other machine's own address
    assert host.http_get(other, "http://%s:18081/" % HOST_LINK) == "error ConnectionRefusedError"


def test_nat_reaches_a_listener_outside_the_pod_network(store, engine, busybox, host, jpt):
    other = host.other()
    host.server(other, 9000, "other")
    pod = run_pod(store, engine, {
        "name": "nat", "networks": ["jpt"],
        "apps": [busybox_app("c", "nc %s 9000 > /out/got; exec sleep 600" % OTHER,
                             mounts=[{"volume": "out", "path": "/out"}])],
        "volumes": [{"name": "out", "kind": "empty"}]})
    # The other machine has no route to 10.233.0.0/24: it answered the host's address, masquerading the pod.
    assert wait_for_file(os.path.join(volume_path(pod, "out"), "got")) == "%s other\n" % HOST_LINK


def host_state(store):
    """What a pod create may change: pod directories and datasets, leases, interfaces, rules."""
    return (sorted(os.listdir(store.path("pods"))), sorted(store.list_objects("pods")), network.leases(store, "jpt"),
            link_names(), sh("nft", "list", "ruleset").stdout)


def test_a_fixed_address_that_is_taken_is_refused_and_nothing_is_made(store, engine, busybox, host, jpt):
    first = run_pod(store, engine, sleeper("first", [{"name": "jpt", "address": "10.233.0.7"}]))
    assert first.record["networks"][0]["address"] == "10.233.0.7"
    assert "10.233.0.7/24" in sh(*host.inside(holder_pid(first), ["ip", "-4", "-br", "addr", "show", "eth0"])).stdout
    before = host_state(store)
    for address, error, words in (("10.233.0.7", AlreadyExists, "10.233.0.7 on network jpt is taken"),
                                  ("10.233.0.1", AlreadyExists, "in use on the host"),  # the gateway
                                  ("10.233.1.7", InvalidInput, "not a host address of 10.233.0.0/24")):
        wanted = pods.reify(store, sleeper("second", [{"name": "jpt", "address": address}]), engine.name)
        with pytest.raises(error, match=words):
            pods.create(store, wanted, engine)
        assert host_state(store) == before
    assert [pod.name for pod in pods.list_pods(store)] == ["first"]


def test_an_address_is_reused_only_after_its_pod_is_destroyed(store, engine, busybox, host, jpt):
    first = run_pod(store, engine, sleeper("first", ["jpt"]))
    second = run_pod(store, engine, sleeper("second", ["jpt"]))
    assert [first.record["networks"][0]["address"], second.record["networks"][0]["address"]] == \
        ["10.233.0.2", "10.233.0.3"]
    pods.stop(second, engine)  # a stopped pod keeps its address
    third = pods.create(store, pods.reify(store, sleeper("third", ["jpt"]), engine.name), engine)
    assert third.record["networks"][0]["address"] == "10.233.0.4"
    pods.destroy(second, engine)
    fourth = run_pod(store, engine, sleeper("fourth", ["jpt"]))
    assert fourth.record["networks"][0]["address"] == "10.233.0.3"
    assert sorted(network.leases(store, "jpt")) == ["10.233.0.2", "10.233.0.3", "10.233.0.4"]


def test_a_stopped_pod_loses_its_veth_at_once_and_gets_it_back_when_started(store, engine, busybox, host, jpt):
    pod = run_pod(store, engine, sleeper("again", ["jpt"]))
    host_end = pod.record["networks"][0]["host_ifname"]
    assert host_end in link_names()
    pods.stop(pod, engine)
    assert host_end not in link_names()  # deleted with the holder, not whenever the kernel gets to it
    # What a crash can leave for a moment: the veth of the pod's last run, still on the bridge.
    sh("ip", "link", "add", "name", host_end, "master", "jp-jpt", "type", "veth", "peer", "name", "jpt-stale")
    assert pods.start_supervised(store, pod)
    inside = sh(*host.inside(holder_pid(pod), ["ip", "-4", "-br", "addr", "show", "eth0"])).stdout
    assert "10.233.0.2/24" in inside and "jpt-stale" not in link_names()


def test_a_pod_whose_interface_cannot_be_made_does_not_start_and_says_why(store, engine, busybox, host, jpt):
    pod = pods.create(store, pods.reify(store, sleeper("blocked", ["jpt"]), engine.name), engine)
    host_end = pod.record["networks"][0]["host_ifname"]
    sh("ip", "link", "add", "name", host_end, "type", "bridge")  # by the pod's name, but not on its bridge
    with pytest.raises(JetpackError, match="interface %s is not a port of bridge jp-jpt" % host_end):
        pods.start_supervised(store, pod)
    assert not pod.running() and not os.path.exists(pod.run_file("context.json"))
    assert host_end in link_names()  # not jetpack's to delete
    sh("ip", "link", "del", host_end)


def test_destroying_every_pod_leaves_no_interface_bridge_or_table(store, engine, busybox, host, jpt):
    network.declare(store, network.normalize("jpt2", "10.233.1.0/24"))
    a = run_pod(store, engine, dict(sleeper("a", ["jpt"]), ports=[{"host_port": 18080, "pod_port": 80}]))
    b = run_pod(store, engine, sleeper("b", ["jpt", "jpt2"]))
    c = run_pod(store, engine, sleeper("c", ["jpt2"]))
    veths = [name for name in jetpack_links() if name.startswith("jpv")]
    assert len(veths) == 4 and "jp-jpt" in jetpack_links() and "jp-jpt2" in jetpack_links()
    inside_b = sh(*host.inside(holder_pid(b), ["ip", "-4", "-br", "addr"])).stdout
    assert "10.233.0.3/24" in inside_b and "10.233.1.2/24" in inside_b
    assert "dport 18080" in sh("nft", "list", "table", "inet", "jetpack").stdout

    pods.destroy(a, engine)  # b still uses jpt: its bridge stays, a's port goes
    assert "jp-jpt" in jetpack_links() and "dport 18080" not in sh("nft", "list", "table", "inet", "jetpack").stdout
    pods.stop(c, engine)     # a stopped pod has no interface; its network stays declared for it
    assert len([name for name in jetpack_links() if name.startswith("jpv")]) == 2
    pods.destroy(b, engine)  # the last pod of jpt
    assert jetpack_links() == ["jp-jpt2"]
    pods.destroy(c, engine)  # the last pod of all
    assert link_names() == ["lo"] and nft_tables() == ""
    assert network.leases(store, "jpt") == {} and network.leases(store, "jpt2") == {}


def test_a_pod_on_the_host_network_listens_on_the_hosts_loopback(store, engine, busybox, host):
    pod = run_pod(store, engine, {"name": "hostnet", "hostname": "hn.example", "networks": ["host"],
                                  "apps": [busybox_app("srv", HTTPD % ("on-the-host", "127.0.0.1:18181"))]})
    assert until(lambda: host.http_get(None, "http://127.0.0.1:18181/"), "on-the-host\n") == "on-the-host\n"
    holder = holder_pid(pod)
    assert os.readlink("/proc/%d/ns/net" % holder) == os.readlink("/proc/thread-self/ns/net")
    assert os.readlink("/proc/%d/ns/uts" % holder) != os.readlink("/proc/self/ns/uts")  # the rest is its own
    assert app_file(pod, "etc/hosts").splitlines()[2:] == ["127.0.1.1\thostnet hn.example"]
    with open("/etc/resolv.conf") as f:
        assert app_file(pod, "etc/resolv.conf") == f.read()
    assert link_names() == ["lo"] and nft_tables() == ""  # nothing made on the host for it
    pods.destroy(pod, engine)
    assert host.http_get(None, "http://127.0.0.1:18181/") == "error ConnectionRefusedError"


def test_network_options_that_cannot_work_are_refused(store, engine, busybox):
    app = [busybox_app("a", "sleep 600")]
    for spec, words in (
            ({"networks": ["host"], "ports": [{"host_port": 8080}]}, "cannot be published for a pod on networks: \\[host\\]"),
            ({"networks": ["none"], "ports": [{"host_port": 8080}]}, "ports need a network"),
            ({"ports": [{"host_port": 8080}]}, "ports need a network"),  # networks left out: none
            ({"networks": ["host", "jpt"]}, "host and none cannot be combined"),
    ):
        with pytest.raises(InvalidInput, match=words):
            pods.reify(store, dict(spec, name="x", apps=app), engine.name)
    assert pods.reify(store, {"name": "x", "apps": app}, engine.name)["networks"] == []  # the default: none
    assert os.listdir(store.path("pods")) == []


def test_only_networked_pods_load_the_network_code():
    """A supervisor (forked from the zygote) of a pod without a network, or on the host's, never
    imports linux_network; a networked pod's does, when it needs it."""
    script = """
import json, sys
sys.path[:0] = %r
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import zygote
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import linux
def loaded():
    return [name.rsplit(".", 1)[-1] for name in sys.modules if name.endswith("linux_network")]
zygote.preload()
seen = [loaded()]
for networks in ([], [{"name": "host"}]):
    record = {"uuid": "u", "networks": networks}
    linux.LinuxEngine().prepare(record)
    linux._attach_networks(record, 1)
seen.append(loaded())
linux.LinuxEngine().prepare({"uuid": "u", "networks": [{"name": "n"}]})
seen.append(loaded())
print(json.dumps(seen))
""" % (sys.path,)
    seen = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                     check=True).stdout)
    assert seen == [[], [], ["linux_network"]]


# --- names through the network's DNS responder (hostd.py, dns.py) --------------------------------
IMAGE_HOSTS = "127.0.0.1\tlocalhost\n# the image's own file: jetpack never writes here\n"


@pytest.fixture
def hosted(store, tmp_path):
    """An image that brings its own /etc/hosts (and busybox)."""
    files = {"etc/passwd": PASSWD, "etc/group": GROUP, "etc/hosts": IMAGE_HOSTS, "tmp/.keep": ""}
    path = make_aci(str(tmp_path), manifest("example.com/hosted", {"version": "1", "os": "linux"}),
                    files, busybox=True, name="hosted")[0]
    return images.import_image(store, images.ImportRequest(source=path))[0]


def test_an_images_own_hosts_file_is_kept_and_pod_names_resolve_through_dns(
        store, engine, busybox, hosted, host, jpt):
    from tests.integration.test_pod_metadata import in_pod
    run_pod(store, engine, {"name": "server", "networks": ["jpt"], "apps": [busybox_app("srv", HTTPD % ("by-dns", 8080))]})
    keeper = run_pod(store, engine, {
        "name": "keeper", "networks": ["jpt"],
        "apps": [{"name": "k", "image": "example.com/hosted", "exec": ["/bin/busybox", "sleep", "600"]}]})
    assert app_file(keeper, "etc/hosts") == IMAGE_HOSTS and app_file(keeper, "etc/resolv.conf") == "nameserver 10.233.0.1\n"
    fetch = ("/bin/busybox", "wget", "-qO-", "http://server:8080/")
    assert until(lambda: in_pod(engine, keeper, *fetch)[1], "by-dns\n") == "by-dns\n"
    status, out, _err = in_pod(engine, keeper, "/bin/busybox", "nslookup", "keeper")
    assert status == 0 and "Address: 10.233.0.3" in out                  # its own name
    late = run_pod(store, engine, sleeper("late", ["jpt"]))             # created after keeper
    status, out, _err = in_pod(engine, keeper, "/bin/busybox", "nslookup", "late")
    assert status == 0 and "Address: %s" % late.record["networks"][0]["address"] in out
    assert in_pod(engine, keeper, "/bin/busybox", "ping", "-c1", "-W5", "late")[0] == 0
    status, out, _err = in_pod(engine, keeper, "/bin/busybox", "nslookup", "nosuchpod")
    assert status != 0 and "can't find nosuchpod" in out                 # not a pod: the lab has no upstream
    assert app_file(keeper, "etc/hosts") == IMAGE_HOSTS                  # still untouched
    assert "10.233.0.4\tlate\n" in app_file(late, "etc/hosts")           # an image without one gets ours


def test_dns_and_metadata_answer_only_their_own_networks_pods(store, engine, busybox, host, jpt):
    from tests.integration.test_pod_metadata import in_pod
    network.declare(store, network.normalize("jpt2", "10.233.1.0/24"))
    run_pod(store, engine, sleeper("secret", ["jpt"]))
    outsider = run_pod(store, engine, sleeper("outsider", ["jpt2"]))
    assert app_file(outsider, "etc/resolv.conf") == "nameserver 10.233.1.1\n"
    status, out, _err = in_pod(engine, outsider, "/bin/busybox", "nslookup", "secret")
    assert status != 0 and "10.233.0.2" not in out                        # jpt's names stay on jpt
    status, out, _err = in_pod(engine, outsider, "/bin/busybox", "nslookup", "secret", "10.233.0.1")
    assert status != 0 and "10.233.0.2" not in out                        # jpt's responder drops it
    assert in_pod(engine, outsider, "/bin/busybox", "nslookup", "outsider")[0] == 0
    status, _out, err = in_pod(engine, outsider, "/bin/busybox", "wget", "-T", "2", "-qO-",
                               outsider.record["metadata_url"].replace("10.233.1.1", "10.233.0.1") + "/acMetadata/v1/pod/uuid")
    assert status != 0                                                   # another network's gateway: dropped


def test_the_host_service_follows_the_networks_in_use_and_ends_with_the_last_pod(store, engine, busybox, host, jpt):
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import hostd
    network.declare(store, network.normalize("jpt2", "10.233.1.0/24"))
    first = run_pod(store, engine, sleeper("first", ["jpt"]))
    state = hostd.running(store.root)
    assert state["listen"] == {"jpt": ["10.233.0.1"]}
    second = run_pod(store, engine, sleeper("second", ["jpt2"]))
    again = hostd.running(store.root)
    assert again["listen"] == {"jpt": ["10.233.0.1"], "jpt2": ["10.233.1.1"]} and again["pid"] != state["pid"]
    os.kill(again["pid"], 9)                                              # a crash: the next start repairs it
    assert until(lambda: hostd.running(store.root), None) is None
    pods.stop(first, engine)
    pods.start_supervised(store, first)
    assert hostd.running(store.root)["listen"] == again["listen"]
    registry = os.path.join(store.config.mountpoint, "metadata", "pods")
    assert sorted(os.listdir(registry)) == sorted(p.key + ".json" for p in (first, second))
    pods.destroy(first, engine)
    assert os.listdir(registry) == [second.key + ".json"] and hostd.running(store.root)
    pods.destroy(second, engine)
    assert hostd.running(store.root) is None and os.listdir(registry) == []
