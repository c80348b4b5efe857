"""jetpack_image with source: base and source: build, through ansible-playbook against localhost."""
import os

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig
from tests.ansible.test_modules import run_playbook
from tests.helpers.images import make_rootfs

pytestmark = [pytest.mark.ansible, pytest.mark.integration]


def test_jetpack_image_build_four_steps(store_vars, tmp_path):  # noqa: F811
    rootfs = make_rootfs(str(tmp_path / "rootfs"), {"etc/old": "old\n", "srv/.keep": ""}, busybox=True)
    host_file = tmp_path / "host-file"
    host_file.write_text("from the host\n")
    out = run_playbook("jetpack_image_build.yml", dict(store_vars, base_rootfs=rootfs, greeting="hello",
                                                       host_file=str(host_file)))
    assert "failed=0" in out
    store = Store(StoreConfig(store_vars["store_root"], store_vars["store_mountpoint"]))
    assert store.list_objects("images") == {} and store.list_objects("pods") == {}
    assert os.listdir(store.path("pods")) == []
