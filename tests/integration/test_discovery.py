"""Fetching images by name end to end: appc discovery from a real loopback HTTP(S) server, archives
signed with real gpg keys the tests generate, verified against the store's trust, imported on a
real zfs-fuse pool. Every refusal must leave nothing: no image, no dataset, no download."""
import fcntl
import os

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import discovery, fetch, images, trust
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    InvalidInput, JetpackError, NotFound)
from tests.helpers.gpg import Keys
from tests.helpers.images import make_aci, manifest, sha512_id
from tests.helpers.store import datasets, stop_zygote
from tests.helpers.webserver import Site, discovery_page

pytestmark = pytest.mark.integration

HOST = "images.example.test"
NAME = HOST + "/app"
LABELS = {"version": "1.0", "os": "linux", "arch": "amd64"}
HOST_LABELS = {"os": "linux", "arch": "amd64"}  # what discovery fills in for os/arch, whatever runs the tests
TEMPLATE = "https://%s/aci/{name}-{version}-{os}-{arch}.{ext}" % HOST
PUBKEYS = "https://%s/pubkeys.gpg" % HOST


@pytest.fixture
def keys():
    made = Keys()
    yield made
    made.close()


@pytest.fixture
def site(tmp_path):
    served = Site(tmp_path, tls_names=[HOST])
    yield served
    served.close()


def client_for(site, **options):
    """A client that reaches HOST on the loopback site, trusting the site's test CA."""
    return fetch.Client(ca_file=site.ca_file, connect_to={(HOST, 443): ("127.0.0.1", site.port)}, **options)


def publish_page(site, path="/app?ac-discovery=1", template=TEMPLATE, prefix=HOST):
    site.add(path, discovery_page(("ac-discovery", "%s %s" % (prefix, template)),
                                  ("ac-discovery-pubkeys", "%s %s" % (prefix, PUBKEYS))), content_type="text/html")


def publish_image(site, tmp_path, signer, image_manifest=None, url_path=None, files=None):
    """Build, sign and serve an ACI where TEMPLATE puts NAME 1.0 linux/amd64; returns its uncompressed tar."""
    image_manifest = image_manifest or manifest(NAME, LABELS)
    aci, tar = make_aci(str(tmp_path), image_manifest, files or {"etc/motd": "discovered\n"},
                        name="image%d" % len(site.routes))
    url_path = url_path or "/aci/%s-1.0-linux-amd64.aci" % NAME
    site.add_file(url_path, aci)
    if signer is not None:
        site.add_file(url_path + ".asc", signer.sign(aci))
    return tar


def trust_key(store, key, prefix=HOST):
    return trust.trust_store(store).add(key.public_key(), prefix=prefix)[0]


def fetch_and_import(store, site, name=NAME, labels=None, client=None, **options):
    labels = LABELS if labels is None else labels
    with discovery.fetch_image(store, name, labels, client=client or client_for(site), defaults=HOST_LABELS,
                               **options) as fetched:
        request = images.ImportRequest(source=fetched.path, image_id=fetched.image_id, name=name, labels=labels)
        image, changed = images.import_image(store, request)
        return fetched, image, changed


def downloads(store):
    directory = os.path.join(store.config.mountpoint, "downloads")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def assert_nothing_imported(store):
    assert images.list_images(store) == []
    assert datasets(store) == [store.dataset("images")]
    assert downloads(store) == []
    assert os.listdir(store.path("images")) == []


# --- what works ---------------------------------------------------------------------------------
def test_fetch_by_name_over_https_verifies_and_imports(store, tmp_path, site, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher)
    publish_page(site)
    tar = publish_image(site, tmp_path, publisher)
    seen = []
    fetched, image, changed = fetch_and_import(store, site, progress=lambda *args: seen.append(args))
    assert changed and image.id == sha512_id(tar) == fetched.image_id
    assert image.name == NAME and image.labels == LABELS
    assert fetched.signer == publisher.fingerprint
    assert fetched.url == "https://%s/aci/%s-1.0-linux-amd64.aci" % (HOST, NAME)
    assert site.requests == ["/app?ac-discovery=1", "/aci/%s-1.0-linux-amd64.aci.asc" % NAME,
                             "/aci/%s-1.0-linux-amd64.aci" % NAME]
    size = len(site.routes["/aci/%s-1.0-linux-amd64.aci" % NAME][2])
    assert seen[-1] == (fetched.url, size, size)
    assert downloads(store) == [] and not os.path.exists(fetched.path)
    with open(os.path.join(image.rootfs, "etc", "motd")) as f:
        assert f.read() == "discovered\n"


def test_discovery_walks_up_the_name_and_follows_redirects_over_http_when_allowed(store, tmp_path, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher)
    site = Site(tmp_path)  # plain http
    try:
        name = HOST + "/team/app"
        # /team/app and /team answer 404; the host's own page redirects to the tags.
        site.redirect("/?ac-discovery=1", "/meta.html", 301)
        site.add("/meta.html", discovery_page(("ac-discovery", "%s http://%s/download/{name}.{ext}" % (HOST, HOST))),
                 content_type="text/html")
        site.redirect("/download/%s.aci" % name, "/blobs/app.aci", 307)
        site.redirect("/download/%s.aci.asc" % name, "/blobs/app.aci.asc", 308)
        tar = publish_image(site, tmp_path, publisher, manifest(name, LABELS), url_path="/blobs/app.aci")
        # A TLS handshake against the http port fails: with allow_http, each page then falls back to http.
        port = ("127.0.0.1", site.port)
        client = fetch.Client(allow_http=True, connect_to={(HOST, 80): port, (HOST, 443): port})
        _fetched, image, changed = fetch_and_import(store, site, name, client=client)
        assert changed and image.id == sha512_id(tar) and image.name == name
        assert site.requests[:4] == ["/team/app?ac-discovery=1", "/team?ac-discovery=1", "/?ac-discovery=1",
                                     "/meta.html"]
        assert "/blobs/app.aci" in site.requests and "/blobs/app.aci.asc" in site.requests

        served = len(site.requests)
        with pytest.raises(fetch.DownloadError) as refused:
            fetch_and_import(store, site, name, client=fetch.Client(connect_to={(HOST, 443): port}))
        assert "downloading https://%s/team/app?ac-discovery=1 failed" % HOST in str(refused.value)
        assert refused.value.status is None and len(site.requests) == served, "no http request without allow_http"
    finally:
        site.close()


def test_verify_signature_false_imports_an_unsigned_image(store, tmp_path, site):
    publish_page(site)
    tar = publish_image(site, tmp_path, None)
    _fetched, image, changed = fetch_and_import(store, site, verify_signature=False)
    assert changed and image.id == sha512_id(tar)
    assert not any(path.endswith(".asc") for path in site.requests)


def test_a_root_key_is_trusted_for_every_name(store, tmp_path, site, keys):
    publisher = keys.new("Root <root@example.test>")
    trust.trust_store(store).add(publisher.public_key(), root=True)
    publish_page(site)
    publish_image(site, tmp_path, publisher)
    fetched, _image, changed = fetch_and_import(store, site)
    assert changed and fetched.signer == publisher.fingerprint


# --- what is refused, leaving nothing -----------------------------------------------------------
def test_plain_http_templates_and_redirects_are_refused_without_allow_http(store, tmp_path, site, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher)
    publish_page(site, template="http://%s/aci/{name}.{ext}" % HOST)
    with pytest.raises(NotFound) as only_http:
        fetch_and_import(store, site)
    assert "allow_http" in str(only_http.value)
    assert site.requests == ["/app?ac-discovery=1", "/?ac-discovery=1"], "nothing downloaded over http"

    publish_page(site)
    publish_image(site, tmp_path, publisher)
    site.redirect("/aci/%s-1.0-linux-amd64.aci" % NAME, "http://%s/aci/app.aci" % HOST)
    with pytest.raises(InvalidInput) as downgrade:
        fetch_and_import(store, site)
    assert "http://%s/aci/app.aci is plain http" % HOST in str(downgrade.value)
    assert_nothing_imported(store)


def test_an_image_signed_by_an_untrusted_key_is_refused(store, tmp_path, site, keys):
    trusted, stranger = keys.new("Trusted <t@example.test>"), keys.new("Stranger <s@example.test>")
    trust_key(store, trusted)
    publish_page(site)
    publish_image(site, tmp_path, stranger)
    with pytest.raises(JetpackError) as refused:
        fetch_and_import(store, site)
    assert "does not verify" in str(refused.value) and "NO_PUBKEY" in str(refused.value)
    assert_nothing_imported(store)


def test_an_image_without_signature_is_refused(store, tmp_path, site, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher)
    publish_page(site)
    publish_image(site, tmp_path, None)
    with pytest.raises(JetpackError) as refused:
        fetch_and_import(store, site)
    assert "has no signature" in str(refused.value) and "verify_signature=false" in str(refused.value)
    assert not any(path.endswith(".aci") for path in site.requests), "the archive is not even downloaded"
    assert_nothing_imported(store)


def test_a_tampered_archive_is_refused(store, tmp_path, site, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher)
    publish_page(site)
    publish_image(site, tmp_path, publisher)
    path = "/aci/%s-1.0-linux-amd64.aci" % NAME
    signature = site.routes[path + ".asc"]
    publish_image(site, tmp_path, None, files={"etc/motd": "replaced on the way\n"})
    site.routes[path + ".asc"] = signature  # the original signature beside another archive
    with pytest.raises(JetpackError) as refused:
        fetch_and_import(store, site)
    assert "does not verify" in str(refused.value) and "BADSIG" in str(refused.value)
    assert_nothing_imported(store)


def test_a_signature_that_is_not_a_detached_armoured_one_is_refused(store, tmp_path, site, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher)
    publish_page(site)
    publish_image(site, tmp_path, publisher)
    site.add("/aci/%s-1.0-linux-amd64.aci.asc" % NAME, "-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n")
    with pytest.raises(JetpackError) as refused:
        fetch_and_import(store, site)
    assert "not one ASCII-armoured detached OpenPGP signature" in str(refused.value)
    assert_nothing_imported(store)


def test_a_signed_image_with_another_name_or_labels_is_refused(store, tmp_path, site, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher)
    publish_page(site)
    publish_image(site, tmp_path, publisher, manifest(HOST + "/other", LABELS))
    with pytest.raises(InvalidInput) as wrong_name:
        fetch_and_import(store, site)
    assert wrong_name.value.field == "name" and "images.example.test/other" in str(wrong_name.value)
    assert_nothing_imported(store)

    # Asked for 2.0; the template's 2.0 URL serves the signed 1.0 archive.
    publish_image(site, tmp_path, publisher, url_path="/aci/%s-2.0-linux-amd64.aci" % NAME)
    with pytest.raises(InvalidInput) as wrong_labels:
        fetch_and_import(store, site, labels=dict(LABELS, version="2.0"))
    assert wrong_labels.value.field == "labels" and "version=1.0" in str(wrong_labels.value)
    assert_nothing_imported(store)

    # Nothing asked about os: the host's default still refuses an image for another os.
    publish_image(site, tmp_path, publisher, manifest(NAME, {"version": "1.0", "os": "freebsd", "arch": "amd64"}))
    with pytest.raises(InvalidInput) as other_os:
        fetch_and_import(store, site, labels={"version": "1.0"})
    assert "os=freebsd" in str(other_os.value)
    assert_nothing_imported(store)


def test_without_a_trusted_key_nothing_is_downloaded_and_the_keys_are_named(store, tmp_path, site, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher, prefix=HOST + "/other")  # a neighbour's prefix does not cover NAME
    publish_page(site)
    publish_image(site, tmp_path, publisher)
    with pytest.raises(NotFound) as refused:
        fetch_and_import(store, site)
    message = str(refused.value)
    assert "no key is trusted to sign %s" % NAME in message and PUBKEYS in message and "jetpack_trust" in message
    assert site.requests == ["/app?ac-discovery=1"]
    assert_nothing_imported(store)


def test_a_download_a_crash_left_is_removed_and_a_live_one_kept(store, tmp_path, site, keys):
    publisher = keys.new("Publisher <sign@images.example.test>")
    trust_key(store, publisher)
    publish_page(site)
    publish_image(site, tmp_path, publisher)
    parent = os.path.join(store.config.mountpoint, "downloads")
    for name in ("fetch-crashed", "fetch-live"):
        os.makedirs(os.path.join(parent, name))
        with open(os.path.join(parent, name, "download-x.aci"), "wb") as f:
            f.write(b"partial")
        open(os.path.join(parent, name, fetch.SCRATCH_LOCK), "w").close()
    live = os.open(os.path.join(parent, "fetch-live", fetch.SCRATCH_LOCK), os.O_RDWR)
    try:
        fcntl.flock(live, fcntl.LOCK_EX)  # another fetch still running
        _fetched, _image, changed = fetch_and_import(store, site)
        assert changed and downloads(store) == ["fetch-live"]
    finally:
        os.close(live)


def test_a_name_no_page_knows_is_not_found_and_says_where_it_looked(store, site):
    with pytest.raises(NotFound) as unknown:
        fetch_and_import(store, site, HOST + "/nobody/here")
    assert "https://%s/nobody/here?ac-discovery=1 or its parents (all HTTP 4xx)" % HOST in str(unknown.value)
    assert site.requests == ["/nobody/here?ac-discovery=1", "/nobody?ac-discovery=1", "/?ac-discovery=1"]
    assert_nothing_imported(store)


# --- the module ---------------------------------------------------------------------------------
@pytest.mark.ansible
def test_jetpack_image_source_discover_four_steps(zfs_pool, tmp_path, keys):
    from tests.ansible.test_modules import run_playbook
    publisher = keys.new("Playbook Publisher <playbook@localhost>")
    site = Site(tmp_path, port=80)  # discovery asks http://localhost/... (allow_http)
    root = "%s/d%s" % (zfs_pool.name, os.urandom(4).hex())
    mountpoint = os.path.join(str(zfs_pool.base), root.rsplit("/", 1)[1])
    try:
        template = "http://localhost/aci/{name}-{version}.{ext}"
        for name in ("app", "unsigned"):
            site.add("/%s?ac-discovery=1" % name, discovery_page(("ac-discovery", "localhost/%s %s" % (name, template))),
                     content_type="text/html")
        signed, tar = make_aci(str(tmp_path), manifest("localhost/app", {"version": "1.0"}), {"etc/motd": "hi\n"},
                               name="signed")
        site.add_file("/aci/localhost/app-1.0.aci", signed)
        site.add_file("/aci/localhost/app-1.0.aci.asc", publisher.sign(signed))
        unsigned, _tar = make_aci(str(tmp_path), manifest("localhost/unsigned", {"version": "1.0"}), {},
                                  name="unsigned")
        site.add_file("/aci/localhost/unsigned-1.0.aci", unsigned)
        out = run_playbook("jetpack_image_discover.yml", dict(
            store_root=root, store_mountpoint=mountpoint, expected_id=sha512_id(tar),
            key_file=publisher.write_public_key(tmp_path / "key.asc"), key_fingerprint=publisher.fingerprint))
        assert "failed=0" in out
        # check mode and the real run each download; once present, neither downloads again
        assert site.requests.count("/aci/localhost/app-1.0.aci") == 2
    finally:
        site.close()
        stop_zygote(root)
        if zfs_pool.zfs.exists(root):
            zfs_pool.zfs.destroy(root, recursive=True)
