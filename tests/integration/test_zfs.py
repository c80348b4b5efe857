"""zfs.py against a real pool (zfs-fuse on the project's Debian machines)."""
import os
import subprocess

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    AlreadyExists, InUse, NotFound)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.zfs import Capabilities, Zfs

pytestmark = pytest.mark.integration


def on_zfs_fuse():
    return subprocess.run(["pgrep", "-x", "zfs-fuse"], capture_output=True, check=False).returncode == 0


def test_capabilities_of_zfs_fuse(zfs_pool):
    if not on_zfs_fuse():
        pytest.skip("expectations are for zfs-fuse")
    calls = []

    def run(argv):
        calls.append(argv)
        return zfs_pool.zfs.run(argv)

    zfs = Zfs(run=run)
    assert zfs.caps == Capabilities(parsable_list=False, multi_set=False, create_nomount=False,
                                    diff=False, rename_mounted=False)
    assert zfs.caps is zfs.caps and len(calls) == 5  # probed once
    assert not any(zfs_pool.name in " ".join(c) for c in calls)


def test_create_get_set_inherit(zfs_pool, dataset):
    zfs = zfs_pool.zfs
    assert not zfs.exists(dataset)
    zfs.create(dataset, {"jetpack:kind": "image", "atime": "off"})
    assert zfs.exists(dataset)
    got = zfs.get(dataset, ["jetpack:kind", "atime", "jetpack:unset", "origin", "used", "type"])
    assert got["jetpack:kind"] == "image" and got["atime"] == "off"
    assert got["jetpack:unset"] == "-" and got["origin"] == "-" and got["type"] == "filesystem"
    assert got["used"].isdigit()  # -p: exact bytes
    zfs.set(dataset, {"jetpack:state": "sealed", "jetpack:id": "sha512-" + "0" * 128, "readonly": "on"})
    got = zfs.get(dataset, ["jetpack:state", "jetpack:id", "readonly"])
    assert got == {"jetpack:state": "sealed", "jetpack:id": "sha512-" + "0" * 128, "readonly": "on"}
    zfs.inherit(dataset, "jetpack:state")
    assert zfs.get(dataset, "jetpack:state") == {"jetpack:state": "-"}


def test_get_tree(zfs_pool, dataset):
    zfs = zfs_pool.zfs
    zfs.create(dataset + "/a/deep", parents=True)
    zfs.create(dataset + "/b", {"jetpack:kind": "x"})
    zfs.create(dataset + "/b/c")
    zfs.snapshot(dataset + "@s")
    tree = zfs.get_tree(dataset, ["jetpack:kind", "used"])
    assert sorted(tree) == [dataset, dataset + "/a", dataset + "/b"]
    assert tree[dataset + "/b"]["jetpack:kind"] == "x" and tree[dataset]["jetpack:kind"] == "-"
    assert all(values["used"].isdigit() for values in tree.values())
    everything = zfs.get_tree(dataset, ["jetpack:kind"], depth=None, types="all")
    assert sorted(everything) == sorted([dataset, dataset + "@s", dataset + "/a",
                                         dataset + "/a/deep", dataset + "/b", dataset + "/b/c"])
    assert everything[dataset + "/b/c"]["jetpack:kind"] == "x"  # user properties are inherited
    assert list(zfs.get_tree(dataset, "type", types="snapshot")) == [dataset + "@s"]
    with pytest.raises(NotFound):
        zfs.get_tree(dataset + "/missing", ["type"])


def test_snapshot_clone_origin_and_destroy_refusals(zfs_pool, dataset):
    zfs = zfs_pool.zfs
    zfs.create(dataset + "/image", parents=True)
    zfs.snapshot(dataset + "/image@sealed")
    with pytest.raises(AlreadyExists):
        zfs.snapshot(dataset + "/image@sealed")
    zfs.clone(dataset + "/image@sealed", dataset + "/pod", {"jetpack:kind": "pod"})
    assert zfs.get(dataset + "/pod", ["origin", "jetpack:kind"]) == {
        "origin": dataset + "/image@sealed", "jetpack:kind": "pod"}

    with pytest.raises(InUse) as info:  # the snapshot is a child
        zfs.destroy(dataset + "/image")
    assert info.value.users == [dataset + "/image@sealed"]
    with pytest.raises(InUse) as info:  # -r would need -R for the clone: refused, clone named
        zfs.destroy(dataset + "/image", recursive=True)
    assert info.value.users == [dataset + "/pod"]
    assert dataset + "/pod" in str(info.value)
    with pytest.raises(InUse) as info:
        zfs.destroy(dataset + "/image@sealed")
    assert info.value.users == [dataset + "/pod"]
    assert zfs.exists(dataset + "/image@sealed") and zfs.exists(dataset + "/pod")

    zfs.destroy(dataset + "/pod")
    zfs.destroy(dataset + "/image", recursive=True)
    assert not zfs.exists(dataset + "/image@sealed") and not zfs.exists(dataset + "/image")


def test_rename_a_mounted_dataset(zfs_pool, dataset):
    zfs = zfs_pool.zfs
    mountpoint = os.path.join(zfs_pool.base, os.path.basename(dataset))
    zfs.create(dataset + "/a", {"mountpoint": mountpoint}, parents=True)
    zfs.create(dataset + "/a/child")
    zfs.snapshot(dataset + "/a@s")
    with open(os.path.join(mountpoint, "child", "file"), "w") as f:
        f.write("kept")
    assert zfs.get(dataset + "/a/child", "mounted") == {"mounted": "yes"}

    zfs.rename(dataset + "/a", dataset + "/b")

    assert not zfs.exists(dataset + "/a") and zfs.exists(dataset + "/b@s")
    tree = zfs.get_tree(dataset + "/b", ["mounted", "mountpoint"], depth=None)
    assert tree == {dataset + "/b": {"mounted": "yes", "mountpoint": mountpoint},
                    dataset + "/b/child": {"mounted": "yes",
                                           "mountpoint": os.path.join(mountpoint, "child")}}
    with open(os.path.join(mountpoint, "child", "file")) as f:
        assert f.read() == "kept"
    zfs.rename(dataset + "/b@s", dataset + "/b@t")  # snapshots rename in place
    assert zfs.exists(dataset + "/b@t")


def test_mount_unmount_idempotent(zfs_pool, dataset):
    zfs = zfs_pool.zfs
    zfs.create(dataset, {"mountpoint": os.path.join(zfs_pool.base, "m" + dataset[-8:])})
    zfs.mount(dataset)
    zfs.unmount(dataset)
    zfs.unmount(dataset)
    assert zfs.get(dataset, "mounted") == {"mounted": "no"}
    zfs.mount(dataset)
    assert zfs.get(dataset, "mounted") == {"mounted": "yes"}


def test_not_found_and_already_exists(zfs_pool, dataset):
    zfs = zfs_pool.zfs
    for call in (lambda: zfs.get(dataset, "type"), lambda: zfs.destroy(dataset),
                 lambda: zfs.set(dataset, {"jetpack:x": "1"}), lambda: zfs.rename(dataset, dataset + "x"),
                 lambda: zfs.clone(dataset + "@nope", dataset + "c"), lambda: zfs.snapshot(dataset + "@s")):
        with pytest.raises(NotFound) as info:
            call()
        assert dataset in str(info.value) and info.value.rc == 1
    zfs.create(dataset)
    with pytest.raises(AlreadyExists) as info:
        zfs.create(dataset)
    assert info.value.argv[-1] == dataset
    assert zfs_pool.zfs.pool_exists(zfs_pool.name)
    assert not zfs_pool.zfs.pool_exists(zfs_pool.name + "nope")
