"""The trust store end to end with real gpg: keys per prefix and root keys in a real store, keys
from files, https URLs and discovery (pinned by fingerprint), verification of real signatures,
and the jetpack_trust modules run by ansible-playbook."""
import os
import uuid

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import discovery, fetch, trust
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    InvalidInput, JetpackError, NotFound)
from tests.helpers.gpg import Keys
from tests.helpers.store import stop_zygote
from tests.helpers.webserver import Site, discovery_page

pytestmark = pytest.mark.integration

HOST = "keys.example.test"


@pytest.fixture
def keys():
    made = Keys()
    yield made
    made.close()


@pytest.fixture
def trusted(store):
    return trust.trust_store(store)


def files_in(directory):
    return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _s, fs in os.walk(directory) for f in fs)


def signed_file(tmp_path, key, content=b"an archive\n"):
    path = tmp_path / ("data-%s" % uuid.uuid4().hex[:6])
    path.write_bytes(content)
    return str(path), key.sign(path)


# --- adding, listing, removing ------------------------------------------------------------------
def test_a_key_is_trusted_for_a_prefix_once_and_listed_with_its_user_id(store, trusted, keys):
    key = keys.new("Publisher <p@example.test>")
    added, action = trusted.add(key.public_key(), prefix="example.test/app")
    assert action == "added" and added.fingerprint == key.fingerprint
    assert files_in(trusted.directory) == ["prefix.d/example.test%%2Fapp/%s.asc" % key.fingerprint]
    assert trusted.add(key.public_key(), prefix="example.test/app")[1] is None
    listed = trusted.describe(trusted.keys())
    assert [(k.fingerprint, k.prefix, k.uids) for k in listed] == [
        (key.fingerprint, "example.test/app", ["Publisher <p@example.test>"])]
    assert os.path.dirname(trusted.directory) == store.config.mountpoint


def test_a_prefix_covers_itself_and_the_names_below_it_and_root_keys_cover_all(trusted, keys):
    prefix_key, root_key = keys.new("Prefix <p@example.test>"), keys.new("Root <r@example.test>")
    trusted.add(prefix_key.public_key(), prefix="example.test/app")
    trusted.add(root_key.public_key(), root=True)
    for name, expected in [("example.test/app", {prefix_key, root_key}),
                           ("example.test/app/tools", {prefix_key, root_key}),
                           ("example.test/application", {root_key}),
                           ("example.test", {root_key}),
                           ("example.test.evil.example/app", {root_key})]:
        assert {k.fingerprint for k in trusted.keys_for(name)} == {k.fingerprint for k in expected}, name


def test_a_pin_that_does_not_match_is_refused_and_nothing_written(trusted, keys):
    key, other = keys.new("Publisher <p@example.test>"), keys.new("Other <o@example.test>")
    with pytest.raises(InvalidInput) as refused:
        trusted.add(other.public_key(), prefix="example.test", fingerprint=key.fingerprint)
    assert refused.value.field == "fingerprint" and other.fingerprint in str(refused.value)
    assert files_in(trusted.directory) == []


def test_several_keys_need_a_fingerprint_and_only_the_chosen_one_is_kept(trusted, keys):
    one, two = keys.new("One <1@example.test>"), keys.new("Two <2@example.test>")
    both = one.public_key() + two.public_key()
    with pytest.raises(InvalidInput) as ambiguous:
        trusted.add(both, prefix="example.test")
    assert "holds 2 keys" in str(ambiguous.value)
    spaced = " ".join(two.fingerprint[i:i + 4] for i in range(0, 40, 4)).lower()
    added, action = trusted.add(both, prefix="example.test", fingerprint=spaced)
    assert action == "added" and added.fingerprint == two.fingerprint
    assert [k.uids for k in trusted.describe(trusted.keys())] == [["Two <2@example.test>"]]


def test_what_is_not_a_usable_key_is_refused(trusted, keys, tmp_path):
    with pytest.raises(InvalidInput) as garbage:
        trusted.add(b"not a key at all\n", prefix="example.test")
    assert str(garbage.value) == ("the key is not an OpenPGP public key (gpg: no valid OpenPGP data found.); "
                                  "give an exported public key")
    revoked = keys.new("Revoked <r@example.test>")
    certificate = os.path.join(revoked.home, "openpgp-revocs.d", revoked.fingerprint + ".rev")
    with open(certificate) as f:  # gpg writes it with a ':' before the armour line, against accidents
        (tmp_path / "revocation.asc").write_text(f.read().replace(":-----BEGIN", "-----BEGIN"))
    revoked._gpg(["--import", str(tmp_path / "revocation.asc")])
    with pytest.raises(InvalidInput) as dead:
        trusted.add(revoked.public_key(), prefix="example.test")
    assert "is revoked" in str(dead.value)
    assert files_in(trusted.directory) == []
    with pytest.raises(InvalidInput):
        trusted.add(revoked.public_key(), prefix="example.test", root=True)
    with pytest.raises(InvalidInput):
        trusted.add(revoked.public_key())


def test_removing_one_key_or_every_key_of_a_prefix(trusted, keys):
    one, two = keys.new("One <1@example.test>"), keys.new("Two <2@example.test>")
    trusted.add(one.public_key(), prefix="example.test")
    trusted.add(two.public_key(), prefix="example.test")
    trusted.add(one.public_key(), root=True)
    assert [k.fingerprint for k in trusted.remove("example.test", fingerprint=one.fingerprint, check_only=True)] == \
        [one.fingerprint]
    assert len(trusted.keys("example.test")) == 2
    assert [k.fingerprint for k in trusted.remove("example.test", fingerprint=one.fingerprint)] == [one.fingerprint]
    assert trusted.remove("example.test", fingerprint=one.fingerprint) == []
    assert [k.fingerprint for k in trusted.remove("example.test")] == [two.fingerprint]
    assert files_in(trusted.directory) == ["root.d/%s.asc" % one.fingerprint]
    assert not os.path.exists(trusted.scope_dir("example.test"))


def test_a_write_a_crash_cut_short_is_cleaned_on_the_next_change(trusted, keys):
    key = keys.new("Publisher <p@example.test>")
    os.makedirs(trusted.scope_dir("example.test"))
    with open(os.path.join(trusted.scope_dir("example.test"), trust.TMP_PREFIX + "abc"), "wb") as f:
        f.write(b"half a key")
    assert trusted.keys() == []
    trusted.add(key.public_key(), prefix="example.test")
    assert files_in(trusted.directory) == ["prefix.d/example.test/%s.asc" % key.fingerprint]


# --- verification -------------------------------------------------------------------------------
def test_verify_accepts_a_trusted_signature_and_refuses_others(trusted, keys, tmp_path):
    key, stranger = keys.new("Publisher <p@example.test>"), keys.new("Stranger <s@example.test>")
    trusted.add(key.public_key(), prefix="example.test")
    data, signature = signed_file(tmp_path, key)
    assert trust.verify(trusted.keys_for("example.test/app"), data, signature, "example.test/app") == key.fingerprint
    with pytest.raises(NotFound):
        trust.verify(trusted.keys_for("other.test/app"), data, signature, "other.test/app")
    foreign, foreign_signature = signed_file(tmp_path, stranger)
    with pytest.raises(JetpackError) as untrusted:
        trust.verify(trusted.keys_for("example.test/app"), foreign, foreign_signature, "example.test/app")
    assert "NO_PUBKEY" in str(untrusted.value)
    with open(data, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(JetpackError) as tampered:
        trust.verify(trusted.keys_for("example.test/app"), data, signature, "example.test/app")
    assert "BADSIG" in str(tampered.value)


def test_a_missing_gpg_is_a_clear_error(store, keys, tmp_path):
    key = keys.new("Publisher <p@example.test>")
    without_gpg = trust.trust_store(store, gpg=trust.Gpg("/nonexistent/gpg"))
    with pytest.raises(JetpackError) as missing:
        without_gpg.add(key.public_key(), prefix="example.test")
    assert "/nonexistent/gpg (GnuPG) is not installed" in str(missing.value) and "apt install gpg" in str(missing.value)
    trust.trust_store(store).add(key.public_key(), prefix="example.test")
    data, signature = signed_file(tmp_path, key)
    with pytest.raises(JetpackError) as unverifiable:
        trust.verify(without_gpg.keys(), data, signature, "example.test/app", gpg=without_gpg.gpg)
    assert "is not installed" in str(unverifiable.value)


# --- keys from URLs and from discovery ----------------------------------------------------------
@pytest.fixture
def site(tmp_path):
    served = Site(tmp_path, tls_names=[HOST])
    yield served
    served.close()


def client_for(site, **options):
    return fetch.Client(ca_file=site.ca_file, connect_to={(HOST, 443): ("127.0.0.1", site.port)}, **options)


def test_a_key_from_an_https_url_and_never_from_http_without_allow_http(trusted, keys, site):
    key = keys.new("Publisher <p@example.test>")
    site.add("/release.asc", key.public_key())
    data = trust.load_key("https://%s/release.asc" % HOST, client_for(site))
    assert trusted.add(data, prefix="example.test")[0].fingerprint == key.fingerprint
    with pytest.raises(InvalidInput) as plain:
        trust.load_key("http://%s/release.asc" % HOST, client_for(site))
    assert "allow_http" in str(plain.value)
    with pytest.raises(JetpackError) as unverified:
        trust.load_key("https://%s/release.asc" % HOST, fetch.Client(connect_to=client_for(site).connect_to))
    assert "CERTIFICATE_VERIFY_FAILED" in str(unverified.value)
    with pytest.raises(InvalidInput):
        trust.load_key("relative/key.asc")


def test_a_discovered_key_is_trusted_only_when_it_has_the_pinned_fingerprint(trusted, keys, site):
    key, other = keys.new("Publisher <p@example.test>"), keys.new("Other <o@example.test>")
    site.add("/app?ac-discovery=1", discovery_page(("ac-discovery-pubkeys", "%s https://%s/pubkeys.gpg" % (HOST, HOST))))
    site.add("/pubkeys.gpg", key.public_key())
    data = discovery.discover_key(trusted, HOST + "/app", key.fingerprint, client_for(site))
    assert trusted.add(data, prefix=HOST + "/app", fingerprint=key.fingerprint)[1] == "added"
    with pytest.raises(InvalidInput) as wrong:
        discovery.discover_key(trusted, HOST + "/app", other.fingerprint, client_for(site))
    assert "pinned fingerprint %s" % other.fingerprint in str(wrong.value) and key.fingerprint in str(wrong.value)
    assert [k.fingerprint for k in trusted.keys()] == [key.fingerprint]


# --- the modules --------------------------------------------------------------------------------
@pytest.mark.ansible
def test_jetpack_trust_four_steps(zfs_pool, keys, tmp_path):
    from tests.ansible.test_modules import run_playbook
    key, other = keys.new("Playbook Publisher <playbook@example.test>"), keys.new("Other <o@example.test>")
    root = "%s/a%s" % (zfs_pool.name, uuid.uuid4().hex[:8])
    mountpoint = os.path.join(str(zfs_pool.base), root.rsplit("/", 1)[1])
    try:
        out = run_playbook("jetpack_trust.yml", dict(
            store_root=root, store_mountpoint=mountpoint, key_fingerprint=key.fingerprint,
            key_file=key.write_public_key(tmp_path / "key.asc"),
            other_key_file=other.write_public_key(tmp_path / "other.asc")))
        assert "failed=0" in out
        assert files_in(os.path.join(mountpoint, "trust")) == []
    finally:
        stop_zygote(root)
        if zfs_pool.zfs.exists(root):
            zfs_pool.zfs.destroy(root, recursive=True)
