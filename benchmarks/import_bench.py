#!/usr/bin/env python
"""Image import time against its floor, in one run on the same filesystem.

The floor is what any importer must at least do: `sha512sum` of the archive (the ID) and then
`tar -x` of it onto a fresh ZFS dataset of the same pool. jetpack does both in one read of the
archive, so the target is an import taking at most 1.25x the floor. Printed, never asserted.

Usage (root, zfs-fuse running): python3 benchmarks/import_bench.py [--files N] [--rounds N]
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
__import__("conftest")  # makes the checkout importable as ansible_collections.jetpack.runtime
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import images  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig  # noqa: E402
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.zfs import Zfs  # noqa: E402
from tests.helpers.images import make_aci, manifest  # noqa: E402
from benchmarks.scratch import drop_scratch_pool, scratch_pool  # noqa: E402

WORDS = [b"jetpack", b"pod", b"image", b"zfs", b"jail", b"volume", b"network", b"\n", b" ", b"appc"]


def tree_files(count, seed=7):
    """A rootfs-like tree: many small files, a few large ones, half text, half binary."""
    rng = random.Random(seed)
    files = {}
    for i in range(count):
        size = int(min(4 << 20, rng.lognormvariate(8, 1.6)))
        if i % 2:
            data = rng.randbytes(size)
        else:
            data = b"".join(rng.choices(WORDS, k=size // 5))
        files["usr/share/d%02d/f%05d" % (i % 40, i)] = data
    return files


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compression", default="gzip", choices=["none", "gzip", "bzip2", "xz"])
    args = parser.parse_args()

    zfs = Zfs()
    pool, work = scratch_pool(zfs, "bench", 8 << 30)
    try:
        aci_path = make_aci(work, manifest("bench.example/tree"), tree_files(args.files), args.compression)[0]
        size = os.path.getsize(aci_path)
        floors, imports = [], []
        for n in range(args.rounds):
            target = "%s/tar%d" % (pool, n)
            mountpoint = os.path.join(work, "tar%d" % n)
            zfs.create(target, {"mountpoint": mountpoint})

            def floor():
                subprocess.run(["sha512sum", aci_path], check=True, stdout=subprocess.DEVNULL)
                subprocess.run(["tar", "-C", mountpoint, "-xf", aci_path], check=True)
            floors.append(timed(floor))
            zfs.destroy(target, recursive=True)

            store = Store(StoreConfig("%s/store%d" % (pool, n), os.path.join(work, "store%d" % n)), zfs)
            store.ensure()
            imports.append(timed(lambda: images.import_image(store, images.ImportRequest(source=aci_path))))
            zfs.destroy(store.root, recursive=True)
        floor_s, import_s = statistics.median(floors), statistics.median(imports)
        print("archive: %d files, %.1f MiB %s" % (args.files, size / 2**20, args.compression))
        print("floor  (sha512sum + tar -x): %.3f s (median of %d)" % (floor_s, args.rounds))
        print("import (jetpack_image core): %.3f s (median of %d)" % (import_s, args.rounds))
        print("ratio import/floor: %.2fx (target <= 1.25x)" % (import_s / floor_s))
    finally:
        drop_scratch_pool(zfs, pool, work)


if __name__ == "__main__":
    main()
