#!/usr/bin/env python
"""What a no-op re-run of a jetpack_image task costs, against an ansible.builtin.command round trip.

Three playbooks run against localhost in the same run: one with a single debug task (start-up
cost), one with N `command: /bin/true` tasks, one with N `jetpack_image` tasks whose image is
already present. The ratio of their per-task costs is printed (target <= 1.15x). Never asserted.

Usage (root, zfs-fuse running, from the test virtualenv):
    .venv/bin/python benchmarks/noop_bench.py [--tasks N] [--rounds N]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
import conftest  # noqa: E402  (links the checkout as ansible_collections.jetpack.runtime)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import images  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.zfs import Zfs  # noqa: E402
from tests.helpers.images import make_aci, manifest  # noqa: E402
from benchmarks.scratch import drop_scratch_pool, scratch_pool  # noqa: E402


def playbook(path, tasks):
    with open(path, "w") as f:
        json.dump([{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}], f)


def run(path, extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=conftest.COLLECTIONS, ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    start = time.perf_counter()
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                    path, "-e", json.dumps(extra)], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    zfs = Zfs()
    pool, work = scratch_pool(zfs, "noop", 2 << 30)
    try:
        store = Store(StoreConfig(pool + "/jetpack", os.path.join(work, "store")), zfs)
        store.ensure()
        aci_path = make_aci(work, manifest("bench.example/busybox", {"version": "1"}), busybox=True)[0]
        images.import_image(store, images.ImportRequest(source=aci_path))
        extra = {"store_root": store.root, "store_mountpoint": store.config.mountpoint, "aci": aci_path}
        image_task = {"jetpack.runtime.jetpack_image": {
            "name": "bench.example/busybox", "labels": {"version": "1"}, "source": "{{ aci }}",
            "store_root": "{{ store_root }}", "store_mountpoint": "{{ store_mountpoint }}"}}
        books = {
            "startup": [{"ansible.builtin.debug": {"msg": "start"}}],
            "command": [{"ansible.builtin.command": {"argv": ["/bin/true"]}, "changed_when": False}] * args.tasks,
            "jetpack_image": [image_task] * args.tasks,
        }
        times = {name: [] for name in books}
        for name, tasks in books.items():
            playbook(os.path.join(work, name + ".json"), tasks)
        for _round in range(args.rounds):
            for name in books:
                times[name].append(run(os.path.join(work, name + ".json"), extra))
        startup = statistics.median(times["startup"])
        per_command = (statistics.median(times["command"]) - startup) / args.tasks
        per_image = (statistics.median(times["jetpack_image"]) - startup) / args.tasks
        print("per task, %d tasks, median of %d rounds:" % (args.tasks, args.rounds))
        print("  ansible.builtin.command /bin/true: %.1f ms" % (per_command * 1000))
        print("  jetpack_image (no-op re-run):      %.1f ms" % (per_image * 1000))
        print("ratio jetpack_image/command: %.2fx (target <= 1.15x)" % (per_image / per_command))
    finally:
        drop_scratch_pool(zfs, pool, work)


if __name__ == "__main__":
    main()
