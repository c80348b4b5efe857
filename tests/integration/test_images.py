"""Images end to end on a real zfs-fuse pool: import, layering, removal, export, crash recovery."""
import errno
import http.server
import os
import signal
import ssl
import subprocess
import sys
import threading
import time

import ansible_collections
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import images
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    ArchiveError, InUse, InvalidInput, JetpackError, NotFound)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig
from tests.helpers.images import make_aci, manifest, sha512_id
from tests.helpers.store import datasets

pytestmark = pytest.mark.integration

BASE = manifest("example.com/base", {"version": "1.0", "os": "linux", "arch": "amd64"})


def import_file(store, path, **kwargs):
    return images.import_image(store, images.ImportRequest(source=path, **kwargs))


def imported(store, path, **kwargs):
    """The image an import gives, changed or not."""
    return import_file(store, path, **kwargs)[0]


def aci_path(*args, **kwargs):
    return make_aci(*args, **kwargs)[0]


def leftovers(store):
    """What an image store holds besides sealed images: must be empty after any failure."""
    objects = store.list_objects("images")
    unsealed = [name for name, props in objects.items() if props.get("jetpack:state") != "sealed"]
    keys = {name.rsplit("/", 1)[1] for name in objects}
    stray_dirs = [d for d in os.listdir(store.path("images")) if d not in keys]
    return unsealed + stray_dirs


@pytest.mark.parametrize("compression", ["none", "gzip", "bzip2", "xz"])
def test_import_each_compression_gives_the_id_of_the_uncompressed_tar(store, tmp_path, compression):
    path, tar = make_aci(str(tmp_path), BASE, {"etc/motd": "hello\n"}, compression, busybox=True)
    image, changed = import_file(store, path)
    assert changed
    assert image.id == sha512_id(tar)
    assert image.name == "example.com/base"
    assert image.labels == {"version": "1.0", "os": "linux", "arch": "amd64"}
    with open(os.path.join(image.rootfs, "etc/motd")) as f:
        assert f.read() == "hello\n"


def test_imported_image_is_sealed_and_read_only(store, tmp_path):
    path = aci_path(str(tmp_path), BASE, {"etc/motd": "hi\n"})
    image = imported(store, path)
    props = store.zfs.get(image.dataset, ["jetpack:state", "jetpack:id"])
    assert props == {"jetpack:state": "sealed", "jetpack:id": image.id}
    assert store.zfs.exists(image.dataset + "@seal")
    # The kernel refuses the write (zfs-fuse reports readonly=off "temporary" while mounted
    # read-only, so the property as read is no evidence either way).
    with pytest.raises(OSError) as refused:
        open(os.path.join(image.rootfs, "etc/new"), "w")
    assert refused.value.errno == errno.EROFS


def test_identical_reimport_changes_nothing(store, tmp_path):
    path = aci_path(str(tmp_path), BASE, {"etc/motd": "hi\n"})
    first, changed = import_file(store, path)
    before = datasets(store)
    again, changed_again = import_file(store, path)
    os.utime(path)  # the file looks new: it is read again, and still nothing changes
    third, changed_third = import_file(store, path)
    assert changed and not changed_again and not changed_third
    assert first.id == again.id == third.id
    assert datasets(store) == before
    assert leftovers(store) == []


def test_single_dependency_is_a_clone_of_the_parent_seal(store, tmp_path):
    parent = imported(store, aci_path(str(tmp_path), BASE, {"etc/base": "base\n", "etc/motd": "base\n"},
                                      name="base"))
    child_manifest = manifest("example.com/child", {"version": "2"},
                              dependencies=[{"imageName": "example.com/base", "labels": [
                                  {"name": "version", "value": "1.0"}]}])
    child = imported(store, aci_path(str(tmp_path), child_manifest, {"etc/motd": "child\n"}, name="child"))
    assert store.zfs.get(child.dataset, ["origin"])["origin"] == parent.dataset + "@seal"
    assert child.record["dependencies"] == [parent.id]
    with open(os.path.join(child.rootfs, "etc/base")) as f:
        assert f.read() == "base\n"
    with open(os.path.join(child.rootfs, "etc/motd")) as f:
        assert f.read() == "child\n"


def test_several_dependencies_render_in_order_with_the_whitelist(store, tmp_path):
    a = imported(store, aci_path(str(tmp_path), manifest("example.com/a"),
                                 {"f/one": "a\n", "f/two": "a\n", "f/drop": "a\n"}, name="a"))
    b = imported(store, aci_path(str(tmp_path), manifest("example.com/b"), {"f/two": "b\n"}, name="b"))
    top = manifest("example.com/top", dependencies=[{"imageName": "example.com/a", "imageID": a.id},
                                                    {"imageName": "example.com/b", "imageID": b.id}],
                   pathWhitelist=["/f/one", "/f/two", "/f/mine"])
    image = imported(store, aci_path(str(tmp_path), top, {"f/mine": "top\n"}, name="top"))
    assert store.zfs.get(image.dataset, ["origin"])["origin"] == "-"
    rendered = {name: open(os.path.join(image.rootfs, "f", name)).read()
                for name in os.listdir(os.path.join(image.rootfs, "f"))}
    assert rendered == {"one": "a\n", "two": "b\n", "mine": "top\n"}


def test_remove_refuses_while_a_child_exists_then_works_children_first(store, tmp_path):
    parent = imported(store, aci_path(str(tmp_path), BASE, {"x": "1"}, name="base"))
    child_manifest = manifest("example.com/child", dependencies=[{"imageName": "example.com/base",
                                                                  "imageID": parent.id}])
    child = imported(store, aci_path(str(tmp_path), child_manifest, {"y": "2"}, name="child"))
    before = datasets(store)
    with pytest.raises(InUse) as refused:
        images.remove_images(store, [parent])
    assert "example.com/child" in str(refused.value) and "remove those first" in str(refused.value)
    assert datasets(store) == before
    assert sorted(images.remove_images(store, [parent, child])) == sorted([parent.id, child.id])
    assert images.list_images(store) == []
    assert os.listdir(store.path("images")) == []


def test_export_then_reimport_on_a_fresh_store_gives_the_same_ids(store, zfs_pool, tmp_path):
    parent = imported(store, aci_path(str(tmp_path), BASE, {"etc/base": "1"}, "xz", name="base"))
    child_manifest = manifest("example.com/child", dependencies=[{"imageName": "example.com/base",
                                                                  "imageID": parent.id}])
    child = imported(store, aci_path(str(tmp_path), child_manifest, {"etc/child": "2"}, name="child"))
    out = tmp_path / "out"
    out.mkdir()
    assert images.export_image(store, parent, str(out / "base.aci")) == (True, parent.id)
    assert images.export_image(store, child, str(out / "child.aci")) == (True, child.id)
    assert images.export_image(store, child, str(out / "child.aci")) == (False, child.id)
    changed, flat_id = images.export_image(store, child, str(out / "flat.aci"), flat=True)
    assert changed and flat_id != child.id
    assert images.export_image(store, child, str(out / "flat.aci"), flat=True) == (False, flat_id)

    fresh = Store(StoreConfig(store.root + "-fresh", store.config.mountpoint + "-fresh"), store.zfs)
    fresh.ensure()
    try:
        assert imported(fresh, str(out / "base.aci")).id == parent.id
        assert imported(fresh, str(out / "child.aci")).id == child.id
        flat = imported(fresh, str(out / "flat.aci"))
        assert flat.id == flat_id and flat.record["dependencies"] == []
        assert sorted(os.listdir(os.path.join(flat.rootfs, "etc"))) == ["base", "child"]
    finally:
        store.zfs.destroy(fresh.root, recursive=True)


def test_hostile_archive_leaves_nothing(store, tmp_path):
    path = aci_path(str(tmp_path), BASE, {"etc/ok": "1"})
    evil = tmp_path / "evil.aci"
    subprocess.run(["tar", "-C", str(tmp_path / "image.tree"), "-cf", str(evil), "manifest", "rootfs",
                    "--transform", "s,^rootfs/etc/ok,rootfs/../../escape,"], check=True)
    before = datasets(store)
    with pytest.raises(ArchiveError):
        import_file(store, str(evil))
    assert datasets(store) == before and leftovers(store) == []
    assert not os.path.exists(os.path.join(store.config.mountpoint, "escape"))


def test_pinned_id_mismatch_and_name_mismatch_are_refused_with_nothing_left(store, tmp_path):
    path = aci_path(str(tmp_path), BASE, {"etc/ok": "1"})
    with pytest.raises(ArchiveError):
        import_file(store, path, image_id="sha512-" + "0" * 128)
    with pytest.raises(InvalidInput) as wrong_name:
        import_file(store, path, name="example.com/other")
    assert "example.com/other" in str(wrong_name.value)
    with pytest.raises(InvalidInput):
        import_file(store, path, labels={"version": "9"})
    assert images.list_images(store) == [] and leftovers(store) == []


def test_missing_dependency_names_what_to_import(store, tmp_path):
    orphan = manifest("example.com/orphan", dependencies=[{"imageName": "example.com/nowhere"}])
    with pytest.raises(NotFound) as missing:
        import_file(store, aci_path(str(tmp_path), orphan, {"a": "1"}))
    assert "example.com/nowhere" in str(missing.value) and "import it first" in str(missing.value)
    assert leftovers(store) == []


def test_kill_9_mid_import_is_collected_by_the_next_run(store, tmp_path):
    big = {"blob/%03d" % i: os.urandom(1 << 20) for i in range(150)}
    path = aci_path(str(tmp_path), BASE, big, "none")
    script = ("import sys; sys.path.insert(0, %r)\n"
              "from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import images, store, zfs\n"
              "s = store.Store(store.StoreConfig(%r, %r))\n"
              "images.import_image(s, images.ImportRequest(source=%r))\n"
              % (os.path.dirname(list(ansible_collections.__path__)[0]), store.root, store.config.mountpoint, path))
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline and not any(
            props.get("jetpack:state") == "importing" for props in store.list_objects("images").values()):
        time.sleep(0.02)
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert leftovers(store), "the import was killed before it started: the test proves nothing"
    image, changed = import_file(store, aci_path(str(tmp_path), BASE, {"small": "1"}, name="small"))
    assert changed and leftovers(store) == []
    assert [i.id for i in images.list_images(store)] == [image.id]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


@pytest.fixture
def https_root(tmp_path):
    root = tmp_path / "www-tls"
    root.mkdir()
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(root)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, "https://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


def test_https_certificates_are_verified_unless_told_otherwise(store, tmp_path, https_root):
    root, url = https_root
    path, tar = make_aci(str(tmp_path), BASE, {"etc/motd": "over https\n"})
    os.rename(path, root / "base.aci")
    with pytest.raises(JetpackError) as refused:
        import_file(store, url + "/base.aci")
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value) and images.list_images(store) == []
    image, changed = import_file(store, url + "/base.aci", validate_certs=False)
    assert changed and image.id == sha512_id(tar)
    assert leftovers(store) == []


def test_fetch_over_http_needs_allow_http(store, tmp_path, http_root):
    root, url = http_root
    path, tar = make_aci(str(tmp_path), BASE, {"etc/motd": "over http\n"}, "xz")
    os.rename(path, root / "base.aci")
    with pytest.raises(InvalidInput) as refused:
        import_file(store, url + "/base.aci")
    assert "allow_http" in str(refused.value)
    image, changed = import_file(store, url + "/base.aci", allow_http=True)
    assert changed and image.id == sha512_id(tar)
    assert image.record["source"] == {"location": url + "/base.aci"}
    with pytest.raises(JetpackError) as missing:
        import_file(store, url + "/missing.aci", allow_http=True)
    assert "404" in str(missing.value)
    assert os.listdir(store.tmp_dir()) == [] and leftovers(store) == []
