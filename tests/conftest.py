"""Shared fixtures: a real ZFS pool for integration tests.

`zfs_pool` (session): a file-backed pool on zfs-fuse or OpenZFS, destroyed at the end.
`dataset` (function): a fresh, not yet created child dataset name under that pool.
Tests using either are marked `integration` automatically.
"""
import contextlib
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import JetpackError
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.zfs import Zfs

POOL_FILE_SIZE = 2 << 30  # sparse


@dataclass
class ZfsPool:
    name: str     # the pool, e.g. "jpt1a2b3c4d"; its root dataset has mountpoint=none
    zfs: Zfs      # a Zfs wrapper using the real zfs(8)/zpool(8)
    base: str     # an empty temporary directory for the mountpoints tests choose
    vdev: str     # the backing file


def unavailable(reason):
    """Skip on a developer's machine without ZFS; in CI a missing ZFS is a failure, not a skip."""
    if os.environ.get("CI"):
        pytest.fail("CI must run the integration tests: " + reason)
    pytest.skip(reason)


def _zpool_answers() -> bool:
    return subprocess.run(["zpool", "list"], capture_output=True, check=False).returncode == 0


def _ensure_zfs_daemon():
    """Start zfs-fuse when this host uses it and it is not running; skip if ZFS does not answer."""
    running = subprocess.run(["pgrep", "-x", "zfs-fuse"], capture_output=True, check=False).returncode == 0
    if not running and shutil.which("zfs-fuse"):
        subprocess.run(["zfs-fuse", "--pidfile", "/run/zfs-fuse.pid"], check=True)
    for _attempt in range(60):
        if _zpool_answers():
            return
        time.sleep(0.5)
    unavailable("`zpool list` does not answer: start zfs-fuse or load the OpenZFS module")


@pytest.fixture(scope="session")
def zfs_pool(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("zpool"):
        unavailable("needs root and zpool(8)")
    _ensure_zfs_daemon()
    zfs = Zfs()
    name = "jpt" + secrets.token_hex(4)
    vdev = str(tmp_path_factory.mktemp("zpool") / (name + ".img"))
    with open(vdev, "wb") as f:
        f.truncate(POOL_FILE_SIZE)
    try:
        zfs.pool_create(name, vdev)
        yield ZfsPool(name, zfs, str(tmp_path_factory.mktemp("mnt")), vdev)
    finally:
        try:
            if zfs.pool_exists(name):
                zfs.pool_destroy(name, force=True)
        finally:
            os.unlink(vdev)


@pytest.fixture
def dataset(zfs_pool):
    """A unique child dataset name under the test pool (not created); removed afterwards."""
    name = "%s/t%s" % (zfs_pool.name, secrets.token_hex(4))
    yield name
    with contextlib.suppress(JetpackError):
        if zfs_pool.zfs.exists(name):
            zfs_pool.zfs.destroy(name, recursive=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if "zfs_pool" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
