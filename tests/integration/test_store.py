"""The store's inventory: one zfs call, reused under the lock only while nobody else changed the store."""
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store
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
