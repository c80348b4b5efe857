#!/usr/bin/env python
"""Pod start latency, disk and host memory, in one run against the floor and podman.

Printed, never asserted:
- create+start of a one-app pod until its app has exec'd, against the floor (`zfs clone` of the
  image plus `unshare ... chroot <clone> /bin/true`) and `podman run --network none` of the same
  tree when podman is installed. Target: <= 2x the floor.
- disk per pod and host memory (PSS of each pod's supervisor and holder) for N pods of one image.
  Targets: <= 1 MiB of disk and <= 4 MiB PSS per running one-app pod.

The latency a network adds to a pod's start is network_bench.py's (in a network namespace of its own).

Usage (root, zfs-fuse running): .venv/bin/python benchmarks/pods_bench.py [--rounds N] [--pods N]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
__import__("conftest")  # makes the checkout importable as ansible_collections.jetpack.runtime
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines, images, pods  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.zfs import Zfs  # noqa: E402
from tests.helpers.images import make_aci, manifest  # noqa: E402
from benchmarks.scratch import drop_scratch_pool, scratch_pool  # noqa: E402
from tests.helpers.store import stop_zygote  # noqa: E402

UNSHARE = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net"]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pss_kib(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def used_bytes(zfs, dataset):
    return int(zfs.get(dataset, ["used"])["used"])


def floor_round(zfs, image, pool, work, n):
    clone = "%s/floor%d" % (pool, n)
    mountpoint = os.path.join(work, "floor%d" % n)

    def run():
        zfs.clone(image.dataset + "@seal", clone, {"mountpoint": mountpoint})
        subprocess.run(UNSHARE + ["chroot", mountpoint, "/bin/true"], check=True)
    seconds = timed(run)
    zfs.destroy(clone)
    return seconds


def podman_round(tree_tar):
    if not shutil.which("podman"):
        return None
    subprocess.run(["podman", "import", tree_tar, "jetpack-bench:latest"], check=True, capture_output=True)
    return timed(lambda: subprocess.run(["podman", "run", "--rm", "--network", "none", "jetpack-bench:latest",
                                         "/bin/true"], check=True, capture_output=True))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pods", type=int, default=50)
    args = parser.parse_args()
    zfs, engine = Zfs(), engines.for_host()
    pool, work = scratch_pool(zfs, "pods", 8 << 30)
    store = Store(StoreConfig(pool + "/jetpack", os.path.join(work, "store")), zfs)
    try:
        store.ensure()
        aci_path, tar = make_aci(work, manifest("bench.example/busybox", {"os": "linux"}), busybox=True)
        image = images.import_image(store, images.ImportRequest(source=aci_path))[0]
        spec = {"apps": [{"name": "a", "image": image.id, "exec": ["/bin/sleep", "3600"]}]}

        floors, starts, podmans = [], [], []
        for n in range(args.rounds):
            floors.append(floor_round(zfs, image, pool, work, n))

            def create_and_start(name="lat%d" % n):
                pod = pods.create(store, pods.reify(store, dict(spec, name=name), engine.name), engine)
                pods.start_supervised(store, pod)
            if n == 0:
                create_and_start("warmup")  # starts the zygote and installs the core, once per host
            starts.append(timed(create_and_start))
            podman = podman_round(tar)
            if podman is not None:
                podmans.append(podman)
        for pod in pods.list_pods(store):
            pods.destroy(pod, engine)

        floor, start = statistics.median(floors), statistics.median(starts)
        print("pod create+start to first exec: %.1f ms; floor (zfs clone + unshare chroot): %.1f ms; "
              "ratio %.2fx (target <= 2x)" % (start * 1000, floor * 1000, start / floor))
        if podmans:
            podman = statistics.median(podmans)
            print("podman run --network none: %.1f ms; jetpack/podman %.2fx" % (podman * 1000, start / podman))
        else:
            print("podman: not installed, no comparison")

        for n in range(args.pods):
            pod = pods.create(store, pods.reify(store, dict(spec, name="m%d" % n), engine.name), engine)
            pods.start_supervised(store, pod)
        running = pods.list_pods(store)
        disk = sum(used_bytes(zfs, ds) for pod in running for ds in pod.datasets()) / len(running)
        overhead = []
        for pod in running:
            context = pods.read_json(pod.run_file("context.json"))
            overhead.append(pss_kib(pod.supervisor_pid()) + pss_kib(context["holder_pid"]))
        print("%d pods of one image: disk %.0f KiB per pod (target <= 1024); host PSS of supervisor + holder "
              "%.0f KiB per pod (target <= 4096)" % (len(running), disk / 1024, statistics.mean(overhead)))
        for pod in running:
            pods.destroy(pod, engine)
    finally:
        stop_zygote(store.root)
        drop_scratch_pool(zfs, pool, work)


if __name__ == "__main__":
    main()
