"""Fixtures of the playbook tests."""
import os
import uuid

import pytest

from tests.helpers.store import stop_zygote


@pytest.fixture
def store_vars(zfs_pool):
    """store_root and store_mountpoint of a store a playbook creates on the test pool; destroyed afterwards."""
    key = "a" + uuid.uuid4().hex[:8]
    root = "%s/%s" % (zfs_pool.name, key)
    yield {"store_root": root, "store_mountpoint": os.path.join(str(zfs_pool.base), key)}
    stop_zygote(root)
    if zfs_pool.zfs.exists(root):
        zfs_pool.zfs.destroy(root, recursive=True)
