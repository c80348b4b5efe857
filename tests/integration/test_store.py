"""The store's inventory: one zfs call, reused under the lock only while nobody else changed the store."""
import os
import subprocess

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import SEALED, Store
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.zfs import Zfs

pytestmark = pytest.mark.integration


def counting(store):
    """The same store through a Zfs whose reads are counted."""
    calls = []
    zfs = Zfs()
    real = zfs.run

    def run(argv):
        calls.append(argv[1])
        return real(argv)
    zfs.run = run
    return Store(store.config, zfs), calls


def test_a_read_before_the_lock_is_reused_when_nobody_wrote(store):
    with store.lock():  # a store that has seen a locked section has a change counter
        pass
    mine, calls = counting(store)
    mine.list_objects("images")
    with mine.lock():
        mine.list_objects("images")
        mine.ensure()
    assert calls == ["get"]


def test_a_read_before_the_lock_is_dropped_when_another_section_ran(store):
    mine, calls = counting(store)
    assert mine.list_objects("volumes") == {}
    with store.lock():  # another process's locked section, here another Store object
        store.zfs.create(store.dataset("volumes", "v1"), {"mountpoint": "none"})
    with mine.lock():
        assert list(mine.list_objects("volumes")) == [store.dataset("volumes", "v1")]
    assert calls == ["get", "get"]


def test_collecting_tmp_unmounts_what_a_killed_process_left_and_never_deletes_through_it(store, tmp_path):
    """A killed debootstrap leaves its target's /dev or /proc mounted in the store's tmp: garbage
    collection must unmount them, not delete the files they show."""
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "precious").write_text("keep me\n")
    target = os.path.join(store.tmp_dir(), "base-work", "rootfs", "dev")
    os.makedirs(target)
    subprocess.run(["mount", "--bind", str(host_dir), target], check=True)
    try:
        assert os.path.exists(os.path.join(target, "precious"))
        with store.lock():
            store.collect_garbage("images", SEALED)
        assert not os.path.ismount(target) and not os.path.exists(os.path.join(store.config.mountpoint, "tmp"))
        assert (host_dir / "precious").read_text() == "keep me\n"
    finally:
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", target], check=False)
