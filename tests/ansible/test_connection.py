"""The jetpack.runtime.jetpack connection plugin against a real pod on the Linux engine.

The pod (tests/helpers/ansible_pod.py) runs busybox as www with the host's /usr bound read-only,
so that Ansible finds a Python inside it. Ansible runs on the pod host (the plugin starts the
`jetpack` command the core installs) and, when sshd is installed, through ssh to root@127.0.0.1.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import install
from tests.conftest import unavailable
from tests.helpers import ansible_pod
from tests.helpers.sshd import Sshd
from tests.helpers.store import scratch_store

pytestmark = [pytest.mark.ansible, pytest.mark.integration]
HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "pytest-collections")
BIN = os.path.dirname(sys.executable)


def ansible_env(**more):
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="0",
                ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", **more)


@pytest.fixture(scope="module")
def store(zfs_pool):
    yield from scratch_store(zfs_pool, "c")


@pytest.fixture(scope="module")
def jetpack_command(tmp_path_factory):
    """The `jetpack` command as the core installs it on a host (here under a temporary base)."""
    base = tmp_path_factory.mktemp("jetpack-lib")
    install.ensure_installed(base=str(base / "core"))
    return str(base / "bin" / "jetpack")


@pytest.fixture(scope="module")
def pod(store, tmp_path_factory):
    ansible_pod.import_image(store, str(tmp_path_factory.mktemp("image")))
    pod = ansible_pod.start_pod(store, ansible_pod.spec("web"))
    yield pod
    ansible_pod.destroy_pod(store, "web")


def inventory(tmp_path, store, jetpack_command, **connection):
    """An inventory of the pod as `web` (the app's user) and `web_as_root`."""
    common = dict({"ansible_connection": "jetpack.runtime.jetpack", "ansible_host": "web",
                   "ansible_jetpack_command": jetpack_command, "ansible_jetpack_store_root": store.root,
                   "ansible_jetpack_store_mountpoint": store.config.mountpoint,
                   "ansible_python_interpreter": "/usr/bin/python3"}, **connection)
    hosts = {"web": dict(common), "web_as_root": dict(common, ansible_user="root")}
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps({"all": {"hosts": hosts}}))
    return str(path)


def run_playbook(inventory_path, tmp_path, pipelining):
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-vvv", "-i", inventory_path,
                           os.path.join(HERE, "playbooks", "jetpack_connection.yml"), "-e",
                           json.dumps({"fetched": str(fetched), "run": tmp_path.name})],
                          env=ansible_env(ANSIBLE_PIPELINING=str(pipelining)), capture_output=True, text=True,
                          check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    return proc.stdout, fetched


@pytest.mark.parametrize("pipelining", [False, True], ids=["files", "pipelining"])
def test_playbook_on_the_pod_host(pod, store, jetpack_command, tmp_path, pipelining):
    out, fetched = run_playbook(inventory(tmp_path, store, jetpack_command), tmp_path, pipelining)
    assert "failed=0" in out
    # Pipelining sends modules through jetpack exec's stdin; not for su (its become plugin does not
    # pipeline), whose files go to /var/tmp.
    modules_put = [line for line in out.splitlines()
                   if " PUT " in line and "/AnsiballZ_" in line and " TO /var/tmp/" not in line]
    assert bool(modules_put) is not pipelining
    assert (fetched / "greeting.txt").read_text() == "Hello from web as www.\n"
    copied, became = "/home/www/copied-%s.txt" % tmp_path.name, "/home/www/became-%s.txt" % tmp_path.name
    assert app_file(store, jetpack_command, copied) == "copied by ansible\n"
    assert app_file(store, jetpack_command, became) == "written by www\n"
    owner = run_jetpack(store, jetpack_command, "exec", "web", "--", "stat", "-c", "%U %a", copied,
                        became).stdout.split("\n")
    assert owner[:2] == ["www 640", "www 644"]


def test_ad_hoc_setup(pod, store, jetpack_command, tmp_path):
    proc = subprocess.run([os.path.join(BIN, "ansible"), "-i", inventory(tmp_path, store, jetpack_command), "web",
                           "-m", "ansible.builtin.setup", "-a", "gather_subset=min"], env=ansible_env(),
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    facts = json.loads(proc.stdout.split("=>", 1)[1])["ansible_facts"]
    assert facts["ansible_user_id"] == "www" and facts["ansible_env"]["container"] == "jetpack"
    assert facts["ansible_env"]["AC_APP_NAME"] == "main"


def test_a_planted_symlink_cannot_make_copy_write_outside_the_pod(pod, store, jetpack_command, tmp_path):
    """A symlink planted in the pod to a host path, both as copy's destination directory and as
    Ansible's remote temporary directory, leads to that path inside the pod, never to the host's."""
    outside = tmp_path / "host-secret"
    outside.mkdir()
    run_jetpack(store, jetpack_command, "exec", "--root", "web", "--", "mkdir", "-m", "777", "-p", str(outside))
    run_jetpack(store, jetpack_command, "exec", "web", "--", "ln", "-s", str(outside), "/home/www/planted")
    run_jetpack(store, jetpack_command, "exec", "web", "--", "rm", "-rf", "/home/www/.ansible")  # earlier runs' own
    run_jetpack(store, jetpack_command, "exec", "web", "--", "ln", "-s", str(outside), "/home/www/.ansible")
    playbook = tmp_path / "planted.yml"
    playbook.write_text(json.dumps([{"hosts": "web", "gather_facts": False, "tasks": [
        {"ansible.builtin.copy": {"content": "pwned\n", "dest": "/home/www/planted/pwned", "mode": "0644"}}]}]))
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inventory(tmp_path, store, jetpack_command),
                           str(playbook)], env=ansible_env(), capture_output=True, text=True, check=False,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert os.listdir(str(outside)) == []
    # The same path inside the pod got copy's file and Ansible's temporary directory.
    inside = run_jetpack(store, jetpack_command, "exec", "web", "--", "ls", "-a", str(outside)).stdout.split()
    assert "pwned" in inside and "tmp" in inside
    run_jetpack(store, jetpack_command, "exec", "web", "--", "rm", "/home/www/.ansible", "/home/www/planted")


def test_remote_pod_host_over_ssh(pod, store, jetpack_command, tmp_path):
    if not shutil.which("sshd") and not os.path.exists("/usr/sbin/sshd"):
        unavailable("needs openssh-server (scripts/setup installs it)")
    with Sshd(tmp_path / "sshd") as sshd:
        path = inventory(tmp_path, store, jetpack_command, ansible_jetpack_pod_host="127.0.0.1",
                         ansible_jetpack_pod_host_user="root", ansible_jetpack_pod_host_port=sshd.port,
                         ansible_jetpack_pod_host_private_key_file=sshd.client_key,
                         ansible_jetpack_pod_host_ssh_extra_args="-o UserKnownHostsFile=%s" % sshd.known_hosts)
        out, fetched = run_playbook(path, tmp_path, pipelining=False)
    assert "failed=0" in out and sshd.connections() > 0
    assert (fetched / "greeting.txt").read_text() == "Hello from web as www.\n"


def app_file(store, jetpack_command, path):
    return run_jetpack(store, jetpack_command, "get", "--root", "web", path).stdout


def run_jetpack(store, jetpack_command, *args):
    proc = subprocess.run([jetpack_command, "--store-root", store.root, "--store-mountpoint", store.config.mountpoint]
                          + list(args), capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc
