"""Isolators and limits of real pods on the Linux engine (issue 7): pods.reify, pods.create and
pods.start_supervised, then what the kernel did, read from the pod's cgroup counters and from the
apps' own /proc/self/status. No timing is asserted: a wait only bounds how long an event may take.
"""
import os
import subprocess
import sys
import time
import uuid

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import (
    capabilities, cgroups, images, pods)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput, NotFound
from tests.helpers.images import make_aci, manifest
from tests.integration.test_cli import CORE
from tests.integration.conftest import GROUP, PASSWD
from tests.integration.test_pods import busybox_app, volume_path

pytestmark = pytest.mark.integration

OUT = {"volume": "out", "path": "/out"}
OUT_VOLUME = [{"name": "out", "kind": "empty", "mode": "1777"}]
IDLE = busybox_app("idle", "sleep 600")  # keeps the pod (and its cgroup) up while another app ends


def remove_set(*names):
    return {"name": "os/linux/capabilities-remove-set", "value": {"set": list(names)}}


@pytest.fixture
def made(store, engine):
    """make(spec, start=True) -> a pod of the store; every pod made is destroyed afterwards."""
    created = []

    def make(spec, start=True):
        pod = pods.create(store, pods.reify(store, spec, engine.name), engine)
        created.append(pod)
        if start:
            pods.start_supervised(store, pod)
        return pod
    yield make
    for pod in created:
        pods.destroy(pod, engine)


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("%s never happened" % what)


def app_status(pod, name):
    return next(app for app in pod.info()["apps"] if app["name"] == name)


def ended(pod, name):
    app = app_status(pod, name)
    return app if app["state"] in ("exited", "failed") else None


def read_out(pod, name):
    path = os.path.join(volume_path(pod, "out"), name)
    wait_for(lambda: os.path.exists(path + ".done"), "%s written" % name)
    with open(path) as f:
        return f.read()


def writes(command, name):
    """A shell line writing command's output to /out/<name>, then /out/<name>.done."""
    return "%s > /out/%s 2>&1; echo $? >> /out/%s; touch /out/%s.done" % (command, name, name, name)


def cgroup_of(pod):
    return cgroups.PodCgroup(pod.key)


# --- resource limits -----------------------------------------------------------------------------------
def test_memory_limit_kills_an_app_allocating_past_it(made, busybox):
    pod = made({"name": "hog", "limits": {"memory": "32Mi"}, "apps": [
        busybox_app("hog", "dd if=/dev/zero of=/dev/null bs=100M count=1"), IDLE]})
    assert pod.record["isolators_report"]["pod"] == {"enforced": ["resource/memory"], "unenforceable": []}
    app = wait_for(lambda: ended(pod, "hog"), "the hog's end")
    assert app["state"] == "failed" and app["signal"] == "SIGKILL"
    # v1 counts an OOM kill in the victim's own cgroup, v2 in every ancestor too: the app's leaf has it.
    assert cgroup_of(pod).stats("app-hog")["memory"]["oom_kills"] >= 1
    assert app_status(pod, "idle")["state"] == "running"


def test_the_same_allocation_succeeds_without_a_limit(made, busybox):
    pod = made({"name": "nohog", "apps": [busybox_app("hog", "dd if=/dev/zero of=/dev/null bs=100M count=1"), IDLE]})
    app = wait_for(lambda: ended(pod, "hog"), "the dd's end")
    assert app["state"] == "exited" and app["exit_code"] == 0
    assert not cgroup_of(pod).exists()  # a pod without limits gets no cgroup


def test_an_app_memory_isolator_limits_that_app_alone(made, busybox):
    own = {"name": "resource/memory", "value": {"limit": "32Mi"}}
    pod = made({"name": "apphog", "limits": {"memory": "512Mi"}, "apps": [
        busybox_app("hog", "dd if=/dev/zero of=/dev/null bs=100M count=1", isolators=[own]), IDLE]})
    app = wait_for(lambda: ended(pod, "hog"), "the hog's end")
    assert app["signal"] == "SIGKILL"
    assert cgroup_of(pod).stats("app-hog")["memory"]["oom_kills"] >= 1
    assert pod.record["isolators_report"]["apps"]["hog"] == {"enforced": ["resource/memory"], "unenforceable": []}


def test_cpu_limit_throttles_the_pod(made, busybox):
    pod = made({"name": "burn", "limits": {"cpu": "100m"}, "apps": [busybox_app("burn", "while :; do :; done")]})
    cgroup = cgroup_of(pod)
    wait_for(lambda: cgroup.stats()["cpu"]["nr_throttled"] > 0, "throttling of the pod's cgroup")
    assert cgroup.stats()["cpu"]["throttled_usec"] > 0
    with open(os.path.join(cgroup.directory("cpu"), "cpu.cfs_quota_us" if cgroup.layout.version == 1
                           else "cpu.max")) as f:
        assert f.read().split()[0] == "10000"  # 100m of a 100 ms period


def test_open_files_limit_is_the_apps_rlimit(made, busybox):
    pod = made({"name": "nofile", "limits": {"open_files": 64}, "volumes": OUT_VOLUME,
                "apps": [busybox_app("a", writes("ulimit -n", "nofile"), mounts=[OUT])]})
    assert read_out(pod, "nofile") == "64\n0\n"


def test_a_stopped_pod_leaves_no_cgroup(made, store, engine, busybox):
    pod = made({"name": "gone", "limits": {"memory": "64Mi", "processes": 50}, "apps": [IDLE]})
    cgroup = cgroup_of(pod)
    wait_for(cgroup.pids, "the app in the pod's cgroup")
    with open(os.path.join(cgroup.directory("pids"), "pids.max")) as f:
        assert f.read().strip() == "50"
    assert pods.stop(pod, engine)
    assert not cgroup.exists()


def test_gc_removes_the_cgroup_a_crash_left_to_a_pod_of_the_store(made, store, busybox):
    pod = made({"name": "left", "limits": {"memory": "64Mi"}, "apps": [IDLE]}, start=False)
    stale = cgroup_of(pod)
    stale.create({"memory": {"request": 1 << 26, "limit": 1 << 26}})  # as a crashed supervisor leaves it
    foreign = cgroups.PodCgroup(uuid.uuid4().hex)  # another store's pod: not this store's to remove
    foreign.create({})
    try:
        with store.lock():
            pods.collect_garbage(store)
        assert not stale.exists() and foreign.exists()
    finally:
        foreign.remove()


# --- capabilities --------------------------------------------------------------------------------------
def status_of(pod, name):
    return capabilities.parse_status(read_out(pod, name))


def test_dropped_capabilities_are_gone_from_the_app(made, busybox):
    pod = made({"name": "dropped", "volumes": OUT_VOLUME, "apps": [
        busybox_app("narrow", writes("cat /proc/self/status", "status") + "; " + writes("chown 5 /tmp", "chown"),
                    mounts=[OUT], isolators=[remove_set("CAP_NET_RAW", "CAP_CHOWN"),
                                             {"name": "os/linux/no-new-privileges", "value": True}])]})
    status = status_of(pod, "status")
    expected = capabilities.DEFAULT_SET - {"CAP_NET_RAW", "CAP_CHOWN"}
    assert status["CapBnd"] == status["CapEff"] == expected
    assert "CAP_SYS_ADMIN" not in status["CapEff"] and status["NoNewPrivs"] is True
    assert "Operation not permitted" in read_out(pod, "chown")  # root, but without CAP_CHOWN


def test_without_isolators_an_app_has_appcs_default_set(made, busybox):
    pod = made({"name": "defaults", "volumes": OUT_VOLUME,
                "apps": [busybox_app("a", writes("cat /proc/self/status", "status"), mounts=[OUT])]})
    status = status_of(pod, "status")
    assert status["CapBnd"] == status["CapEff"] == capabilities.DEFAULT_SET and status["NoNewPrivs"] is False


def test_a_non_root_app_keeps_only_its_retain_set(made, busybox):
    retain = {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE"]}}
    pod = made({"name": "www", "volumes": OUT_VOLUME, "apps": [
        busybox_app("a", writes("cat /proc/self/status", "status"), mounts=[OUT], user="www", isolators=[retain])]})
    status = status_of(pod, "status")
    assert status["CapBnd"] == status["CapAmb"] == status["CapEff"] == {"CAP_NET_BIND_SERVICE"}


def jetpack_exec(store, *args):
    """`jetpack exec` on the host, as the connection plugin runs it; its stdout."""
    proc = subprocess.run([sys.executable, "-m", "jetpack.cli", "--store-root", store.root, "--store-mountpoint",
                           store.config.mountpoint, "exec"] + list(args), env=dict(os.environ, PYTHONPATH=CORE),
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_jetpack_exec_gets_the_apps_bounding_set_and_cgroup_too(made, store, busybox):
    """`jetpack exec` (hence the connection plugin), as root or as the app's user, is held as the app is."""
    pod = made({"name": "execd", "limits": {"memory": "64Mi"},
                "apps": [busybox_app("a", "sleep 600", user="www", isolators=[remove_set("CAP_KILL")])]})
    wait_for(lambda: app_status(pod, "a")["state"] == "running", "the app running")
    as_root = capabilities.parse_status(jetpack_exec(store, "--root", "execd", "--", "/bin/busybox", "cat",
                                                     "/proc/self/status"))
    assert as_root["CapBnd"] == as_root["CapEff"] == capabilities.DEFAULT_SET - {"CAP_KILL"}
    as_user = capabilities.parse_status(jetpack_exec(store, "execd", "--", "/bin/busybox", "cat", "/proc/self/status"))
    assert as_user["CapBnd"] == capabilities.DEFAULT_SET - {"CAP_KILL"} and as_user["CapEff"] == frozenset()
    memory = ":memory:" if cgroup_of(pod).layout.version == 1 else "0::"  # a v1 host may mount cgroup2 too
    lines = jetpack_exec(store, "execd", "--", "/bin/busybox", "cat", "/proc/self/cgroup").split()
    assert [line.split(":", 2)[2] for line in lines if memory in line] == ["/jetpack/%s/app-a" % pod.key]


def test_with_the_default_set_even_root_in_an_app_cannot_look_into_the_holder(made, busybox):
    """The holder (PID 1) keeps every capability; without CAP_SYS_PTRACE an app cannot reach its root."""
    pod = made({"name": "peek", "volumes": OUT_VOLUME,
                "apps": [busybox_app("a", writes("ls /proc/1/root/", "peek"), mounts=[OUT])]})
    out = read_out(pod, "peek")
    assert "Permission denied" in out and not out.endswith("\n0\n")


# --- what the host cannot enforce ----------------------------------------------------------------------
SYSCTL = {"name": "os/unix/sysctl", "value": {"net.ipv4.ip_forward": "1"}}
OOM = {"name": "os/linux/oom-score-adj", "value": 100}


def test_unenforceable_isolators_are_reported(store, engine, busybox):
    record = pods.reify(store, {"name": "rep", "isolators": [SYSCTL], "limits": {"memory": "64M"},
                                "apps": [busybox_app("a", "true", isolators=[OOM])]}, engine.name)
    assert record["isolators_report"] == {
        "pod": {"enforced": ["resource/memory"], "unenforceable": ["os/unix/sysctl"]},
        "apps": {"a": {"enforced": [], "unenforceable": ["os/linux/oom-score-adj"]}}}


def test_strict_refuses_them_and_makes_nothing(store, engine, busybox):
    spec = {"name": "strict", "strict": True, "isolators": [SYSCTL],
            "apps": [busybox_app("a", "true", isolators=[OOM])]}
    with pytest.raises(InvalidInput, match=r"os/unix/sysctl \(pod\); os/linux/oom-score-adj \(app a\)"):
        pods.reify(store, spec, engine.name)
    assert pods.list_pods(store) == [] and pods.reify(store, dict(spec, strict=False), engine.name)


def test_limits_and_the_same_isolator_together_are_refused(store, engine, busybox):
    with pytest.raises(InvalidInput, match="resource/memory given both"):
        pods.reify(store, {"name": "twice", "limits": {"memory": "64M"},
                           "isolators": [{"name": "resource/memory", "value": {"limit": "32M"}}],
                           "apps": [busybox_app("a", "true")]}, engine.name)


def test_isolators_are_in_the_pod_manifest_and_a_change_replaces_the_pod(store, engine, busybox):
    spec = {"name": "mani", "limits": {"cpu": "500m"},
            "apps": [busybox_app("a", "true", isolators=[remove_set("CAP_KILL")])]}
    record = pods.reify(store, spec, engine.name)
    manifest_ = pods.pod_manifest(dict(record, uuid="x"))
    assert manifest_["isolators"] == [{"name": "resource/cpu", "value": {"request": "500m", "limit": "500m"}}]
    assert {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_KILL"]}} in \
        manifest_["apps"][0]["app"]["isolators"]
    assert pods.spec_differences(record, pods.reify(store, spec, engine.name)) == []
    assert pods.spec_differences(record, pods.reify(store, dict(spec, limits={"cpu": "1"}), engine.name)) == [
        "apps", "isolators"]
    assert pods.spec_differences(record, pods.reify(store, dict(spec, strict=True), engine.name)) == []


# --- the app's filesystem ----------------------------------------------------------------------------
def test_read_only_rootfs_refuses_writes(made, busybox):
    pod = made({"name": "ro", "volumes": OUT_VOLUME, "apps": [
        busybox_app("a", writes("touch /tmp/x", "touch"), mounts=[OUT], read_only_rootfs=True)]})
    out = read_out(pod, "touch")
    assert "Read-only file system" in out and not out.endswith("\n0\n")
    assert pods.pod_manifest(pod.record)["apps"][0]["readOnlyRootFS"] is True


def test_a_missing_working_directory_is_refused_at_creation(store, engine, busybox):
    record = pods.reify(store, {"name": "nowd", "apps": [busybox_app("a", "true", working_directory="/nope")]},
                        engine.name)
    with pytest.raises(InvalidInput, match="working directory /nope is not a directory in image"):
        pods.create(store, record, engine)
    assert pods.list_pods(store) == [] and not store.list_objects("pods")


def test_a_working_directory_inside_a_volume_is_the_volumes_business(made, busybox):
    pod = made({"name": "wdvol", "volumes": OUT_VOLUME,
                "apps": [busybox_app("a", writes("pwd", "pwd"), mounts=[OUT], working_directory="/out")]})
    assert read_out(pod, "pwd") == "/out\n0\n"


def test_volume_rules(store, engine, busybox, tmp_path):
    def reify(volumes, mounts):
        return pods.reify(store, {"name": "vols", "volumes": volumes,
                                  "apps": [busybox_app("a", "true", mounts=mounts)]}, engine.name)
    with pytest.raises(NotFound, match="does not exist; create it first"):
        reify([{"name": "h", "source": str(tmp_path / "missing")}], [{"volume": "h", "path": "/h"}])
    with pytest.raises(InvalidInput, match="overlapping paths"):
        reify([{"name": "a"}, {"name": "b"}], [{"volume": "a", "path": "/data"}, {"volume": "b", "path": "/data/b"}])
    with pytest.raises(InvalidInput, match="not /"):
        reify([{"name": "a"}], [{"volume": "a", "path": "/"}])
    with pytest.raises(InvalidInput, match="which volumes does not declare"):
        reify([], [{"volume": "a", "path": "/a"}])


# --- appc port names -------------------------------------------------------------------------------------
@pytest.fixture
def server_image(store, tmp_path):
    ports = [{"name": "http", "protocol": "tcp", "port": 8080}, {"name": "dns", "protocol": "udp", "port": 5353}]
    image_manifest = manifest("example.com/server", {"version": "1", "os": "linux"},
                              app={"exec": ["/bin/busybox", "sleep", "600"], "user": "0", "group": "0",
                                   "ports": ports})
    path = make_aci(str(tmp_path), image_manifest, {"etc/passwd": PASSWD, "etc/group": GROUP}, busybox=True)[0]
    return images.import_image(store, images.ImportRequest(source=path))[0]


def test_a_pod_port_naming_an_image_port_takes_its_number_and_protocol(store, engine, server_image):
    def reify(ports):
        return pods.reify(store, {"name": "srv", "networks": ["default"], "ports": ports,
                                  "apps": [{"name": "s", "image": "example.com/server"}]}, engine.name)
    record = reify([{"name": "http", "hostPort": 18080}, {"name": "dns", "host_port": 15353, "host_ip": "127.0.0.1"}])
    assert record["ports"] == [
        {"name": "http", "protocol": "tcp", "host_port": 18080, "pod_port": 8080, "host_ip": None},
        {"name": "dns", "protocol": "udp", "host_port": 15353, "pod_port": 5353, "host_ip": "127.0.0.1"}]
    assert pods.pod_manifest(dict(record, uuid="x"))["ports"] == [
        {"name": "http", "hostPort": 18080}, {"name": "dns", "hostPort": 15353, "hostIP": "127.0.0.1"}]
    with pytest.raises(InvalidInput, match="no app's image declares a port named web .they declare: dns, http"):
        reify([{"name": "web", "host_port": 18080}])
    with pytest.raises(InvalidInput, match="port http is 8080/tcp in the image"):
        reify([{"name": "http", "host_port": 18080, "protocol": "udp"}])
