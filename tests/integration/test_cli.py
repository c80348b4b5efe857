"""The `jetpack` command for people on a host, run as a real process against a real store and pod."""
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines, images, install, pods
from tests.helpers.images import make_aci, manifest

pytestmark = pytest.mark.integration
CORE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "plugins", "module_utils")


def jetpack(store, *args, check=True):
    env = dict(os.environ, PYTHONPATH=CORE)
    proc = subprocess.run([sys.executable, "-m", "jetpack.cli", "--store-root", store.root, "--store-mountpoint",
                           store.config.mountpoint] + list(args), env=env, capture_output=True, text=True,
                          check=False, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def pod(store, tmp_path):
    files = {"etc/passwd": "root:x:0:0::/:/bin/sh\nwww:x:80:80::/:/bin/sh\n", "etc/group": "root:x:0:\nwww:x:80:\n"}
    path = make_aci(str(tmp_path), manifest("example.com/busybox", {"os": "linux"}), files, busybox=True)[0]
    images.import_image(store, images.ImportRequest(source=path))
    engine = engines.for_host()
    spec = {"name": "web", "apps": [{"name": "main", "image": "example.com/busybox", "user": "www", "group": "www",
                                     "exec": ["/bin/sh", "-c", "echo hello from main; exec sleep 600"]}]}
    created = pods.create(store, pods.reify(store, spec, engine.name), engine)
    pods.start_supervised(store, created)
    yield created
    pods.destroy(pods.find_pod(store, "web"), engine)


def test_list_show_and_logs(store, pod):
    assert jetpack(store, "list", "-q").stdout.split() == ["web"]
    listing = jetpack(store, "list").stdout
    assert "running" in listing and pod.uuid in listing
    assert '"state": "running"' in jetpack(store, "show", "web").stdout
    deadline = time.monotonic() + 10
    while "hello from main" not in jetpack(store, "logs", "web").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert jetpack(store, "logs", "web:main").stdout == "hello from main\n"


def test_exec_runs_as_the_app_and_returns_its_status(store, pod):
    assert jetpack(store, "exec", "web", "--", "/bin/id", "-u").stdout == "80\n"
    assert jetpack(store, "exec", "--root", "web:main", "--", "/bin/id", "-u").stdout == "0\n"
    assert jetpack(store, "exec", "web", "--", "/bin/sh", "-c", "exit 7", check=False).returncode == 7
    missing = jetpack(store, "exec", "web:nope", "--", "/bin/true", check=False)
    assert missing.returncode == 1 and "web:APP" in missing.stderr and "main" in missing.stderr


def test_stop_start_and_gc(store, pod):
    assert jetpack(store, "stop", "web").stdout == "stopped web\n"
    assert "stopped" in jetpack(store, "list").stdout
    assert jetpack(store, "exec", "web", "--", "/bin/true", check=False).returncode == 1
    assert jetpack(store, "start", "web").stdout == "started web\n"
    assert jetpack(store, "start", "web").stdout == "web was running\n"
    assert jetpack(store, "gc").stdout == ""


def test_the_installed_core_brings_a_jetpack_command(tmp_path):
    core = install.ensure_installed(base=str(tmp_path / "core"))
    command = str(tmp_path / "bin" / "jetpack")
    out = subprocess.run([command, "--help"], capture_output=True, text=True, check=True).stdout
    assert "App Container runtime" in out and core in open(command).read()
