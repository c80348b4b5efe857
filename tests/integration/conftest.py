import os
import uuid

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig
from tests.helpers.store import stop_zygote


@pytest.fixture
def store(zfs_pool):
    """A fresh, initialised store on the test pool; destroyed afterwards."""
    key = "s" + uuid.uuid4().hex[:8]
    config = StoreConfig(root="%s/%s" % (zfs_pool.name, key), mountpoint=os.path.join(str(zfs_pool.base), key))
    store = Store(config, zfs_pool.zfs)
    store.ensure()
    yield store
    stop_zygote(config.root)
    zfs_pool.zfs.destroy(config.root, recursive=True)
