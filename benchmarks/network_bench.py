#!/usr/bin/env python
"""The latency a network adds to a pod's create+start, against the same pod with `networks: [none]`,
and the host memory (PSS) of a networked pod's supervisor against a pod's without a network.

Printed, never asserted. Each round creates and starts one pod without a network and one on the
network `bench`, alternately (pods accumulate, as on a host that runs many). The first pod on the
network also makes its bridge and the nftables table: that one-off cost is printed apart. Target:
<= 30 ms added per pod once the network exists.

Everything runs in a network namespace of its own (as does the zygote this run starts, and so every
pod's supervisor), so the host's interfaces, ruleset and sysctls are never touched.

Usage (root, zfs-fuse running): .venv/bin/python benchmarks/network_bench.py [--rounds N] [--profile]
"""
import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
__import__("conftest")  # makes the checkout importable as ansible_collections.jetpack.runtime
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines, images, network, pods  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines.linux import CLONE_NEWNET, setns  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.zfs import Zfs  # noqa: E402
from benchmarks.pods_bench import pss_kib  # noqa: E402
from benchmarks.scratch import drop_scratch_pool, scratch_pool  # noqa: E402
from tests.helpers.images import make_aci, manifest  # noqa: E402
from tests.helpers.store import stop_zygote  # noqa: E402


def enter_own_network_namespace():
    """A fresh named network namespace with lo up, entered by this thread; its name."""
    name = "jpbench-" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    fd = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return name


def create_and_start(store, engine, spec):
    """(create seconds, start seconds) of one pod, the start until its app has exec'd."""
    began = time.perf_counter()
    pod = pods.create(store, pods.reify(store, spec, engine.name), engine)
    created = time.perf_counter()
    pods.start_supervised(store, pod)
    return created - began, time.perf_counter() - created


def report(label, samples):
    create = statistics.median(s[0] for s in samples) * 1000
    start = statistics.median(s[1] for s in samples) * 1000
    print("%-28s create %6.1f ms  start %6.1f ms  total %6.1f ms" % (label, create, start, create + start))
    return create + start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="cProfile the networked creates and starts")
    args = parser.parse_args()
    netns = enter_own_network_namespace()
    zfs, engine = Zfs(), engines.for_host()
    pool, work = scratch_pool(zfs, "net", 4 << 30)
    store = Store(StoreConfig(pool + "/jetpack", os.path.join(work, "store")), zfs)
    try:
        store.ensure()
        aci_path, _tar = make_aci(work, manifest("bench.example/busybox", {"os": "linux"}), busybox=True)
        image = images.import_image(store, images.ImportRequest(source=aci_path))[0]
        app = [{"name": "a", "image": image.id, "exec": ["/bin/sleep", "3600"]}]
        network.declare(store, network.normalize("bench", "10.234.0.0/24"))
        create_and_start(store, engine, {"name": "warmup", "apps": app, "networks": ["none"]})  # the zygote
        first = create_and_start(store, engine, {"name": "first", "apps": app, "networks": ["bench"]})
        profiler = None
        if args.profile:
            import cProfile
            profiler = cProfile.Profile()
        plain, networked = [], []
        for n in range(args.rounds):
            plain.append(create_and_start(store, engine, {"name": "p%d" % n, "apps": app, "networks": ["none"]}))
            if profiler:
                profiler.enable()
            networked.append(create_and_start(store, engine, {"name": "n%d" % n, "apps": app,
                                                              "networks": ["bench"]}))
            if profiler:
                profiler.disable()
        memory = {kind: statistics.mean(pss_kib(pod.supervisor_pid()) for pod in pods.list_pods(store)
                                        if bool(pod.record["networks"]) == networked)
                  for kind, networked in (("none", False), ("network", True))}
        for pod in pods.list_pods(store):
            pods.destroy(pod, engine)

        print("pod create+start, median of %d rounds (pods accumulate up to %d):" % (args.rounds, 2 * args.rounds + 2))
        without = report("networks: [none]", plain)
        with_net = report("networks: [bench]", networked)
        print("%-28s %6.1f ms (the bridge and the table made once)" % ("first pod on the network", sum(first) * 1000))
        print("a network adds %.1f ms (target <= 30 ms); ratio %.2fx" % (with_net - without, with_net / without))
        print("supervisor PSS: %.0f KiB without a network, %.0f KiB with one" % (memory["none"], memory["network"]))
        if profiler:
            import pstats
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    finally:
        stop_zygote(store.root)
        drop_scratch_pool(zfs, pool, work)
        subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    main()
