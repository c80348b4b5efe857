"""aci.py: compression, image IDs, hardened extraction, layering, whitelists, writing.

Archives are built at test time (tarfile headers, GNU tar, the compressors' modules); hostile
ones come from hostile_archives.py. Runs as root (ownership checks skip otherwise), no ZFS.
"""
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import resource
import shutil
import stat
import subprocess
import tarfile

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import aci
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    ArchiveError, InvalidInput)
from tests.unit import hostile_archives as hostile
from tests.unit.hostile_archives import directory, hardlink, member, symlink, tar

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="ownership needs root")
COMPRESS = {
    "none": lambda data: data,
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "bzip2": bz2.compress,
    "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ),
}
MANIFEST = hostile.manifest_json()


def sample_tar(*extra):
    return tar(hostile.member("manifest", data=MANIFEST), directory("rootfs", mode=0o755),
               directory("rootfs/etc"), member("rootfs/etc/hostname", data=b"pod\n"),
               member("rootfs/bin/tool", data=os.urandom(300000), mode=0o755), *extra)


def write(path, data, compression="none"):
    path.write_bytes(COMPRESS[compression](data))
    return str(path)


def sha512_id(data):
    return "sha512-" + hashlib.sha512(data).hexdigest()


class Prepare:
    """A prepare() callback recording its calls."""

    def __init__(self, dest):
        self.dest = str(dest)
        self.manifests = []

    def __call__(self, manifest):
        self.manifests.append(manifest)
        return self.dest


def extract(archive, dest, **options):
    prepare = Prepare(dest)
    result = aci.extract(str(archive), prepare, **options)
    assert len(prepare.manifests) == 1
    return result


def xattrs_supported(path):
    try:
        os.setxattr(str(path), "user.jetpack-probe", b"1")
    except OSError:
        return False
    os.removexattr(str(path), "user.jetpack-probe")
    return True


# ---------------------------------------------------------------- compression and IDs

@pytest.mark.parametrize("head, expected", [
    (b"\x1f\x8b\x08\x00" + bytes(600), "gzip"),
    (b"BZh91AY&SY" + bytes(600), "bzip2"),
    (b"\xfd7zXZ\x00" + bytes(600), "xz"),
    (member("manifest", data=b"{}"), "none"),
    (bytes(1024), "none"),
])
def test_detect_compression(head, expected):
    assert aci.detect_compression(head) == expected


@pytest.mark.parametrize("head, message", [
    (b"\x28\xb5\x2f\xfd" + bytes(600), "zstd-compressed"),
    (b"PK\x03\x04" + bytes(600), "a zip file"),
    (b"hello world" * 100, "not an ACI"),
    (b"", "empty"),
])
def test_detect_compression_refuses(head, message):
    with pytest.raises(ArchiveError, match=message):
        aci.detect_compression(head)


def test_every_compression_gives_the_same_id_the_sha512_of_the_uncompressed_tar(tmp_path):
    data = sample_tar()
    ids = set()
    for compression in COMPRESS:
        archive = write(tmp_path / ("a-" + compression), data, compression)
        result = extract(archive, tmp_path / ("dest-" + compression))
        assert result.compression == compression
        assert aci.compute_image_id(archive) == result.image_id
        assert aci.read_manifest(archive)[2] == result.image_id
        ids.add(result.image_id)
    assert ids == {sha512_id(data)}


def test_id_equals_sha512sum_of_the_decompressed_gnu_tar(tmp_path):
    tree = tmp_path / "tree"
    (tree / "rootfs" / "usr").mkdir(parents=True)
    (tree / "rootfs" / "usr" / "data").write_bytes(os.urandom(100000))
    (tree / "manifest").write_bytes(MANIFEST)
    archive = tmp_path / "image.aci"
    subprocess.run(["tar", "-C", str(tree), "-czf", str(archive), "manifest", "rootfs"], check=True)
    plain = tmp_path / "image.tar"
    with open(plain, "wb") as out:
        subprocess.run(["gzip", "-dc", str(archive)], stdout=out, check=True)
    digest = subprocess.run(["sha512sum", str(plain)], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    assert extract(archive, tmp_path / "dest").image_id == "sha512-" + digest
    assert aci.compute_image_id(str(archive)) == "sha512-" + digest


def test_id_covers_padding_after_the_end_of_archive_marker(tmp_path):
    data = sample_tar() + bytes(8192)
    archive = write(tmp_path / "padded.aci", data, "gzip")
    assert extract(archive, tmp_path / "dest").image_id == sha512_id(data)


def test_concatenated_gzip_members_are_one_stream(tmp_path):
    data = sample_tar()
    archive = tmp_path / "pigz.aci"
    archive.write_bytes(gzip.compress(data[:5000], mtime=0) + gzip.compress(data[5000:], mtime=0)
                        + bytes(512))
    assert extract(archive, tmp_path / "dest").image_id == sha512_id(data)


def test_open_uncompressed_streams_and_hashes(tmp_path):
    data = sample_tar()
    path = write(tmp_path / "a.aci", data, "xz")
    with open(path, "rb") as f:
        stream = aci.open_uncompressed(f)
        head = stream.read(1000)
        rest = stream.read()
        assert head + rest == data
        assert stream.image_id() == sha512_id(data)
        assert stream.compression == "xz"


def test_read_manifest_returns_the_exact_bytes(tmp_path):
    raw = b'{"acKind":"ImageManifest", "acVersion":"0.8.11",\n "name":"example.com/raw"}'
    data = tar(member("manifest", data=raw), directory("rootfs"))
    manifest, manifest_bytes, image_id = aci.read_manifest(write(tmp_path / "a.aci", data))
    assert manifest["name"] == "example.com/raw"
    assert manifest_bytes == raw
    assert image_id == sha512_id(data)


def test_expected_id_accepted_and_malformed_expected_id_refused(tmp_path):
    data = sample_tar()
    archive = write(tmp_path / "a.aci", data)
    result = extract(archive, tmp_path / "d1", expected_id=sha512_id(data))
    assert result.image_id == sha512_id(data)
    with pytest.raises(InvalidInput, match="expected_id"):
        aci.extract(archive, Prepare(tmp_path / "d2"), expected_id="md5-abc")


def test_limits_are_inclusive(tmp_path):
    data = sample_tar()
    archive = write(tmp_path / "a.aci", data)
    limits = aci.Limits(max_bytes=len(data), max_entries=5, max_manifest_bytes=len(MANIFEST))
    assert extract(archive, tmp_path / "dest", limits=limits).entries == 5
    with pytest.raises(ArchiveError, match="larger than the limit"):
        extract(archive, tmp_path / "dest2", limits=aci.Limits(max_bytes=len(data) - 1))


# ---------------------------------------------------------------- extraction

def test_extract_keeps_types_and_metadata(tmp_path):
    data = tar(
        member("manifest", data=MANIFEST),
        member("rootfs", tarfile.DIRTYPE, mode=0o751, mtime=1_200_000_000),
        member("rootfs/ro", tarfile.DIRTYPE, mode=0o555, mtime=1_300_000_000),
        member("rootfs/ro/file", data=b"data", mode=0o640, uid=1234, gid=5678, mtime=1_400_000_000),
        member("rootfs/empty", data=b"", mode=0o600),
        symlink("rootfs/link", "ro/file"),
        hardlink("rootfs/ro/hard", "rootfs/ro/file"),
        member("rootfs/pipe", tarfile.FIFOTYPE, mode=0o620),
        member("rootfs/implicit/parent/file", data=b"x"),
        member("rootfs/float-mtime", data=b"f", pax={"mtime": "1500000000.5"}),
    )
    dest = tmp_path / "dest"
    result = extract(write(tmp_path / "a.aci", data), dest)
    assert result.entries == 10 and result.size == 6
    assert stat.S_IMODE(dest.stat().st_mode) == 0o751 and dest.stat().st_mtime == 1_200_000_000
    ro = dest / "ro"
    assert stat.S_IMODE(ro.stat().st_mode) == 0o555 and ro.stat().st_mtime == 1_300_000_000
    st = (ro / "file").stat()
    assert (ro / "file").read_bytes() == b"data" and stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime == 1_400_000_000 and st.st_nlink == 2
    assert (ro / "hard").stat().st_ino == st.st_ino
    if ROOT:
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert os.readlink(dest / "link") == "ro/file"
    assert stat.S_ISFIFO((dest / "pipe").lstat().st_mode)
    assert stat.S_IMODE((dest / "pipe").lstat().st_mode) == 0o620
    assert (dest / "implicit" / "parent" / "file").read_bytes() == b"x"
    assert stat.S_IMODE((dest / "implicit").stat().st_mode) == 0o755
    assert (dest / "float-mtime").stat().st_mtime_ns == 1_500_000_000_500_000_000


@needs_root
def test_owners_are_right_below_a_setgid_parent_directory(tmp_path):
    dest = tmp_path / "dest"
    (dest / "shared").mkdir(parents=True)
    os.chown(dest / "shared", 0, 50)
    os.chmod(dest / "shared", 0o2775)   # files created in it get group 50
    data = tar(member("manifest", data=MANIFEST), member("rootfs/shared/a", data=b"a"),
               member("rootfs/shared/b", data=b"b", gid=50), member("rootfs/shared/c", data=b"c"),
               symlink("rootfs/shared/l", "a"))
    extract(write(tmp_path / "a.aci", data), dest)
    stats = {name: os.lstat(dest / "shared" / name) for name in "abcl"}
    owners = {name: (st.st_uid, st.st_gid) for name, st in stats.items()}
    assert owners == {"a": (0, 0), "b": (0, 50), "c": (0, 0), "l": (0, 0)}


def test_extract_keeps_xattrs_from_pax_headers(tmp_path):
    if not xattrs_supported(tmp_path):
        pytest.skip("this filesystem has no user xattrs")
    data = tar(member("manifest", data=MANIFEST), directory("rootfs"),
               member("rootfs/f", data=b"x", pax={"SCHILY.xattr.user.note": "hello",
                                                  "SCHILY.xattr.user.bin": "\udcff\x01"}))
    dest = tmp_path / "dest"
    extract(write(tmp_path / "a.aci", data), dest)
    assert os.getxattr(dest / "f", "user.note") == b"hello"
    assert os.getxattr(dest / "f", "user.bin") == b"\xff\x01"


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_setuid_and_setgid_are_cleared_unless_allowed(tmp_path):
    data = tar(member("manifest", data=MANIFEST), directory("rootfs"),
               member("rootfs/su", data=b"x", mode=0o4755),
               member("rootfs/sg", data=b"x", mode=0o2755),
               member("rootfs/shared", tarfile.DIRTYPE, mode=0o2775))
    archive = write(tmp_path / "a.aci", data)
    strict, allowed = tmp_path / "strict", tmp_path / "allowed"
    extract(archive, strict)
    extract(archive, allowed, allow_setuid=True)
    assert mode(strict / "su") == 0o755 and mode(strict / "sg") == 0o755
    assert mode(strict / "shared") == 0o2775
    assert mode(allowed / "su") == 0o4755 and mode(allowed / "sg") == 0o2755


def test_file_capabilities_count_as_setuid(tmp_path):
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    capability = b"\x01\x00\x00\x02\x00\x04\x00\x00" + bytes(12)  # cap_net_bind_service
    try:
        os.setxattr(probe, "security.capability", capability)
    except OSError:
        pytest.skip("cannot set security.capability here")
    pax = {"SCHILY.xattr.security.capability": capability.decode("utf-8", "surrogateescape")}
    data = tar(member("manifest", data=MANIFEST), directory("rootfs"),
               member("rootfs/ping", data=b"x", mode=0o755, pax=pax))
    archive = write(tmp_path / "a.aci", data)
    extract(archive, tmp_path / "strict")
    extract(archive, tmp_path / "allowed", allow_setuid=True)
    assert "security.capability" not in os.listxattr(tmp_path / "strict" / "ping")
    assert os.getxattr(tmp_path / "allowed" / "ping", "security.capability") == capability


def test_manifest_last_is_extracted_in_two_passes(tmp_path, monkeypatch):
    readers = []
    original = aci._ArchiveReader

    def counting_reader(*args, **kwargs):
        readers.append(args[0])
        return original(*args, **kwargs)
    monkeypatch.setattr(aci, "_ArchiveReader", counting_reader)
    data = tar(directory("rootfs"), member("rootfs/f", data=b"content"),
               member("manifest", data=MANIFEST))
    archive = write(tmp_path / "last.aci", data, "gzip")
    copy = tmp_path / "copy.aci"
    result = extract(archive, tmp_path / "dest", copy_to=str(copy))
    assert len(readers) == 2
    assert (tmp_path / "dest" / "f").read_bytes() == b"content"
    assert result.manifest["name"] == "example.com/hostile" and result.manifest_bytes == MANIFEST
    assert result.image_id == sha512_id(data)
    assert copy.read_bytes() == (tmp_path / "last.aci").read_bytes()


def test_dot_slash_archive_from_gnu_tar_is_read_once(tmp_path, monkeypatch):
    readers = []
    original = aci._ArchiveReader
    monkeypatch.setattr(aci, "_ArchiveReader",
                        lambda *a, **k: readers.append(a) or original(*a, **k))
    tree = tmp_path / "tree"
    (tree / "rootfs" / "etc").mkdir(parents=True)
    (tree / "rootfs" / "etc" / "motd").write_text("hi\n")
    (tree / "manifest").write_bytes(MANIFEST)
    archive = tmp_path / "dot.aci"
    subprocess.run(["tar", "-C", str(tree), "-cf", str(archive), "./manifest", "./rootfs"],
                   check=True)
    extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "etc" / "motd").read_text() == "hi\n"
    assert len(readers) == 1


def test_root_entry_before_the_manifest_still_reads_once(tmp_path, monkeypatch):
    readers = []
    original = aci._ArchiveReader
    monkeypatch.setattr(aci, "_ArchiveReader",
                        lambda *a, **k: readers.append(a) or original(*a, **k))
    data = tar(member(".", tarfile.DIRTYPE, mode=0o700), member("./manifest", data=MANIFEST),
               member("./rootfs", tarfile.DIRTYPE, mode=0o755), member("./rootfs/x", data=b"x"))
    dest = tmp_path / "dest"
    extract(write(tmp_path / "a.aci", data, "xz"), dest)
    assert len(readers) == 1
    assert (dest / "x").read_bytes() == b"x" and mode(dest) == 0o755


def test_copy_to_is_byte_identical(tmp_path):
    archive = write(tmp_path / "a.aci", sample_tar(), "bzip2")
    copy = tmp_path / "kept.aci"
    extract(archive, tmp_path / "dest", copy_to=str(copy))
    assert copy.read_bytes() == (tmp_path / "a.aci").read_bytes()


@pytest.mark.parametrize("data, options, match", [
    (sample_tar(symlink("rootfs/x", "../../etc")), {}, "leaves the rootfs"),
    (sample_tar(), {"expected_id": "sha512-" + "1" * 128}, "not the expected"),
    (sample_tar()[:-5000], {}, "truncated"),
], ids=["refused-member", "wrong-id", "truncated"])
def test_copy_to_is_removed_on_error(tmp_path, data, options, match):
    archive = write(tmp_path / "a.aci", data, "gzip")
    copy = tmp_path / "kept.aci"
    with pytest.raises(ArchiveError, match=match):
        extract(archive, tmp_path / "dest", copy_to=str(copy), **options)
    assert not copy.exists()
    assert sorted(os.listdir(tmp_path)) == ["a.aci", "dest"]


def test_prepare_is_not_called_for_an_archive_without_manifest(tmp_path):
    prepare = Prepare(tmp_path / "dest")
    with pytest.raises(ArchiveError, match="no manifest"):
        aci.extract(write(tmp_path / "a.aci", tar(directory("rootfs"))), prepare)
    assert prepare.manifests == []


def test_non_utf8_names_are_extracted_byte_for_byte(tmp_path):
    data = tar(member("manifest", data=MANIFEST), directory("rootfs"),
               member(os.fsdecode(b"rootfs/caf\xe9"), data=b"latin-1 name"))
    dest = tmp_path / "dest"
    extract(write(tmp_path / "a.aci", data), dest)
    assert os.listdir(os.fsencode(dest)) == [b"caf\xe9"]


@pytest.mark.skipif(not shutil.which("tar"), reason="GNU tar needed")
def test_gnu_sparse_members_are_expanded(tmp_path):
    tree = tmp_path / "tree"
    (tree / "rootfs").mkdir(parents=True)
    (tree / "manifest").write_bytes(MANIFEST)
    with open(tree / "rootfs" / "sparse", "wb") as f:
        f.seek(3 << 20)
        f.write(b"end")
    archive = tmp_path / "sparse.aci"
    subprocess.run(["tar", "-C", str(tree), "--sparse", "--format=pax", "-cf", str(archive),
                    "manifest", "rootfs"], check=True)
    dest = tmp_path / "dest"
    extract(archive, dest)
    content = (dest / "sparse").read_bytes()
    assert len(content) == (3 << 20) + 3 and content.endswith(b"end")
    assert not content[:-3].strip(b"\0")


# ---------------------------------------------------------------- layering

def test_layering_over_a_parent_tree(tmp_path):
    layout = hostile.Layout.create(tmp_path)
    dest = layout.dest
    (dest / "bin").mkdir()
    (dest / "bin" / "old").write_text("old")
    os.symlink(str(layout.canary), dest / "lib")        # parent: lib is a symlink
    (dest / "etc").mkdir()
    (dest / "etc" / "conf").write_text("a file")        # parent: file where a dir comes
    os.symlink(str(layout.canary / "keep"), dest / "etc" / "passwd")
    (dest / "kept").write_text("from the parent")
    (dest / "over").write_text("old content")
    os.link(dest / "over", dest / "over-link")
    data = tar(member("manifest", data=MANIFEST), directory("rootfs"),
               member("rootfs/bin", data=b"now a file"),
               directory("rootfs/lib"), member("rootfs/lib/keep", data=b"not the canary"),
               directory("rootfs/etc/conf"), member("rootfs/etc/conf/x", data=b"x"),
               member("rootfs/etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
               member("rootfs/over", data=b"new content"))
    archive = write(layout.archive, data)
    before = hostile.snapshot(tmp_path, exclude=[dest])
    extract(archive, dest)
    assert (dest / "bin").read_bytes() == b"now a file"
    assert not (dest / "lib").is_symlink()
    assert (dest / "lib" / "keep").read_bytes() == b"not the canary"
    assert (dest / "etc" / "conf" / "x").read_bytes() == b"x"
    assert not (dest / "etc" / "passwd").is_symlink()
    assert (dest / "kept").read_text() == "from the parent"
    assert (dest / "over").read_bytes() == b"new content"
    assert (dest / "over-link").read_text() == "old content"   # unlinked first, not truncated
    assert hostile.snapshot(tmp_path, exclude=[dest]) == before


@pytest.fixture
def open_files_2000():
    """Enough fds for one per level of a 1500-deep tree; restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000:
        if hard != resource.RLIM_INFINITY and hard < 2000:
            pytest.skip("needs 2000 open files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (2000, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("open_files_2000")
def test_a_file_replaces_a_very_deep_parent_directory(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    fd = os.open(dest, os.O_RDONLY)
    for _level in range(1500):  # deeper than Python's recursion limit
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("leaf", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)
    data = tar(member("manifest", data=MANIFEST), directory("rootfs"),
               member("rootfs/d", data=b"f"))
    try:
        extract(write(tmp_path / "a.aci", data), dest)
        assert (dest / "d").read_bytes() == b"f"
    finally:
        # pytest's own cleanup of tmp_path recurses per level: leave it a shallow tree.
        subprocess.run(["rm", "-rf", str(dest)], check=True)


# ---------------------------------------------------------------- hostile archives

@pytest.mark.parametrize("case", hostile.CASES, ids=[case.id for case in hostile.CASES])
def test_hostile_archive_is_refused_and_nothing_outside_dest_changes(case, tmp_path):
    layout = hostile.Layout.create(tmp_path)
    layout.archive.write_bytes(case.build(layout))
    copy = layout.copies / "copy.aci"
    before = hostile.snapshot(tmp_path, exclude=[layout.dest, layout.copies])
    assert not any(os.path.lexists(path) for path in case.host_paths)

    def prepare(manifest):
        if case.parent_tree:
            case.parent_tree(layout)
        return str(layout.dest)
    try:
        with pytest.raises(case.error) as raised:
            aci.extract(str(layout.archive), prepare, limits=case.limits or aci.Limits(),
                        expected_id=case.expected_id, copy_to=str(copy))
        assert case.match in str(raised.value)
        assert hostile.snapshot(tmp_path, exclude=[layout.dest, layout.copies]) == before
        assert os.listdir(layout.copies) == []
        assert not any(os.path.lexists(path) for path in case.host_paths)
    finally:
        for path in case.host_paths:
            if os.path.lexists(path):
                os.unlink(path)


def test_the_corpus_is_large_enough():
    assert len(hostile.CASES) >= 35
    assert len({case.id for case in hostile.CASES}) == len(hostile.CASES)


@pytest.mark.parametrize("case_id", ["relative-symlink-escape", "hardlink-to-etc-shadow",
                                     "duplicate-file", "symlink-then-write-through-it-to-canary"])
@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz"])
def test_hostile_archives_are_refused_compressed_too(case_id, compression, tmp_path):
    case = next(case for case in hostile.CASES if case.id == case_id)
    layout = hostile.Layout.create(tmp_path)
    write(layout.archive, case.build(layout), compression)
    before = hostile.snapshot(tmp_path, exclude=[layout.dest])
    with pytest.raises(ArchiveError, match="refused"):
        aci.extract(str(layout.archive), Prepare(layout.dest))
    assert hostile.snapshot(tmp_path, exclude=[layout.dest]) == before


def test_snapshot_detects_a_write_outside_dest(tmp_path):
    layout = hostile.Layout.create(tmp_path)
    before = hostile.snapshot(tmp_path, exclude=[layout.dest])
    (layout.canary / "keep").write_text("pwned\n")
    assert hostile.snapshot(tmp_path, exclude=[layout.dest]) != before
    before = hostile.snapshot(tmp_path, exclude=[layout.dest])
    os.symlink("/etc/shadow", layout.canary / "new-link")
    assert hostile.snapshot(tmp_path, exclude=[layout.dest]) != before


# ---------------------------------------------------------------- path whitelist

def test_path_whitelist_keeps_listed_files_and_all_directories(tmp_path):
    layout = hostile.Layout.create(tmp_path)
    root = layout.dest
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "keep").write_text("k")
    (root / "usr" / "bin" / "drop").write_text("d")
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "etc" / "systemd" / "system" / "unit").write_text("u")
    os.symlink("keep", root / "usr" / "bin" / "kept-link")
    os.symlink(str(layout.canary), root / "outside")      # must be removed, not followed
    before = hostile.snapshot(tmp_path, exclude=[root])
    aci.apply_path_whitelist(str(root), ["/usr/bin/keep", "/usr/bin/kept-link/",
                                         "/etc/systemd/system/"])
    remaining = sorted(os.path.relpath(os.path.join(d, n), root)
                       for d, dirs, files in os.walk(root) for n in dirs + files)
    assert remaining == ["etc", "etc/systemd", "etc/systemd/system", "usr", "usr/bin",
                         "usr/bin/keep", "usr/bin/kept-link"]
    assert hostile.snapshot(tmp_path, exclude=[root]) == before


def test_empty_path_whitelist_keeps_everything(tmp_path):
    (tmp_path / "f").write_text("x")
    aci.apply_path_whitelist(str(tmp_path), [])
    assert (tmp_path / "f").exists()


# ---------------------------------------------------------------- overlay_tree

def test_overlay_tree_places_like_extraction(tmp_path):
    layout = hostile.Layout.create(tmp_path)
    src, dest = tmp_path / "src", layout.dest
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "libc.so").write_bytes(b"elf" * 1000)
    os.chmod(src / "lib" / "libc.so", 0o751)
    os.utime(src / "lib" / "libc.so", (1_000_000_000, 1_000_000_000))
    os.link(src / "lib" / "libc.so", src / "lib" / "libc.so.7")
    os.symlink("lib/libc.so", src / "libc")
    os.mkfifo(src / "fifo")
    (src / "etc").write_text("etc is a file in this layer")
    os.utime(src / "lib", (1_100_000_000, 1_100_000_000))
    if ROOT:
        os.chown(src / "lib" / "libc.so", 42, 43)
    os.symlink(str(layout.canary), dest / "lib")
    (dest / "etc" / "deep").mkdir(parents=True)
    (dest / "only-in-dest").write_text("stays")
    before = hostile.snapshot(tmp_path, exclude=[dest, src])
    aci.overlay_tree(str(src), str(dest))
    lib = dest / "lib"
    assert not lib.is_symlink() and (lib / "libc.so").read_bytes() == b"elf" * 1000
    st = (lib / "libc.so").stat()
    assert stat.S_IMODE(st.st_mode) == 0o751 and st.st_mtime == 1_000_000_000
    assert (lib / "libc.so.7").stat().st_ino == st.st_ino
    assert lib.stat().st_mtime == 1_100_000_000
    if ROOT:
        assert (st.st_uid, st.st_gid) == (42, 43)
    assert os.readlink(dest / "libc") == "lib/libc.so"
    assert stat.S_ISFIFO((dest / "fifo").lstat().st_mode)
    assert (dest / "etc").read_text() == "etc is a file in this layer"
    assert (dest / "only-in-dest").read_text() == "stays"
    assert hostile.snapshot(tmp_path, exclude=[dest, src]) == before


# ---------------------------------------------------------------- write_aci

def make_tree(root):
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(os.urandom(200000))
    os.chmod(root / "usr" / "bin" / "tool", 0o755)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("pod\n")
    os.link(root / "etc" / "hostname", root / "etc" / "hostname.bak")
    os.symlink("../usr/bin/tool", root / "etc" / "tool")
    os.mkfifo(root / "etc" / "fifo")
    (root / "étoile").write_text("unicode name")
    for path in [root / "usr" / "bin" / "tool", root / "usr" / "bin", root / "usr", root / "etc",
                 root / "etc" / "hostname", root / "étoile", root]:
        os.utime(path, ns=(1_234_567_890_987_654_321, 1_234_567_890_987_654_321))
    return root


def test_write_aci_is_reproducible(tmp_path):
    tree = make_tree(tmp_path / "tree")
    first = aci.write_aci(str(tree), MANIFEST, str(tmp_path / "1.aci"))
    second = aci.write_aci(str(tree), MANIFEST, str(tmp_path / "2.aci"))
    assert first == second == aci.compute_image_id(str(tmp_path / "1.aci"))
    assert (tmp_path / "1.aci").read_bytes() == (tmp_path / "2.aci").read_bytes()
    assert (tmp_path / "1.aci").read_bytes()[4:8] == bytes(4)       # gzip header mtime
    assert sorted(os.listdir(tmp_path)) == ["1.aci", "2.aci", "tree"]  # no temporary left


def test_write_then_extract_then_write_gives_the_same_id(tmp_path):
    tree = make_tree(tmp_path / "tree")
    image_id = aci.write_aci(str(tree), MANIFEST, str(tmp_path / "1.aci"), compression="xz")
    result = extract(tmp_path / "1.aci", tmp_path / "extracted")
    assert result.image_id == image_id
    assert aci.write_aci(str(tmp_path / "extracted"), result.manifest_bytes,
                         str(tmp_path / "2.aci"), compression="none") == image_id
    assert (tmp_path / "extracted" / "etc" / "hostname.bak").stat().st_ino == \
        (tmp_path / "extracted" / "etc" / "hostname").stat().st_ino


def test_write_aci_layout(tmp_path):
    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "image.aci"
    image_id = aci.write_aci(str(tree), MANIFEST, str(out), compression="bzip2", owner=(7, 8))
    with open(out, "rb") as f:
        data = bz2.decompress(f.read())
    assert sha512_id(data) == image_id
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert names[:2] == ["manifest", "rootfs"]
    assert names == ["manifest", "rootfs", "rootfs/etc", "rootfs/etc/fifo", "rootfs/etc/hostname",
                     "rootfs/etc/hostname.bak", "rootfs/etc/tool", "rootfs/usr", "rootfs/usr/bin",
                     "rootfs/usr/bin/tool", "rootfs/étoile"]
    assert all((m.uid, m.gid, m.uname, m.gname) == (7, 8, "", "") for m in members)
    assert all(isinstance(m.mtime, int) for m in members)
    assert members[-1].mtime == 1_234_567_890
    assert members[5].islnk() and members[5].linkname == "rootfs/etc/hostname"
    assert len(data) % tarfile.RECORDSIZE == 0


def test_write_aci_paths_subset_brings_parent_directories(tmp_path):
    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "layer.aci"
    aci.write_aci(str(tree), MANIFEST, str(out), compression="none",
                  paths=["/usr/bin/tool", "etc/hostname.bak", "etc"])
    with tarfile.open(out) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == ["manifest", "rootfs", "rootfs/etc",
                                         "rootfs/etc/hostname.bak", "rootfs/usr",
                                         "rootfs/usr/bin", "rootfs/usr/bin/tool"]
    assert members[3].isreg()   # its other name is not in the layer: content, not a link


@pytest.mark.parametrize("paths, match", [
    (["usr/bin/missing"], "does not exist"),
    (["etc/tool/x"], "is not a directory"),
    (["../etc/passwd"], "'..'"),
])
def test_write_aci_refuses_bad_paths(tmp_path, paths, match):
    tree = make_tree(tmp_path / "tree")
    with pytest.raises(InvalidInput, match=match):
        aci.write_aci(str(tree), MANIFEST, str(tmp_path / "x.aci"), paths=paths)
    assert sorted(os.listdir(tmp_path)) == ["tree"]


def test_write_aci_refuses_an_invalid_manifest_and_compression(tmp_path):
    with pytest.raises(InvalidInput, match="name"):
        aci.write_aci(str(tmp_path), json.dumps({"acKind": "ImageManifest", "acVersion": "0.8.11",
                                                 "name": "Bad Name"}).encode(),
                      str(tmp_path / "x.aci"))
    with pytest.raises(InvalidInput, match="compression"):
        aci.write_aci(str(tmp_path), MANIFEST, str(tmp_path / "x.aci"), compression="zstd")


@needs_root
def test_write_aci_leaves_device_nodes_out(tmp_path):
    tree = make_tree(tmp_path / "tree")
    try:
        os.mknod(tree / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError:
        pytest.skip("mknod not permitted here")
    aci.write_aci(str(tree), MANIFEST, str(tmp_path / "x.aci"))
    extract(tmp_path / "x.aci", tmp_path / "dest")
    assert not os.path.lexists(tmp_path / "dest" / "null")
