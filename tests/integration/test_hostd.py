"""The store's host service (hostd.py) as a real detached process, in a network namespace standing for
the host (tests/helpers/netlab.py): started, kept, restarted and stopped as pods.py asks; its DNS
responder answering pod names from the pod records on disk and forwarding the rest to a resolver
only the host can reach (a loopback one, as systemd-resolved's 127.0.0.53).

Addresses, only inside those namespaces: 10.234.0.1/24 on a bridge (a network's gateway).
"""
import json
import os
import signal
import socket
import time
import uuid

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import dns, hostd, install
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import JetpackError
from tests.helpers.netlab import entered_lab, sh
from tests.unit.test_dns import decode, query

GATEWAY = "10.234.0.1"


@pytest.fixture
def lab(tmp_path):
    with entered_lab() as lab:
        sh("ip", "link", "add", "jpt-gw", "type", "bridge")
        sh("ip", "addr", "add", GATEWAY + "/24", "dev", "jpt-gw")
        sh("ip", "link", "set", "jpt-gw", "up")
        yield lab


@pytest.fixture
def service(tmp_path, lab):
    """(start(listen) -> state, mountpoint): a hostd for a store of files under tmp_path, stopped afterwards."""
    root = "jpt-hostd/" + uuid.uuid4().hex[:8]
    mountpoint, state_dir = tmp_path / "store", tmp_path / "run"
    (mountpoint / "pods").mkdir(parents=True)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")       # reachable from the host's side only
    core = install.ensure_installed()

    def start(listen):
        return hostd.ensure(root, str(mountpoint), core, listen, directory=str(state_dir),
                            extra=["--resolv-conf", str(resolv)])
    start.root, start.state_dir, start.mountpoint = root, str(state_dir), mountpoint
    yield start
    hostd.stop(root, str(state_dir))
    assert hostd.running(root, str(state_dir)) is None


def add_pod(mountpoint, name, address, network="jpt"):
    key = uuid.uuid4().hex
    os.mkdir(mountpoint / "pods" / key)
    record = {"name": name, "uuid": str(uuid.UUID(key)), "networks": [{"name": network, "address": address}]}
    (mountpoint / "pods" / key / "pod.json").write_text(json.dumps(record))


def ask(name, qtype=dns.A):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query(name, qtype), (GATEWAY, dns.PORT))
        return decode(s.recv(4096))


def test_dns_answers_the_networks_pods_as_they_come_and_forwards_the_rest(service):
    add_pod(service.mountpoint, "first", "10.234.0.2")
    add_pod(service.mountpoint, "elsewhere", "10.235.0.2", network="other")
    upstream = dns.Responder("127.0.0.1", lambda name: ["192.0.2.9"] if name == "example.org" else None, lambda: [])
    upstream.start()
    try:
        service({"jpt": [GATEWAY]})
        assert ask("first")[3] == ["10.234.0.2"]
        add_pod(service.mountpoint, "later", "10.234.0.3")           # no signal, no restart: read on change
        assert ask("later")[3] == ["10.234.0.3"]
        assert ask("example.org")[3] == ["192.0.2.9"]                 # forwarded to the loopback resolver
        assert ask("elsewhere")[1] != dns.NOERROR                     # another network's pod is not ours
    finally:
        upstream.stop()


def test_ensure_keeps_a_running_service_restarts_it_when_addresses_change_and_after_a_crash(service):
    first = service({"jpt": [GATEWAY]})
    assert service({"jpt": [GATEWAY]})["pid"] == first["pid"]
    sh("ip", "addr", "add", "10.234.1.1/24", "dev", "jpt-gw")
    moved = service({"jpt": [GATEWAY], "two": ["10.234.1.1"]})
    assert moved["pid"] != first["pid"] and moved["listen"] == {"jpt": [GATEWAY], "two": ["10.234.1.1"]}
    os.kill(moved["pid"], signal.SIGKILL)                              # a crash: ensure() starts another
    for _attempt in range(200):                                       # once the kernel has released its lock
        if hostd.running(service.root, service.state_dir) is None:
            break
        time.sleep(0.05)
    again = service({"jpt": [GATEWAY], "two": ["10.234.1.1"]})
    assert again["pid"] not in (None, moved["pid"]) and ask("anything")[1] is not None
    assert hostd.stop(service.root, service.state_dir) is True
    assert hostd.running(service.root, service.state_dir) is None
    assert hostd.stop(service.root, service.state_dir) is False


def test_a_port_in_use_is_reported_and_nothing_keeps_running(service):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((GATEWAY, dns.PORT))
        with pytest.raises(JetpackError, match="cannot listen on 10.234.0.1 port 53.*stop what serves DNS there"):
            service({"jpt": [GATEWAY]})
    assert hostd.running(service.root, service.state_dir) is None


def test_prune_forgets_pods_that_no_longer_exist(tmp_path):
    registry = tmp_path / "metadata" / "pods"
    registry.mkdir(parents=True)
    live, gone = uuid.uuid4(), uuid.uuid4()
    for key in (live.hex + ".json", gone.hex + ".json", gone.hex + ".json.tmp"):
        (registry / key).write_text("{}")
    assert hostd.prune(str(tmp_path), [str(live)]) == [gone.hex, gone.hex]
    assert os.listdir(registry) == [live.hex + ".json"]
