"""The jetpack.runtime.jetpack inventory plugin against real pods on the Linux engine."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import install
from tests.conftest import unavailable
from tests.helpers import ansible_pod
from tests.helpers.sshd import SSHD, Sshd
from tests.helpers.store import scratch_store

pytestmark = [pytest.mark.ansible, pytest.mark.integration]
HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "pytest-collections")
BIN = os.path.dirname(sys.executable)
TEMPLATE = "{{ 6 * 7 }}"  # an annotation a pod's creator chose: the inventory must never template it


@pytest.fixture(scope="module")
def store(zfs_pool):
    yield from scratch_store(zfs_pool, "i")


@pytest.fixture(scope="module")
def pods(store, tmp_path_factory):
    """web (running, tier=front, an annotation that looks like a template) and db (created, stopped)."""
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines
    from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import pods as core_pods
    ansible_pod.import_image(store, str(tmp_path_factory.mktemp("image")))
    ansible_pod.start_pod(store, ansible_pod.spec("web", {"tier": "front", "note": TEMPLATE}))
    engine = engines.for_host()
    core_pods.create(store, core_pods.reify(store, ansible_pod.spec("db", {"tier": "back"}), engine.name), engine)
    yield
    for name in ("web", "db"):
        ansible_pod.destroy_pod(store, name)


@pytest.fixture(scope="module")
def jetpack_command(tmp_path_factory):
    base = tmp_path_factory.mktemp("jetpack-lib")
    install.ensure_installed(base=str(base / "core"))
    return str(base / "bin" / "jetpack")


def write_config(tmp_path, store, jetpack_command, **options):
    config = dict({"plugin": "jetpack.runtime.jetpack", "jetpack_command": jetpack_command, "store_root": store.root,
                   "store_mountpoint": store.config.mountpoint,
                   "keyed_groups": [{"key": "jetpack_annotations.tier", "prefix": "tier"}],
                   "groups": {"web_pods": "'web' in inventory_hostname"},
                   "compose": {"ansible_python_interpreter": "'/usr/bin/python3'"}}, **options)
    path = tmp_path / "pods.jetpack.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return str(path)


def ansible(tool, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1",
               ANSIBLE_INVENTORY_ENABLED="jetpack.runtime.jetpack", ANSIBLE_INVENTORY_UNPARSED_FAILED="1")
    proc = subprocess.run([os.path.join(BIN, tool)] + list(args), env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def listing(config):
    return json.loads(ansible("ansible-inventory", "-i", config, "--list", "--export"))


def plain(value):
    """A value of `ansible-inventory --export` without its unsafe markers ({"__ansible_unsafe": text})."""
    if isinstance(value, dict):
        if list(value) == ["__ansible_unsafe"]:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def members(inventory, group):
    return sorted(inventory.get(group, {}).get("hosts", []))


def test_pods_with_groups_and_variables(pods, store, jetpack_command, tmp_path):
    inventory = listing(write_config(tmp_path, store, jetpack_command))
    assert members(inventory, "jetpack_pods") == ["db", "web"]
    assert members(inventory, "jetpack_state_running") == ["web"]
    assert members(inventory, "jetpack_state_stopped") == ["db"]
    assert members(inventory, "jetpack_image_example_com_ansible_target") == ["db", "web"]
    assert members(inventory, "jetpack_label_version_1_0") == ["db", "web"]
    assert members(inventory, "jetpack_label_os_linux") == ["db", "web"]
    assert members(inventory, "jetpack_host_localhost") == ["db", "web"]
    assert members(inventory, "tier_front") == ["web"] and members(inventory, "tier_back") == ["db"]
    assert members(inventory, "web_pods") == ["web"]
    raw = inventory["_meta"]["hostvars"]["web"]
    assert raw["jetpack_state"] == {"__ansible_unsafe": "running"}  # what the runtime says is marked unsafe
    assert raw["jetpack_pod"]["apps"][0]["image_name"] == {"__ansible_unsafe": "example.com/ansible-target"}
    web = plain(raw)
    assert web["ansible_connection"] == "jetpack.runtime.jetpack" and web["ansible_host"] == "web"
    assert web["ansible_python_interpreter"] == "/usr/bin/python3"
    assert web["jetpack_state"] == "running" and web["jetpack_pod"]["apps"][0]["name"] == "main"
    assert web["jetpack_labels"] == {"os": ["linux"], "version": ["1.0"]}
    assert "jetpack_apps" not in inventory


def test_apps_as_hosts_and_a_state_filter(pods, store, jetpack_command, tmp_path):
    inventory = listing(write_config(tmp_path, store, jetpack_command, include_apps=True, states=["running"]))
    assert members(inventory, "jetpack_pods") == ["web"] and members(inventory, "jetpack_apps") == ["web.main"]
    app = plain(inventory["_meta"]["hostvars"]["web.main"])
    assert app["ansible_jetpack_app"] == "main" and app["jetpack_app"]["user"] == "www"


def test_runtime_values_are_never_templated_and_hosts_are_reachable(pods, store, jetpack_command, tmp_path):
    config = write_config(tmp_path, store, jetpack_command, states=["running"])
    out = ansible("ansible", "-i", config, "jetpack_state_running", "-m", "ansible.builtin.debug", "-a",
                  "var=jetpack_annotations.note")
    assert TEMPLATE in out and "42" not in out
    out = ansible("ansible", "-i", config, "tier_front", "-m", "ansible.builtin.command", "-a", "id -un")
    assert "web | CHANGED | rc=0 >>\nwww" in out


def test_a_pod_host_over_ssh(pods, store, jetpack_command, tmp_path):
    if not os.path.exists(SSHD):
        unavailable("needs openssh-server (scripts/setup installs it)")
    with Sshd(tmp_path / "sshd") as sshd:
        config = write_config(tmp_path, store, jetpack_command, hosts=["127.0.0.1"], ssh_user="root",
                              ssh_port=sshd.port, ssh_private_key_file=sshd.client_key,
                              ssh_extra_args="-o UserKnownHostsFile=%s" % sshd.known_hosts)
        inventory = listing(config)
        assert members(inventory, "jetpack_pods") == ["db@127.0.0.1", "web@127.0.0.1"]
        web = plain(inventory["_meta"]["hostvars"]["web@127.0.0.1"])
        assert web["ansible_jetpack_pod_host"] == "127.0.0.1" and web["ansible_jetpack_pod_host_port"] == sshd.port
        out = ansible("ansible", "-i", config, "jetpack_state_running", "-m", "ansible.builtin.command", "-a", "id -un")
        assert "web@127.0.0.1 | CHANGED | rc=0 >>\nwww" in out and sshd.connections() >= 2


def test_a_missing_jetpack_is_a_clear_error(tmp_path, store):
    config = write_config(tmp_path, store, str(tmp_path / "no-such-jetpack"))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_INVENTORY_ENABLED="jetpack.runtime.jetpack",
               ANSIBLE_INVENTORY_UNPARSED_FAILED="1")
    proc = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", config, "--list"], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode != 0 and "cannot list the pods of localhost" in proc.stderr
