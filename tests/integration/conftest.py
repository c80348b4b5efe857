import pytest

from tests.helpers.store import scratch_store


@pytest.fixture
def store(zfs_pool):
    """A fresh, initialised store on the test pool; destroyed afterwards."""
    yield from scratch_store(zfs_pool, "s")
