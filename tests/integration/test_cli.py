"""The `jetpack` command for people on a host, run as a real process against a real store and pod."""
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines, fetch, images, install, pods
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
    files = {"etc/passwd": "root:x:0:0::/root:/bin/sh\nwww:x:80:80::/home/www:/bin/sh\n",
             "etc/group": "root:x:0:\nwww:x:80:\n", "srv/.keep": ""}
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


def test_exec_as_another_user_with_its_home(store, pod):
    assert jetpack(store, "exec", "-u", "root", "web", "--", "/bin/id", "-u").stdout == "0\n"
    assert jetpack(store, "exec", "web", "--", "/bin/sh", "-c", "echo $HOME").stdout == "/home/www\n"
    assert jetpack(store, "exec", "--user", "root", "web", "--", "/bin/sh", "-c", "echo $HOME").stdout == "/root\n"
    unknown = jetpack(store, "exec", "-u", "nobody", "web", "--", "/bin/true", check=False)
    assert unknown.returncode == 1 and "nobody" in unknown.stderr and "/etc/passwd" in unknown.stderr
    killed = jetpack(store, "exec", "web", "--", "/bin/sh", "-c", "kill -9 $$", check=False)
    assert killed.returncode == 128 + 9


def test_exec_passes_stdin_through(store, pod):
    proc = subprocess.run(jetpack_argv(store, "exec", "web", "--", "/bin/cat"), input=b"\x00binary\xff\n",
                          capture_output=True, env=core_env(), check=False, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"\x00binary\xff\n"


def test_put_and_get_stream_files_through_the_app(store, pod):
    data = bytes(range(256)) * 5000
    put = subprocess.run(jetpack_argv(store, "put", "--root", "--mode", "0640", "web", "/srv/data.bin"), input=data,
                         capture_output=True, env=core_env(), check=False, timeout=60)
    assert put.returncode == 0, put.stderr
    written = os.path.join(pod.record["apps"][0]["rootfs"], "srv", "data.bin")
    info = os.stat(written)
    assert open(written, "rb").read() == data and oct(info.st_mode & 0o7777) == "0o640" and info.st_uid == 0
    got = subprocess.run(jetpack_argv(store, "get", "--root", "web", "/srv/data.bin"), capture_output=True,
                         env=core_env(), check=False, timeout=60)
    assert got.returncode == 0 and got.stdout == data
    # As the app's user (www, uid 80): the kernel checks its permissions inside the pod.
    denied = subprocess.run(jetpack_argv(store, "put", "web", "/srv/other"), input=b"x", capture_output=True,
                            env=core_env(), check=False, timeout=60)
    assert denied.returncode == 1 and "cannot write /srv/other: Permission denied" in denied.stderr.decode()
    assert not os.path.exists(os.path.join(pod.record["apps"][0]["rootfs"], "srv", "other"))
    unreadable = jetpack(store, "get", "web", "/srv/data.bin", check=False)
    assert unreadable.returncode == 1 and "Permission denied" in unreadable.stderr


def test_put_and_get_refuse_what_is_no_file(store, pod):
    for args in (("put", "web", "relative/path"), ("get", "web", "/etc"), ("get", "web", "/nonexistent"),
                 ("put", "--root", "web", "/etc/")):
        proc = jetpack(store, *args, check=False)
        assert proc.returncode != 0 and "jetpack" in proc.stderr, args


def test_a_symlink_planted_in_the_pod_cannot_redirect_a_write_to_the_host(store, pod, tmp_path):
    outside = tmp_path / "host-only"
    outside.mkdir()
    rootfs = pod.record["apps"][0]["rootfs"]
    os.makedirs(os.path.join(rootfs, str(outside).lstrip("/")))   # the same path inside the pod
    os.symlink(str(outside), os.path.join(rootfs, "srv", "absolute"))
    os.symlink("../../../../../../../../../../.." + str(outside), os.path.join(rootfs, "srv", "climbing"))
    os.symlink(str(outside / "file"), os.path.join(rootfs, "srv", "file-link"))
    open(os.path.join(rootfs, str(outside / "file").lstrip("/")), "w").close()
    for path in ("/srv/absolute/a", "/srv/file-link"):  # followed, inside the pod
        proc = subprocess.run(jetpack_argv(store, "put", "--root", "web", path), input=b"pod data",
                              capture_output=True, env=core_env(), check=False, timeout=60)
        assert proc.returncode == 0, proc.stderr
    climbing = subprocess.run(jetpack_argv(store, "put", "--root", "web", "/srv/climbing/b"), input=b"pod data",
                              capture_output=True, env=core_env(), check=False, timeout=60)
    assert climbing.returncode == 1 and b"leads out of the rootfs" in climbing.stderr
    assert os.listdir(str(outside)) == []
    assert sorted(os.listdir(os.path.join(rootfs, str(outside).lstrip("/")))) == ["a", "file"]
    assert jetpack(store, "get", "--root", "web", "/srv/file-link").stdout == "pod data"


def test_list_json_describes_pods_for_an_inventory(store, pod):
    import json
    listing = json.loads(jetpack(store, "list", "--json").stdout)
    assert [p["name"] for p in listing] == ["web"]
    assert listing[0]["state"] == "running" and listing[0]["uuid"] == pod.uuid
    app = listing[0]["apps"][0]
    assert app["name"] == "main" and app["image_name"] == "example.com/busybox"
    assert app["image_labels"] == {"os": "linux"}


def jetpack_argv(store, *args):
    return [sys.executable, "-m", "jetpack.cli", "--store-root", store.root, "--store-mountpoint",
            store.config.mountpoint] + list(args)


def core_env():
    return dict(os.environ, PYTHONPATH=CORE)


def test_import_over_http_shows_progress(store, tmp_path):
    from tests.helpers.webserver import Site
    path, _tar = make_aci(str(tmp_path), manifest("example.com/progress", {"os": "linux"}), {"etc/motd": os.urandom(1 << 20).hex()})
    site = Site(tmp_path)
    try:
        site.add_file("/progress.aci", path)
        url = "http://127.0.0.1:%d/progress.aci" % site.port
        refused = jetpack(store, "import", url, "--progress", check=False)
        assert refused.returncode != 0 and "allow_http" in refused.stderr
        shown = jetpack(store, "import", url, "--allow-http", "--progress")
        assert "example.com/progress" in shown.stdout
        size = os.path.getsize(path)
        lines = shown.stderr.split()  # text mode reads each \r redraw as a line of its own
        assert shown.stderr.endswith(fetch.progress_text(url, size, size) + "\033[K\n") and "of" in lines
        quiet = jetpack(store, "import", url, "--allow-http")  # stderr is no terminal: no progress
        assert "(already present)" in quiet.stdout and quiet.stderr == ""
    finally:
        site.close()


def test_fetch_by_name_refuses_an_unsigned_image_unless_told(store, tmp_path):
    from tests.helpers.webserver import Site, discovery_page
    site = Site(tmp_path, port=80)  # discovery asks http://localhost/... (--allow-http)
    try:
        site.add("/tool?ac-discovery=1", discovery_page(
            ("ac-discovery", "localhost/tool http://localhost/{name}-{version}.{ext}")), content_type="text/html")
        path, _tar = make_aci(str(tmp_path), manifest("localhost/tool", {"version": "2"}), {"etc/motd": "tool\n"})
        site.add_file("/localhost/tool-2.aci", path)
        refused = jetpack(store, "fetch", "localhost/tool:2", "--allow-http", check=False)
        assert refused.returncode != 0 and "no key is trusted to sign localhost/tool" in refused.stderr
        assert images.list_images(store) == []
        fetched = jetpack(store, "fetch", "localhost/tool:2", "--allow-http", "--no-verify")
        assert "localhost/tool, signed by nobody" in fetched.stdout
        assert [i.name for i in images.list_images(store)] == ["localhost/tool"]
        again = jetpack(store, "fetch", "localhost/tool:2", "--allow-http")
        assert "(already present)" in again.stdout
    finally:
        site.close()
