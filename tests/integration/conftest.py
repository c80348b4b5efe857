import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines, images
from tests.helpers.images import make_aci, manifest
from tests.helpers.store import scratch_store

PASSWD = "root:x:0:0:root:/:/bin/sh\nwww:x:80:80:www:/www:/bin/sh\n"
GROUP = "root:x:0:\nwww:x:80:\n"


@pytest.fixture
def store(zfs_pool):
    """A fresh, initialised store on the test pool; destroyed afterwards."""
    yield from scratch_store(zfs_pool, "s")


@pytest.fixture
def engine():
    return engines.for_host()


@pytest.fixture
def busybox(store, tmp_path):
    """A busybox image (its applets, a www user, /www and /tmp) in the store, for pods to run."""
    files = {"etc/passwd": PASSWD, "etc/group": GROUP, "www/.keep": "", "tmp/.keep": ""}
    path = make_aci(str(tmp_path), manifest("example.com/busybox", {"version": "1", "os": "linux"}),
                    files, busybox=True)[0]
    return images.import_image(store, images.ImportRequest(source=path))[0]
