"""A throw-away file-backed ZFS pool for a benchmark run."""
import os
import shutil
import tempfile
import uuid


def scratch_pool(zfs, prefix, size):
    """(pool name, work directory): a new pool on a sparse file of `size` bytes in a new directory."""
    work = tempfile.mkdtemp(prefix="jetpack-%s-" % prefix)
    pool = "jp%s%s" % (prefix, uuid.uuid4().hex[:6])
    vdev = os.path.join(work, "pool.img")
    with open(vdev, "wb") as f:
        f.truncate(size)
    zfs.pool_create(pool, [vdev])
    return pool, work


def drop_scratch_pool(zfs, pool, work):
    zfs.pool_destroy(pool, force=True)
    shutil.rmtree(work, ignore_errors=True)
