"""Runs the playbooks in tests/ansible/playbooks against localhost with the collection from this checkout."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig
from tests.helpers.images import make_aci, manifest, sha512_id

pytestmark = [pytest.mark.ansible, pytest.mark.integration]
HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "pytest-collections")


def run_playbook(name, extra_vars):
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    proc = subprocess.run([ansible_playbook, "-i", "localhost,", os.path.join(HERE, "playbooks", name),
                           "-e", json.dumps(extra_vars)], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc.stdout


def test_jetpack_image_four_steps(store_vars, tmp_path):
    base_aci, base_tar = make_aci(str(tmp_path), manifest("example.com/base", {"version": "1.0"}),
                                  {"etc/motd": "base\n"}, name="base")
    child = manifest("example.com/child", dependencies=[{"imageName": "example.com/base"}])
    child_aci = make_aci(str(tmp_path), child, {"etc/child": "child\n"}, name="child")[0]
    (tmp_path / "export").mkdir()
    out = run_playbook("jetpack_image.yml", dict(
        store_vars, base_aci=base_aci, child_aci=child_aci, base_id=sha512_id(base_tar),
        export_path=str(tmp_path / "export" / "base.aci")))
    assert "failed=0" in out
    store = Store(StoreConfig(store_vars["store_root"], store_vars["store_mountpoint"]))
    assert store.list_objects("images") == {}


def test_jetpack_volume_four_steps(store_vars):
    out = run_playbook("jetpack_volume.yml", store_vars)
    assert "failed=0" in out


def test_jetpack_pod_four_steps(store_vars, tmp_path):
    busybox_aci = make_aci(str(tmp_path), manifest("example.com/busybox", {"os": "linux"}), busybox=True)[0]
    out = run_playbook("jetpack_pod.yml", dict(store_vars, busybox_aci=busybox_aci))
    assert "failed=0" in out
    store = Store(StoreConfig(store_vars["store_root"], store_vars["store_mountpoint"]))
    assert store.list_objects("pods") == {}


def test_jetpack_network_four_steps(store_vars):
    out = run_playbook("jetpack_network.yml", store_vars)
    assert "failed=0" in out
