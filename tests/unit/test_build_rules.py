"""The pure parts of builds and base images: steps, keys, tree comparison, apt sources, MANIFESTs."""
import os

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import base, build, images
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import freebsd
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import ArchiveError, InvalidInput
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, StoreConfig
from tests.helpers.samples import sample

PARENT_ID = "sha512-" + "a" * 128


def parent_image(app=None, labels=None):
    labels = labels or {"os": "linux", "arch": "amd64", "version": "1"}
    manifest = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/base",
                "labels": [{"name": k, "value": v} for k, v in sorted(labels.items())]}
    if app:
        manifest["app"] = app
    return images.Image("k" * 32, "zroot/jetpack/images/" + "k" * 32, PARENT_ID, manifest, {}, "/nonexistent")


def key_of(steps, network="host", app=None, name="example.com/child", parent=None):
    spec = build.BuildSpec(name, {"id": PARENT_ID}, steps, app=app, network=network)
    parent = parent or parent_image()
    loaded = [build.load_step(s, i) for i, s in enumerate(steps)]
    return build.build_key(parent.id, loaded, network, build.child_manifest(spec, parent))


# --- steps and keys -------------------------------------------------------------------------------
def test_a_shell_string_runs_with_the_images_own_shell_and_a_list_runs_as_is():
    assert build.load_step({"run": "make && make install"}, 0)["run"] == ["/bin/sh", "-c", "make && make install"]
    assert build.load_step({"run": ["/usr/bin/make", "-j2"]}, 0)["run"] == ["/usr/bin/make", "-j2"]


@pytest.mark.parametrize("step, words", [
    ({}, "exactly one of copy or run"),
    ({"copy": {"content": "x", "dest": "/x"}, "run": "true"}, "exactly one of copy or run"),
    ({"run": "  "}, "give a command"),
    ({"run": ["ok", 3]}, "list of strings"),
    ({"copy": {"content": "x", "dest": "/etc/"}}, "absolute path of a file"),
    ({"copy": {"content": "x", "dest": "/a/../b"}}, "'..'"),
    ({"copy": {"dest": "/x"}}, "exactly one of content and src"),
    ({"copy": {"src": "relative", "dest": "/x"}}, "absolute path on the managed host"),
    ({"copy": {"src": "/", "dest": "/x"}}, "not a regular file"),
    ({"copy": {"content": "x", "dest": "/x", "mode": "u+x"}}, "octal mode"),
])
def test_bad_steps_are_refused_with_the_field_to_fix(step, words):
    with pytest.raises(InvalidInput) as refused:
        build.load_step(step, 2)
    assert words in str(refused.value) and "build.steps[2]" in str(refused.value)


def test_the_key_is_stable_and_covers_every_input(tmp_path):
    source = tmp_path / "file"
    source.write_text("one\n")
    steps = [{"copy": {"src": str(source), "dest": "/etc/file"}}, {"run": "make"}]
    key = key_of(steps)
    assert key == key_of(steps) and len(key) == 64
    assert key != key_of(steps, network="none")
    assert key != key_of(steps + [{"run": "true"}])
    assert key != key_of([steps[1], steps[0]])
    assert key != key_of(steps, app={"exec": ["/bin/app"]})
    assert key != key_of(steps, name="example.com/other")
    assert key != key_of(steps, parent=parent_image(labels={"os": "linux", "version": "2"}))
    assert key != key_of([{"copy": dict(steps[0]["copy"], mode="0600")}, steps[1]])
    source.write_text("two\n")  # same path, new content: another build
    assert key != key_of(steps)


def test_a_copied_file_enters_the_key_by_its_hash_not_its_content():
    loaded = build.load_step({"copy": {"content": "secret\n", "dest": "/x"}}, 0)
    for_key = build.step_for_key(loaded)
    assert "data" not in for_key["copy"] and "secret" not in repr(for_key)
    assert loaded["copy"]["data"] == b"secret\n"  # the step itself still has it


def test_the_child_manifest_depends_on_its_parent_by_id_and_inherits_its_os_and_app():
    parent = parent_image(app={"exec": ["/bin/server"], "user": "www", "group": "www",
                               "environment": [{"name": "A", "value": "1"}]})
    spec = build.BuildSpec("example.com/child", {"id": PARENT_ID}, [], labels={"version": "2"},
                           app={"working_directory": "/srv", "ports": [{"name": "http", "port": 80}]})
    manifest = build.child_manifest(spec, parent)
    assert manifest["dependencies"] == [{"imageName": "example.com/base", "imageID": PARENT_ID,
                                         "labels": parent.manifest["labels"]}]
    assert manifest["labels"] == [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"},
                                  {"name": "version", "value": "2"}]
    assert manifest["app"] == {"exec": ["/bin/server"], "user": "www", "group": "www", "workingDirectory": "/srv",
                               "environment": [{"name": "A", "value": "1"}],
                               "ports": [{"name": "http", "port": 80, "protocol": "tcp"}]}


def test_a_bad_app_section_is_refused_with_its_field():
    spec = build.BuildSpec("example.com/child", {"id": PARENT_ID}, [], app={"working_directory": "relative"})
    with pytest.raises(InvalidInput) as refused:
        build.child_manifest(spec, parent_image())
    assert "app.workingDirectory" in str(refused.value)


# --- what changed -----------------------------------------------------------------------------------
def write(root, path, text, mtime=1_000_000_000):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)
    os.utime(full, (mtime, mtime))


def test_tree_changes_finds_additions_edits_deletions_and_metadata(tmp_path):
    parent, child = str(tmp_path / "parent"), str(tmp_path / "child")
    for root in (parent, child):
        write(root, "etc/same", "same\n")
        write(root, "etc/edited", "before\n")
        write(root, "etc/chmodded", "x\n")
        write(root, "gone/inside", "x\n")
        write(root, "etc/removed", "x\n")
        os.symlink("same", os.path.join(root, "etc/link"))
    write(child, "etc/edited", "after!\n")  # same size, same mtime: only the content tells
    os.chmod(os.path.join(child, "etc/chmodded"), 0o600)
    os.unlink(os.path.join(child, "etc/removed"))
    os.unlink(os.path.join(child, "gone/inside"))
    os.rmdir(os.path.join(child, "gone"))
    os.unlink(os.path.join(child, "etc/link"))
    os.symlink("edited", os.path.join(child, "etc/link"))
    write(child, "srv/new", "new\n")
    for root in (parent, child):  # directories compared by their own metadata
        for directory in ("etc", ""):
            os.utime(os.path.join(root, directory), (5, 5))
    changes = build.tree_changes(parent, child)
    assert changes.changed == ["etc/chmodded", "etc/edited", "etc/link", "srv", "srv/new"]
    assert changes.deleted == ["etc/removed", "gone/", "gone/inside"]
    assert changes.files == ["etc/chmodded", "etc/edited", "etc/link", "etc/same", "srv/new"]


def test_identical_trees_have_no_changes(tmp_path):
    for root in ("a", "b"):
        write(str(tmp_path / root), "x/y", "z\n")
        os.utime(str(tmp_path / root / "x"), (7, 7))
    assert build.tree_changes(str(tmp_path / "a"), str(tmp_path / "b")) == build.Changes([], [], ["x/y"])


# --- FreeBSD build jails ----------------------------------------------------------------------------
def test_freebsd_build_jails_run_at_securelevel_0_with_chflags_and_the_hosts_network():
    store = Store(StoreConfig("zroot/jetpack", "/var/jetpack"))
    pod = build.BuildPod(store, parent_image(), "host", freebsd.FreeBSDEngine(run=lambda argv: (0, "", "")))
    params = dict(freebsd.jail_parameters(pod.record))
    # jail(8) securelevel: 0 lets installers change file flags; allow.chflags: jailed root may
    # then set and clear system flags (schg), as base.txz and pkg(8) installs need.
    assert params["securelevel"] == "0" and params["allow.chflags"] is True
    # jail(8) ip4/ip6 "inherit": the build's run steps use the host's addresses (network: host).
    assert params["ip4"] == "inherit" and params["ip6"] == "inherit"
    isolated = build.BuildPod(store, parent_image(), "none", freebsd.FreeBSDEngine(run=lambda argv: (0, "", "")))
    assert dict(freebsd.jail_parameters(isolated.record))["ip4"] == "disable"


# --- base images ----------------------------------------------------------------------------------
def test_a_real_release_manifest_is_parsed():
    _header, body = sample("MANIFEST-base-1")
    entries = base.parse_release_manifest(body)
    assert entries["base.txz"] == {"sha256": "e3971a3d4f36ed1ac67d2e7a5501726de79dd3695aa76bfad2a4ebe91a88a134",
                                   "entries": 29862, "distribution": "base",
                                   "description": "Base system (MANDATORY)", "default": True}
    assert entries["src.txz"]["default"] is False
    _header, older = sample("MANIFEST-base-2")
    assert base.release_manifest_entry(older, "base.txz")["sha256"].startswith("3a9250f7")


def test_a_base_txz_whose_sha256_is_not_the_manifests_is_refused(tmp_path):
    _header, body = sample("MANIFEST-base-1")
    fake = tmp_path / "base.txz"
    fake.write_bytes(b"not the release's base.txz")
    with pytest.raises(ArchiveError) as refused:
        base.verify_distribution(str(fake), body)
    assert "e3971a3d4f36" in str(refused.value) and "download it again" in str(refused.value)


def test_a_malformed_manifest_or_a_missing_archive_is_refused():
    _header, body = sample("MANIFEST-base-1")
    with pytest.raises(InvalidInput) as missing:
        base.release_manifest_entry(body, "lib64.txz")
    assert "lists no lib64.txz" in str(missing.value)
    with pytest.raises(InvalidInput) as malformed:
        base.parse_release_manifest(body.replace("\t", " ", 1))
    assert "line 1" in str(malformed.value)


def test_the_mirror_comes_from_the_hosts_apt_sources(tmp_path):
    (tmp_path / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://archive.example.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.example.org/debian-security\n"
        "Suites: bookworm-security\n\nTypes: deb-src\nURIs: http://src.example.org/debian\nSuites: trixie\n")
    (tmp_path / "old.list").write_text("# deb http://commented.example.org/debian trixie main\n"
                                       "deb [arch=amd64] http://list.example.org/debian sid main\n")
    patterns = [str(tmp_path / "*.list"), str(tmp_path / "*.sources")]
    assert base.host_mirror("bookworm", patterns) == "http://archive.example.org/debian"
    assert base.host_mirror("sid", patterns) == "http://list.example.org/debian"
    assert base.host_mirror("trixie", patterns) == "http://list.example.org/debian"  # no trixie: the plain archive
    with pytest.raises(Exception) as none:
        base.host_mirror("bookworm", [str(tmp_path / "nothing-*")])
    assert "give base.debootstrap.mirror" in str(none.value)


def test_debootstrap_argv_and_options():
    options = base.debootstrap_options({"suite": "bookworm", "include": ["ca-certificates", "curl"]})
    assert base.argv_debootstrap(options, "/work/rootfs", "http://archive.example.org/debian") == [
        "debootstrap", "--variant=minbase", "--include=ca-certificates,curl", "bookworm", "/work/rootfs",
        "http://archive.example.org/debian"]
    for bad in ({"suite": "--foreign"}, {"suite": "bookworm", "include": ["-x"]},
                {"suite": "bookworm", "mirror": "ftp://x"}, {"suite": "bookworm", "variant": "full"}):
        with pytest.raises(InvalidInput):
            base.debootstrap_options(bad)
