"""Pods end to end on the Linux engine over a real zfs-fuse store: prepare, run, replace, recover."""
import os
import signal
import subprocess
import sys
import time

import ansible_collections
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import pods, volumes
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InUse, InvalidInput, NotFound

pytestmark = pytest.mark.integration


def busybox_app(name, script, **extra):
    app = {"name": name, "image": "example.com/busybox", "exec": ["/bin/busybox", "sh", "-c", script]}
    app.update(extra)
    return app


def run_pod(store, engine, spec):
    pod = pods.create(store, pods.reify(store, spec, engine.name), engine)
    pods.start_supervised(store, pod)
    return pod


def wait_for_file(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            time.sleep(0.1)
            with open(path) as f:
                return f.read()
        time.sleep(0.05)
    raise AssertionError("%s never appeared" % path)


def volume_path(pod, name):
    return os.path.join(pod.record["pod_dir"], "volumes", name)


def pod_processes(pod):
    """Host PIDs of every process in the pod's PID namespace (the holder's, by its ns inode)."""
    context = pods.read_json(pod.run_file("context.json"))
    holder = context["holder_pid"]
    pidns = os.readlink("/proc/%d/ns/pid" % holder)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink("/proc/%s/ns/pid" % entry) == pidns:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def host_mounts_below(path):
    """Host mounts strictly below path (the dataset mounted at path itself is not counted)."""
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(path.rstrip("/") + "/")]


def test_a_pod_serves_http_from_a_read_only_host_volume(store, engine, busybox, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from the host\n")
    pod = run_pod(store, engine, {
        "name": "web",
        "apps": [
            busybox_app("httpd", "exec /bin/busybox httpd -f -p 8080 -h /www",
                        mounts=[{"volume": "site", "path": "/www", "read_only": True}]),
            busybox_app("client", "sleep 0.5; /bin/busybox wget -qO /out/got http://127.0.0.1:8080/index.html; "
                                  "/bin/busybox touch /www/x 2>/out/ro || true; /bin/busybox ps > /out/ps; sleep 600",
                        mounts=[{"volume": "out", "path": "/out"},
                                {"volume": "site", "path": "/www"}]),
        ],
        "volumes": [{"name": "site", "source": str(site), "read_only": True}, {"name": "out", "kind": "empty"}],
    })
    try:
        assert wait_for_file(os.path.join(volume_path(pod, "out"), "got")) == "hello from the host\n"
        assert "Read-only file system" in wait_for_file(os.path.join(volume_path(pod, "out"), "ro"))
        assert not (site / "x").exists()
        ps = wait_for_file(os.path.join(volume_path(pod, "out"), "ps"))
        assert "httpd" in ps and "pytest" not in ps  # the pod's processes only, not the host's
        assert pod.info()["state"] == "running"
    finally:
        pods.destroy(pod, engine)
    assert host_mounts_below(pod.record["pod_dir"]) == []
    assert store.list_objects("pods") == {} and not os.path.exists(pod.record["pod_dir"])


def test_a_replaced_pod_keeps_its_named_volume(store, engine, busybox):
    volume = volumes.create_volume(store, "keep", {}, None, None, "0777")
    spec = {"name": "writer", "volumes": [{"name": "data", "kind": "jetpack", "volume": "keep"}],
            "apps": [busybox_app("w", "echo first > /data/f; sleep 600", mounts=[{"volume": "data", "path": "/data"}])]}
    pod = run_pod(store, engine, spec)
    wait_for_file(os.path.join(volume.data, "f"))
    with pytest.raises(InUse) as used:
        volumes.remove_volume(store, volume)
    assert "writer" in str(used.value)
    pods.destroy(pod, engine)
    spec["apps"] = [busybox_app("r", "cat /data/f > /data/seen; sleep 600", mounts=[{"volume": "data", "path": "/data"}])]
    pod = run_pod(store, engine, spec)
    try:
        assert wait_for_file(os.path.join(volume.data, "seen")) == "first\n"
    finally:
        pods.destroy(pod, engine)
    volumes.remove_volume(store, volume)
    assert volumes.find_volume(store, "keep") is None


def test_a_crashing_app_is_restarted_per_policy(store, engine, busybox):
    pod = run_pod(store, engine, {
        "name": "crashy", "restart": "on-failure", "restart_retries": 2,
        "apps": [busybox_app("c", "echo run >> /out/runs; exit 3", mounts=[{"volume": "out", "path": "/out"}])],
        "volumes": [{"name": "out", "kind": "empty"}]})
    try:
        runs = os.path.join(volume_path(pod, "out"), "runs")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and pod.info()["apps"][0]["state"] not in ("failed", "exited"):
            time.sleep(0.2)
        app = pod.info()["apps"][0]
        assert app["exit_code"] == 3 and app["restarts"] == 2
        with open(runs) as f:
            assert f.read() == "run\n" * 3
    finally:
        pods.destroy(pod, engine)


def test_after_a_simulated_reboot_start_brings_the_pod_back(store, engine, busybox):
    spec = {"name": "phoenix", "apps": [busybox_app("a", "date >> /out/boots; sleep 600",
                                                    mounts=[{"volume": "out", "path": "/out"}])],
            "volumes": [{"name": "out", "kind": "empty"}]}
    pod = run_pod(store, engine, spec)
    try:
        boots = os.path.join(volume_path(pod, "out"), "boots")
        wait_for_file(boots)
        victims = pod_processes(pod) + [pod.supervisor_pid()]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pod.running():
            time.sleep(0.05)
        assert not pod.running()
        assert pods.start_supervised(store, pods.find_pod(store, "phoenix"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(boots) as f:
                if len(f.readlines()) == 2:
                    break
            time.sleep(0.1)
        with open(boots) as f:
            assert len(f.readlines()) == 2
    finally:
        pods.destroy(pods.find_pod(store, "phoenix"), engine)


def test_kill_9_in_the_middle_of_a_create_is_collected_by_the_next_run(store, engine, busybox):
    collections = os.path.dirname(list(ansible_collections.__path__)[0])
    script = ("import sys, time; sys.path.insert(0, %r)\n"
              "from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines, pods, store\n"
              "s = store.Store(store.StoreConfig(%r, %r))\n"
              "e = engines.for_host()\n"
              "real_prepare = e.prepare\n"
              "def slow_prepare(record):\n"
              "    print('preparing', flush=True); time.sleep(600)\n"
              "e.prepare = slow_prepare\n"
              "pods.create(s, pods.reify(s, %r, e.name), e)\n"
              % (collections, store.root, store.config.mountpoint,
                 {"name": "doomed", "apps": [busybox_app("a", "sleep 600")]}))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "preparing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    half_made = store.list_objects("pods")
    assert half_made and pods.list_pods(store) == [], "the create was killed too early: the test proves nothing"
    pod = run_pod(store, engine, {"name": "doomed", "apps": [busybox_app("a", "sleep 600")]})
    try:
        assert sorted(store.list_objects("pods")) == pod.datasets() == [pod.record["apps"][0]["dataset"]]
        assert sorted(os.listdir(store.path("pods"))) == [pod.key]
    finally:
        pods.destroy(pod, engine)
    assert store.list_objects("pods") == {} and host_mounts_below(store.path("pods")) == []


def test_bad_specs_are_refused_with_nothing_made(store, engine, busybox, tmp_path):
    cases = [
        ({"name": "x", "apps": [busybox_app("a", "true", mounts=[{"volume": "nope", "path": "/d"}])]},
         InvalidInput, "nope"),
        ({"name": "x", "apps": [{"name": "a", "image": "example.com/missing"}]}, NotFound, "import it first"),
        ({"name": "x", "apps": [busybox_app("a", "true")], "volumes": [{"name": "h", "source": "/no/such/dir"}]},
         NotFound, "does not exist"),
        ({"name": "x", "apps": [busybox_app("a", "true"), busybox_app("a", "true")]}, InvalidInput, "unique"),
        ({"name": "x", "apps": [busybox_app("a", "true", mounts=[{"volume": "v", "path": "/d"},
                                                                 {"volume": "v", "path": "/d/e"}])],
          "volumes": [{"name": "v"}]}, InvalidInput, "overlapping"),
    ]
    os.symlink(str(tmp_path), str(tmp_path / "link"))
    cases.append(({"name": "x", "apps": [busybox_app("a", "true")],
                   "volumes": [{"name": "h", "source": str(tmp_path / "link")}]}, InvalidInput, "symlink"))
    for spec, error, words in cases:
        with pytest.raises(error) as refused:
            pods.reify(store, spec, engine.name)
        assert words in str(refused.value)
    assert store.list_objects("pods") == {}


def test_two_apps_share_an_empty_volume_and_handlers_run_in_order(store, engine, busybox):
    mounts = [{"volume": "shared", "path": "/shared"}]
    pod = run_pod(store, engine, {
        "name": "pair", "stop_timeout": 2,
        "apps": [
            busybox_app("writer", "echo $$ > /shared/writer.pid; echo started >> /shared/order; exec sleep 600",
                        mounts=mounts, pre_start=["/bin/sh", "-c", "echo pre-start >> /shared/order"],
                        post_stop=["/bin/sh", "-c", "echo post-stop >> /shared/order"]),
            busybox_app("reader", "sleep 0.5; kill -0 $(cat /shared/writer.pid) && echo seen > /shared/seen; "
                                  "exec sleep 600", mounts=mounts),
        ],
        "volumes": [{"name": "shared", "kind": "empty", "mode": "1777"}]})
    shared = volume_path(pod, "shared")
    try:
        assert wait_for_file(os.path.join(shared, "seen")) == "seen\n"
        assert oct(os.stat(shared).st_mode & 0o7777) == "0o1777"
    finally:
        pods.stop(pod, engine)
        with open(os.path.join(shared, "order")) as f:
            order = f.read().split()
        pods.destroy(pod, engine)
    assert order == ["pre-start", "started", "post-stop"]
