"""A Debian base image made by debootstrap (minbase) and a child build that installs a package with apt.

Slow (a minute or two) and needs the Debian archive this host's apt uses; in CI a missing
debootstrap is a failure, never a skip.
"""
import glob
import os
import shutil
import tarfile

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import base, build
from tests.conftest import unavailable

pytestmark = pytest.mark.integration


def layer_members(store, image):
    with tarfile.open(store.path("images", image.key, "aci")) as tar:
        return [m.name for m in tar.getmembers()]


def test_a_debian_base_and_a_child_that_installs_a_package_with_apt(store):
    if not shutil.which("debootstrap"):
        unavailable("needs debootstrap (scripts/setup installs it)")
    debian, changed = base.make(store, base.BaseSpec("example.com/debian", {"debootstrap": {"suite": "bookworm"}},
                                                     labels={"version": "12"}))
    assert changed and debian.labels["os"] == "linux" and debian.labels["version"] == "12"
    with open(os.path.join(debian.rootfs, "etc/debian_version")) as f:
        assert f.read().startswith("12")
    assert glob.glob(os.path.join(debian.rootfs, "var/cache/apt/archives/*.deb")) == []
    assert base.make(store, base.BaseSpec("example.com/debian", {"debootstrap": {"suite": "bookworm"}},
                                          labels={"version": "12"}))[0].id == debian.id  # cached: no debootstrap

    spec = build.BuildSpec("example.com/hello", {"name": "example.com/debian"}, network="host", steps=[
        {"run": "apt-get update -qq && apt-get install -y -qq --no-install-recommends hello "
                "&& apt-get clean && rm -rf /var/lib/apt/lists/*", "environment": {"DEBIAN_FRONTEND": "noninteractive"}},
        {"run": ["/bin/sh", "-c", "hello > /hello.out"]}],
        app={"exec": ["/usr/bin/hello"]})
    hello, changed, steps = build.build(store, spec)
    assert changed and steps[0]["rc"] == 0
    assert store.zfs.get(hello.dataset, ["origin"])["origin"] == debian.dataset + "@seal"
    with open(os.path.join(hello.rootfs, "hello.out")) as f:
        assert f.read() == "Hello, world!\n"
    members = layer_members(store, hello)
    assert "rootfs/usr/bin/hello" in members and "rootfs/hello.out" in members
    assert "rootfs/usr/bin/bash" not in members and "rootfs/etc/debian_version" not in members
    assert os.path.getsize(store.path("images", hello.key, "aci")) * 10 < os.path.getsize(
        store.path("images", debian.key, "aci"))
