"""Discovery, trust and fetch logic that needs no server, key or pool: templates, pages, label
checks, gpg output parsing (outputs recorded from gpg 2.2.40) and scratch directories."""
import fcntl
import os

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import discovery, fetch, trust
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput, JetpackError

FPR = "21AFCDCF57C33FF84BEBC9BF1F2877D49572A028"
HTTPS = fetch.Client()
HTTP = fetch.Client(allow_http=True)


# --- names, templates, pages --------------------------------------------------------------------
def test_ancestors_and_pages_walk_up_the_name_https_first():
    assert discovery.ancestors("a.com/x/y") == ["a.com/x/y", "a.com/x", "a.com"]
    assert discovery.page_urls("a.com/x", allow_http=False) == [["https://a.com/x?ac-discovery=1"],
                                                                ["https://a.com?ac-discovery=1"]]
    assert discovery.page_urls("a.com", allow_http=True) == [["https://a.com?ac-discovery=1",
                                                             "http://a.com?ac-discovery=1"]]


def test_template_labels_default_version_and_the_hosts_os_arch_and_asked_ones_win():
    host = {"os": "linux", "arch": "amd64"}
    assert discovery.template_labels({}, host) == {"version": "latest", "os": "linux", "arch": "amd64"}
    assert discovery.template_labels({"version": "1.0", "os": "freebsd", "tier": "db"}, host) == \
        {"version": "1.0", "os": "freebsd", "arch": "amd64", "tier": "db"}


def test_expand_fills_every_variable_quotes_label_values_and_skips_unknown_ones():
    labels = {"version": "1.0+build/2", "os": "linux", "arch": "amd64"}
    assert discovery.expand("https://h/{name}-{version}-{os}-{arch}.{ext}", "h/app", labels, "aci") == \
        "https://h/h/app-1.0%2Bbuild%2F2-linux-amd64.aci"
    assert discovery.expand("https://h/{name}.{ext}", "h/app", labels, "aci.asc") == "https://h/h/app.aci.asc"
    assert discovery.expand("https://h/{name}-{channel}.{ext}", "h/app", labels, "aci") is None


def test_meta_tags_are_read_whatever_the_attribute_order_and_case():
    page = """<html><head><META content="a.com https://a.com/{name}.{ext}" NAME="ac-discovery">
      <meta name="description" content="not ours"><link rel="x" href="y">
      <meta name="AC-Discovery-Pubkeys" content="  a.com   https://a.com/keys.asc ">
    </head><body><meta name="ac-discovery" content="late a.com/x"></body></html>"""
    assert discovery.meta_tags(page) == [
        ("ac-discovery", "a.com https://a.com/{name}.{ext}"), ("description", "not ours"),
        ("ac-discovery-pubkeys", "  a.com   https://a.com/keys.asc "), ("ac-discovery", "late a.com/x")]


def test_only_tags_whose_prefix_starts_the_name_count():
    tags = [("ac-discovery", "a.com/app https://a.com/1/{name}.{ext}"),
            ("ac-discovery", "a.com/other https://a.com/2/{name}.{ext}"),
            ("ac-discovery", "a.com https://a.com/3/{name}.{ext} extra-field"),
            ("ac-discovery", "a.com"),
            ("ac-discovery-pubkeys", "a.com https://a.com/keys.asc")]
    assert discovery.prefixed(tags, "ac-discovery", "a.com/app") == ["https://a.com/1/{name}.{ext}"]
    assert discovery.prefixed(tags, "ac-discovery-pubkeys", "a.com/app") == ["https://a.com/keys.asc"]


def test_endpoints_skip_templates_without_ext_unresolved_or_plain_http_unless_allowed():
    tags = [("ac-discovery", "a.com https://a.com/{name}.aci"),
            ("ac-discovery", "a.com https://a.com/{name}-{channel}.{ext}"),
            ("ac-discovery", "a.com http://a.com/{name}-{version}.{ext}"),
            ("ac-discovery", "a.com https://a.com/{name}-{version}.{ext}"),
            ("ac-discovery-pubkeys", "a.com http://a.com/keys.asc")]
    labels = {"version": "1.0"}
    found = discovery.endpoints_in(tags, "a.com/app", labels, HTTPS, "page")
    assert found.archives == [("https://a.com/a.com/app-1.0.aci", "https://a.com/a.com/app-1.0.aci.asc")]
    assert found.pubkeys == []
    found = discovery.endpoints_in(tags, "a.com/app", labels, HTTP, "page")
    assert [aci for aci, _asc in found.archives] == ["http://a.com/a.com/app-1.0.aci", "https://a.com/a.com/app-1.0.aci"]
    assert found.pubkeys == ["http://a.com/keys.asc"]


def test_the_manifest_must_hold_the_name_the_asked_labels_and_no_other_os():
    host = {"os": "linux", "arch": "amd64"}
    image = {"name": "a.com/app", "labels": [{"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"}]}
    discovery.check_manifest(image, "a.com/app", {"version": "1.0"}, host)
    discovery.check_manifest({"name": "a.com/app"}, "a.com/app", {}, host)  # os/arch independent
    with pytest.raises(InvalidInput) as name:
        discovery.check_manifest(image, "a.com/other", {}, host)
    assert name.value.field == "name"
    with pytest.raises(InvalidInput) as version:
        discovery.check_manifest(image, "a.com/app", {"version": "2.0"}, host)
    assert version.value.field == "labels"
    with pytest.raises(InvalidInput) as other_os:
        discovery.check_manifest(image, "a.com/app", {}, {"os": "freebsd", "arch": "amd64"})
    assert "os=freebsd" in str(other_os.value)


# --- trust: names, fingerprints, gpg output -----------------------------------------------------
def test_fingerprints_are_normalised_and_short_ids_refused():
    spaced = "21af cdcf 57c3 3ff8 4beb  c9bf 1f28 77d4 9572 a028"
    assert trust.normalize_fingerprint(spaced) == FPR
    assert trust.normalize_fingerprint("0x" + FPR.lower()) == FPR
    for bad in ("1F2877D49572A028", FPR + "0", FPR[:-1] + "G"):
        with pytest.raises(InvalidInput):
            trust.normalize_fingerprint(bad)


def test_a_prefix_covers_whole_name_components_only():
    assert trust.covers("a.com", "a.com") and trust.covers("a.com", "a.com/app") and trust.covers(None, "b.org/x")
    assert not trust.covers("a.com", "a.com.evil.net/app") and not trust.covers("a.com/app", "a.com/application")


def test_scope_is_a_prefix_or_root_never_both_or_neither():
    assert trust.check_scope("a.com/app", False) == "a.com/app"
    assert trust.check_scope(None, True) is None
    for prefix, root in ((None, False), ("a.com", True), ("A.com", False)):
        with pytest.raises(InvalidInput):
            trust.check_scope(prefix, root)


# Recorded: gpg --with-colons --import-options show-only --import (a key, then the same key revoked).
LISTING = """pub:-:255:22:1F2877D49572A028:1796011038:::-:::scSC:::::ed25519:::0:
fpr:::::::::21AFCDCF57C33FF84BEBC9BF1F2877D49572A028:
uid:-::::1796011038::41A08D676B21CE017559E8D72B380B2590634B88::Test One <one@example.test>::::::::::0:
pub:r:255:22:FAFFE65927967F22:1796011179:::-:::sc:::::ed25519:::0:
fpr:::::::::EF2CBBB67CBD45E807509892FAFFE65927967F22:
uid:r::::1796011179::38B3AE6691CA6C8D16DC0908C6BC7498591F7AD5::Rev \\x3a colon <r@x.test>::::::::::0:
"""
# Recorded: gpg --status-fd 1 --verify, a good signature, the same after the data changed, and by a revoked key.
GOOD = """[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED 21AFCDCF57C33FF84BEBC9BF1F2877D49572A028 0
[GNUPG:] SIG_ID km2WnE11mgnjXc0k21z0d3nENG0 2026-11-30 1796011038
[GNUPG:] GOODSIG 1F2877D49572A028 Test One <one@example.test>
[GNUPG:] VALIDSIG 21AFCDCF57C33FF84BEBC9BF1F2877D49572A028 2026-11-30 1796011038 0 4 0 22 8 00 \
21AFCDCF57C33FF84BEBC9BF1F2877D49572A028
"""
BAD = """[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED 21AFCDCF57C33FF84BEBC9BF1F2877D49572A028 0
[GNUPG:] BADSIG 1F2877D49572A028 Test One <one@example.test>
[GNUPG:] FAILURE gpg-exit 33554433
"""
REVOKED = """[GNUPG:] NEWSIG
[GNUPG:] REVKEYSIG FAFFE65927967F22 Rev <r@x.test>
[GNUPG:] VALIDSIG EF2CBBB67CBD45E807509892FAFFE65927967F22 2026-11-30 1796011179 0 4 0 22 8 00 \
EF2CBBB67CBD45E807509892FAFFE65927967F22
"""


def test_key_listing_gives_fingerprint_user_ids_and_validity():
    assert trust.parse_key_listing(LISTING) == [
        trust.ListedKey(FPR, ["Test One <one@example.test>"], "-"),
        trust.ListedKey("EF2CBBB67CBD45E807509892FAFFE65927967F22", ["Rev : colon <r@x.test>"], "r")]


def test_a_signature_counts_only_when_good_valid_and_by_a_trusted_key():
    assert trust.signer_of(trust.parse_status(GOOD), {FPR}, "a.com/app") == FPR
    with pytest.raises(JetpackError, match="not trusted"):
        trust.signer_of(trust.parse_status(GOOD), {"EF2CBBB67CBD45E807509892FAFFE65927967F22"}, "a.com/app")
    with pytest.raises(JetpackError, match="BADSIG"):
        trust.signer_of(trust.parse_status(BAD), {FPR}, "a.com/app")
    with pytest.raises(JetpackError, match="REVKEYSIG"):
        trust.signer_of(trust.parse_status(REVOKED), {"EF2CBBB67CBD45E807509892FAFFE65927967F22"}, "a.com/app")
    with pytest.raises(JetpackError, match="no good signature"):
        trust.signer_of(trust.parse_status(""), {FPR}, "a.com/app")
    # A second signature in the file that is not good refuses the whole file.
    with pytest.raises(JetpackError):
        trust.signer_of(trust.parse_status(GOOD + "[GNUPG:] NEWSIG\n"), {FPR}, "a.com/app")


def test_only_one_armoured_detached_signature_is_accepted(tmp_path):
    good = tmp_path / "good.asc"
    good.write_bytes(b"\n-----BEGIN PGP SIGNATURE-----\n\niHUEABYKAB0WIQQ=\n-----END PGP SIGNATURE-----\n")
    trust.check_signature_file(str(good))
    for content in (b"-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n",
                    good.read_bytes() * 2, b"\x88\x75binary signature"):
        bad = tmp_path / "bad.asc"
        bad.write_bytes(content)
        with pytest.raises(JetpackError, match="not one ASCII-armoured detached"):
            trust.check_signature_file(str(bad))


# --- fetch: clients, progress, scratch space ----------------------------------------------------
def test_a_client_fetches_https_and_http_only_when_allowed():
    HTTPS.check_url("https://a.com/x.aci")
    HTTP.check_url("http://a.com/x.aci")
    with pytest.raises(InvalidInput, match="allow_http"):
        HTTPS.check_url("http://a.com/x.aci")
    for url in ("file:///etc/passwd", "ftp://a.com/x.aci", "/etc/passwd"):
        with pytest.raises(InvalidInput, match="not an https URL"):
            HTTP.check_url(url)


def test_progress_text():
    assert fetch.progress_text("https://a.com/x/app.aci", 3 << 20, 12 << 20) == "app.aci  3.0 MiB of 12.0 MiB (25%)"
    assert fetch.progress_text("https://a.com/x/app.aci", 1 << 19, None) == "app.aci  0.5 MiB"


def test_a_scratch_directory_is_removed_after_use_and_one_a_crash_left_by_the_next_user(tmp_path):
    parent = str(tmp_path)
    with fetch.scratch_directory(parent) as scratch:
        assert os.path.isdir(scratch)
        with fetch.scratch_directory(parent) as other:  # a second user leaves the first alone
            assert os.path.isdir(scratch) and other != scratch
    assert os.listdir(parent) == []
    crashed = tmp_path / "fetch-crashed"
    crashed.mkdir()
    (crashed / fetch.SCRATCH_LOCK).write_bytes(b"")
    (crashed / "download-1.aci").write_bytes(b"partial")
    empty = tmp_path / "fetch-empty"
    empty.mkdir()
    unrelated = tmp_path / "other-file"
    unrelated.write_bytes(b"")
    live = tmp_path / "fetch-live"
    live.mkdir()
    (live / fetch.SCRATCH_LOCK).write_bytes(b"")
    fd = os.open(str(live / fetch.SCRATCH_LOCK), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert sorted(fetch.remove_abandoned(parent, "fetch-")) == [str(crashed), str(empty)]
    finally:
        os.close(fd)
    assert sorted(os.listdir(parent)) == ["fetch-live", "other-file"]
