"""A corpus of hostile and malformed ACIs, built at test time from raw tar headers.

Each `Case` builds its archive bytes for a `Layout` (a temporary directory holding the
destination, a canary directory outside it, and the archive). Members are assembled header by
header (tarfile's TarInfo.tobuf) so that duplicates, absolute names, lying sizes and truncations
come out exactly as written. `snapshot()` records a tree so tests can prove that nothing outside
the destination changed.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.aci import Limits
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import ArchiveError

MTIME = 1_000_000_000
END = b"\0" * 1024
ETC_CANARY = "/etc/jetpack-hostile-archive-canary"
WATCHED_HOST_FILES = ("/etc/passwd", "/etc/shadow", "/etc/hostname")


# ---------------------------------------------------------------- building blocks

@dataclass
class Layout:
    root: Path       # the test's tmp_path: everything here but `dest` must stay unchanged
    dest: Path       # what prepare() returns
    canary: Path     # a directory outside dest that hostile archives aim at
    archive: Path    # where the archive is written
    copies: Path     # where copy_to may write (and must leave nothing)

    @classmethod
    def create(cls, root):
        root = Path(root)
        canary = root / "canary"
        canary.mkdir()
        (canary / "keep").write_text("untouched\n")
        (root / "archives").mkdir()
        (root / "copies").mkdir()
        (root / "outer" / "dest").mkdir(parents=True)  # dest/../.. is still in the snapshot
        return cls(root=root, dest=root / "outer" / "dest", canary=canary,
                   archive=root / "archives" / "hostile.aci", copies=root / "copies")


def member(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, linkname="", size=None, pax=None,
           fmt=tarfile.PAX_FORMAT, uid=0, gid=0, mtime=MTIME):
    """One tar member as raw bytes: header(s), data, padding."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    info.size = len(data) if size is None else size
    info.uid, info.gid, info.mtime = uid, gid, mtime
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    if pax:
        info.pax_headers = dict(pax)
    padding = -len(data) % tarfile.BLOCKSIZE
    return info.tobuf(fmt, "utf-8", "surrogateescape") + data + b"\0" * padding


def directory(name, mode=0o755):
    return member(name, tarfile.DIRTYPE, mode=mode)


def symlink(name, target):
    return member(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name, target):
    return member(name, tarfile.LNKTYPE, linkname=target)


def tar(*members, end=True):
    return b"".join(members) + (END if end else b"")


def manifest_json(**fields):
    data = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/hostile",
            "labels": [{"name": "version", "value": "1.0.0"}, {"name": "os", "value": "linux"},
                       {"name": "arch", "value": "amd64"}]}
    data.update(fields)
    return json.dumps(data).encode()


def manifest(**fields):
    return member("manifest", data=manifest_json(**fields))


def raw_manifest(data):
    return member("manifest", data=data)


def rootfs(*members):
    """manifest + rootfs/ + a harmless file, then the given members."""
    return (manifest(), directory("rootfs"), directory("rootfs/etc"),
            member("rootfs/etc/hostname", data=b"pod\n")) + members


def gz(data):
    return gzip.compress(data, mtime=0)


def flip_bytes(data, start, end):
    return data[:start] + bytes(byte ^ 0x5A for byte in data[start:end]) + data[end:]


def gzip_of_zeros(prefix, zero_bytes):
    """gzip(prefix + zero_bytes zeros), streamed so the uncompressed bytes never sit in memory."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [deflate.compress(prefix)]
    block = b"\0" * (1 << 20)
    for _megabyte in range(zero_bytes >> 20):
        out.append(deflate.compress(block))
    out.append(deflate.flush())
    return b"".join(out)


# ---------------------------------------------------------------- the corpus

@dataclass
class Case:
    id: str
    build: Callable[[Layout], bytes]
    match: str                                   # distinctive part of the refusal message
    error: type = ArchiveError
    limits: Optional[Limits] = None
    expected_id: Optional[str] = None
    parent_tree: Optional[Callable[[Layout], None]] = None   # a parent image already in dest
    host_paths: tuple = field(default_factory=tuple)          # host paths that must not appear


def _symlink_parent_to_canary(layout):
    layout.dest.mkdir(exist_ok=True)
    os.symlink(str(layout.canary), str(layout.dest / "lib"))


SMALL = Limits(max_bytes=8 << 20)
LONG_NAME = "rootfs/" + "/".join(["d" * 200] * 25)  # about 5000 bytes

CASES = [
    # --- not an ACI / unsupported compression / truncation
    Case("zstd-magic", lambda l: b"\x28\xb5\x2f\xfd" + os.urandom(2000), "zstd-compressed"),
    Case("lz4-magic", lambda l: b"\x04\x22\x4d\x18" + os.urandom(2000), "lz4-compressed"),
    Case("random-bytes", lambda l: b"\x7fELF" + os.urandom(4000), "not an ACI"),
    Case("empty-file", lambda l: b"", "the archive is empty"),
    Case("gzip-of-not-a-tar", lambda l: gz(b"<html>not found</html>" * 100), "not a tar archive"),
    Case("truncated-tar-in-data",
         lambda l: tar(*rootfs(member("rootfs/big", data=os.urandom(20000))))[:-(1024 + 9000)],
         "truncated"),
    Case("truncated-tar-at-header-boundary", lambda l: tar(*rootfs(), end=False),
         "without an end-of-archive marker"),
    Case("truncated-tar-in-header",
         lambda l: tar(*rootfs(), end=False) + member("rootfs/next", data=b"x")[:300],
         "in the middle of a header"),
    Case("truncated-gzip",
         lambda l: gz(tar(*rootfs(member("rootfs/r", data=os.urandom(50000)))))[:-4000],
         "truncated"),
    Case("truncated-xz",
         lambda l: lzma.compress(tar(*rootfs(member("rootfs/r", data=os.urandom(50000)))),
                                 format=lzma.FORMAT_XZ)[:-3000],
         "truncated"),
    Case("truncated-bzip2",
         lambda l: bz2.compress(tar(*rootfs(member("rootfs/r", data=os.urandom(50000)))))[:-3000],
         "truncated"),
    Case("corrupt-gzip-body",
         lambda l: flip_bytes(gz(tar(*rootfs(member("rootfs/r", data=b"abc" * 30000)))),
                              200, 400),
         "corrupt gzip data"),
    Case("garbage-after-gzip", lambda l: gz(tar(*rootfs())) + b"GARBAGE!" * 10,
         "unexpected data after the end of the gzip stream"),
    Case("corrupt-tar-header-checksum",
         lambda l: flip_bytes(tar(*rootfs()), 1536 + 100, 1536 + 101),  # 3rd header's mode
         "corrupt tar header"),
    # --- size limits, checked before data is read
    Case("gzip-bomb-member-header",
         lambda l: gzip_of_zeros(manifest() + directory("rootfs")
                                 + member("rootfs/bomb", size=64 << 20), (64 << 20) + 1024),
         "over the size limit", limits=SMALL),
    Case("gzip-bomb-after-end-of-archive",
         lambda l: gzip_of_zeros(tar(*rootfs()), 64 << 20),
         "larger than the limit", limits=SMALL),
    Case("member-claims-1-TiB",
         lambda l: tar(*rootfs(member("rootfs/huge", size=1 << 40, data=b""))),
         "claims 1099511627776 bytes"),
    Case("members-add-up-over-limit",
         lambda l: tar(*rootfs(*[member("rootfs/f%d" % i, data=b"x" * (3 << 20))
                                 for i in range(3)])),
         "add up to more than the size limit", limits=SMALL),
    Case("manifest-2-MiB", lambda l: tar(raw_manifest(b" " * (2 << 20) + manifest_json()),
                                         directory("rootfs")),
         "over the limit of 1048576"),
    Case("pax-header-2-MiB",
         lambda l: tar(manifest(), directory("rootfs"),
                       member("rootfs/x", pax={"comment": "A" * (2 << 20)})),
         "extended header"),
    Case("too-many-entries",
         lambda l: tar(*rootfs(*[member("rootfs/f%d" % i) for i in range(20)])),
         "more than 10 entries", limits=Limits(max_entries=10)),
    # --- the manifest
    Case("manifest-bad-json", lambda l: tar(raw_manifest(b'{"acKind": "ImageManifest",'),
                                            directory("rootfs")), "not valid JSON"),
    Case("manifest-not-utf8", lambda l: tar(raw_manifest(b'{"name": "\xff\xfe"}'),
                                            directory("rootfs")), "not UTF-8"),
    Case("manifest-deeply-nested",
         lambda l: tar(raw_manifest(b"[" * 200000 + b"]" * 200000), directory("rootfs")),
         "nested too deeply"),
    Case("manifest-json-array", lambda l: tar(raw_manifest(b"[1, 2]"), directory("rootfs")),
         "expected a JSON object"),
    Case("manifest-duplicate-json-key",
         lambda l: tar(raw_manifest(manifest_json()[:-1] + b', "name": "other.com/x"}'),
                       directory("rootfs")), "duplicate key 'name'"),
    Case("manifest-missing-ackind",
         lambda l: tar(raw_manifest(json.dumps({"acVersion": "0.8.11", "name": "a"}).encode()),
                       directory("rootfs")), "acKind: missing"),
    Case("manifest-pod-kind", lambda l: tar(manifest(acKind="PodManifest"), directory("rootfs")),
         "acKind: 'PodManifest' is not an image manifest"),
    Case("manifest-bad-acversion", lambda l: tar(manifest(acVersion="0.8"), directory("rootfs")),
         "acVersion: '0.8' is not a semantic version"),
    Case("manifest-env-name-with-space",
         lambda l: tar(manifest(app={"user": "0", "group": "0", "environment": [
             {"name": "OK", "value": "1"}, {"name": "BAD NAME", "value": "1"}]}),
             directory("rootfs")),
         "app.environment[1].name"),
    Case("manifest-port-out-of-range",
         lambda l: tar(manifest(app={"user": "0", "group": "0", "ports": [
             {"name": "http", "protocol": "tcp", "port": 70000}]}), directory("rootfs")),
         "app.ports[0].port"),
    Case("manifest-unknown-isolator",
         lambda l: tar(manifest(app={"user": "0", "group": "0", "isolators": [
             {"name": "os/linux/make-me-root", "value": True}]}), directory("rootfs")),
         "app.isolators[0].name: unknown isolator"),
    Case("manifest-linux-arm64",
         lambda l: tar(manifest(labels=[{"name": "os", "value": "linux"},
                                        {"name": "arch", "value": "arm64"}]),
                       directory("rootfs")),
         "unsupported arch 'arm64'"),
    Case("name-command-substitution", lambda l: tar(manifest(name="$(rm -rf /)"),
                                                    directory("rootfs")),
         "name: '$(rm -rf /)' is not a valid AC identifier"),
    Case("name-semicolon",
         lambda l: tar(manifest(name="example.com/a;reboot"), directory("rootfs")),
         "is not a valid AC identifier"),
    Case("name-backticks", lambda l: tar(manifest(name="`id`"), directory("rootfs")),
         "is not a valid AC identifier"),
    Case("name-spaces", lambda l: tar(manifest(name="example.com/a b"), directory("rootfs")),
         "is not a valid AC identifier"),
    Case("name-newline", lambda l: tar(manifest(name="example.com/a\nrm -rf /"),
                                       directory("rootfs")),
         "is not a valid AC identifier"),
    Case("label-name-shell", lambda l: tar(manifest(labels=[{"name": "a;$(id)", "value": "1"}]),
                                           directory("rootfs")),
         "labels[0].name"),
    Case("label-value-newline",
         lambda l: tar(manifest(labels=[{"name": "version", "value": "1\nos=linux"}]),
                       directory("rootfs")),
         "labels[0].value: contains a control character"),
    Case("label-named-name", lambda l: tar(manifest(labels=[{"name": "name", "value": "x"}]),
                                           directory("rootfs")),
         "'name' cannot be a label"),
    Case("label-duplicate",
         lambda l: tar(manifest(labels=[{"name": "version", "value": "1"},
                                        {"name": "version", "value": "2"}]),
                       directory("rootfs")),
         "duplicate label 'version'"),
    Case("wrong-expected-id", lambda l: tar(*rootfs()), "not the expected",
         expected_id="sha512-" + "0" * 128),
    # --- symlinks
    Case("symlink-then-write-through-it-to-canary",
         lambda l: tar(*rootfs(symlink("rootfs/a", str(l.canary)),
                               member("rootfs/a/keep", data=b"pwned\n"))),
         "its parent rootfs/a is a symbolic link"),
    Case("manifest-last-symlink-then-write-through-it",
         lambda l: tar(directory("rootfs"), symlink("rootfs/a", str(l.canary)),
                       member("rootfs/a/keep", data=b"pwned\n"), manifest()),
         "its parent rootfs/a is a symbolic link"),
    Case("symlink-to-etc-then-write-through-it",
         lambda l: tar(*rootfs(symlink("rootfs/a", "/etc"),
                               member("rootfs/a/" + os.path.basename(ETC_CANARY), data=b"x"))),
         "its parent rootfs/a is a symbolic link", host_paths=(ETC_CANARY,)),
    Case("symlink-dir-then-write-below",
         lambda l: tar(*rootfs(symlink("rootfs/a", "etc"), member("rootfs/a/x", data=b"x"))),
         "is a symbolic link"),
    Case("relative-symlink-escape",
         lambda l: tar(*rootfs(symlink("rootfs/escape", "../canary"))),
         "symlink target '../canary' leaves the rootfs"),
    Case("deep-relative-symlink-escape",
         lambda l: tar(*rootfs(directory("rootfs/a"), directory("rootfs/a/b"),
                               symlink("rootfs/a/b/c", "../../../../../../../../etc/shadow"))),
         "leaves the rootfs"),
    Case("absolute-symlink-dotdot-escape",
         lambda l: tar(*rootfs(symlink("rootfs/x", "/../../etc"))),
         "leaves the rootfs"),
    Case("symlink-empty-target", lambda l: tar(*rootfs(symlink("rootfs/x", ""))),
         "empty target"),
    Case("parent-image-symlink-then-write-through-it",
         lambda l: tar(*rootfs(member("rootfs/lib/keep", data=b"pwned\n"))),
         "its parent rootfs/lib is a symbolic link", parent_tree=_symlink_parent_to_canary),
    Case("file-then-write-below-it",
         lambda l: tar(*rootfs(member("rootfs/f", data=b"x"), member("rootfs/f/x", data=b"y"))),
         "its parent rootfs/f is not a directory"),
    # --- hard links
    Case("hardlink-to-etc-shadow", lambda l: tar(*rootfs(hardlink("rootfs/shadow", "/etc/shadow"))),
         "absolute hard link target"),
    Case("hardlink-to-manifest", lambda l: tar(*rootfs(hardlink("rootfs/m", "manifest"))),
         "hard link to 'manifest'"),
    Case("hardlink-dotdot", lambda l: tar(*rootfs(hardlink("rootfs/p", "rootfs/../../etc/passwd"))),
         "hard link target contains '..'"),
    Case("hardlink-to-later-member",
         lambda l: tar(*rootfs(hardlink("rootfs/early", "rootfs/late"),
                               member("rootfs/late", data=b"x"))),
         "not a regular file extracted earlier"),
    Case("hardlink-to-symlink",
         lambda l: tar(*rootfs(symlink("rootfs/s", "/etc/shadow"),
                               hardlink("rootfs/h", "rootfs/s"))),
         "not a regular file extracted earlier"),
    Case("hardlink-to-directory", lambda l: tar(*rootfs(hardlink("rootfs/h", "rootfs/etc"))),
         "not a regular file extracted earlier"),
    Case("hardlink-to-parent-image-file",
         lambda l: tar(*rootfs(hardlink("rootfs/h", "rootfs/etc/passwd"))),
         "not a regular file extracted earlier"),
    # --- types
    Case("char-device", lambda l: tar(*rootfs(member("rootfs/dev-mem", tarfile.CHRTYPE))),
         "device node"),
    Case("block-device", lambda l: tar(*rootfs(member("rootfs/sda", tarfile.BLKTYPE))),
         "device node"),
    Case("gnu-volume-header",
         lambda l: tar(*rootfs(member("rootfs/v", b"V", fmt=tarfile.GNU_FORMAT))),
         "unsupported tar entry type"),
    Case("uid-out-of-range",
         lambda l: tar(*rootfs(member("rootfs/x", data=b"x", pax={"uid": "99999999999"}))),
         "uid 99999999999 is out of range"),
    Case("negative-gid-base256",
         lambda l: tar(*rootfs(member("rootfs/x", data=b"x", gid=-2, fmt=tarfile.GNU_FORMAT))),
         "gid -2 is out of range"),
    Case("mtime-out-of-range",
         lambda l: tar(*rootfs(member("rootfs/x", data=b"x", pax={"mtime": "1e300"}))),
         "mtime 1e+300 is out of range"),
    # --- structure
    Case("duplicate-file",
         lambda l: tar(*rootfs(member("rootfs/x", data=b"1"), member("rootfs/x", data=b"2"))),
         "duplicate entry"),
    Case("duplicate-through-dot-slash",
         lambda l: tar(*rootfs(member("rootfs/x", data=b"1"), member("./rootfs/x", data=b"2"))),
         "duplicate entry"),
    Case("duplicate-dir-and-symlink",
         lambda l: tar(*rootfs(directory("rootfs/d"), symlink("rootfs/d", "/etc"))),
         "duplicate entry"),
    Case("duplicate-manifest", lambda l: tar(*rootfs(manifest(name="example.com/other"))),
         "duplicate entry"),
    Case("extra-top-level-file", lambda l: tar(*rootfs(member("README", data=b"hi"))),
         "unexpected top-level name 'README'"),
    Case("extra-top-level-dir", lambda l: tar(*rootfs(directory("etc"))),
         "unexpected top-level name 'etc'"),
    Case("missing-rootfs", lambda l: tar(manifest()), "no rootfs/ directory"),
    Case("missing-manifest", lambda l: tar(directory("rootfs"), member("rootfs/x", data=b"1")),
         "has no manifest"),
    Case("manifest-is-a-directory", lambda l: tar(directory("manifest"), directory("rootfs")),
         "the manifest must be a regular file"),
    Case("manifest-is-a-symlink", lambda l: tar(symlink("manifest", "/etc/passwd"),
                                                directory("rootfs")),
         "the manifest must be a regular file"),
    Case("rootfs-is-a-file", lambda l: tar(manifest(), member("rootfs", data=b"x")),
         "rootfs must be a directory"),
    Case("rootfs-is-a-symlink", lambda l: tar(manifest(), symlink("rootfs", "/")),
         "rootfs must be a directory"),
    Case("dotdot-member", lambda l: tar(*rootfs(member("rootfs/../../evil", data=b"x"))),
         "contains '..'"),
    Case("dotdot-top-level", lambda l: tar(*rootfs(member("../evil", data=b"x"))),
         "contains '..'"),
    Case("absolute-member", lambda l: tar(*rootfs(member("/etc/evil", data=b"x"))),
         "absolute path"),
    Case("absolute-rootfs-member", lambda l: tar(*rootfs(member("/rootfs/evil", data=b"x"))),
         "absolute path"),
    Case("nul-in-pax-path",
         lambda l: tar(*rootfs(member("rootfs/x", data=b"x", pax={"path": "rootfs/a\0/../../b"}))),
         "NUL byte"),
    Case("very-long-path", lambda l: tar(*rootfs(member(LONG_NAME, data=b"x"))),
         "longer than the limit of 4096"),
    Case("component-over-255-bytes",
         lambda l: tar(*rootfs(member("rootfs/" + "n" * 300, data=b"x"))),
         "longer than 255 bytes"),
]


# ---------------------------------------------------------------- proving nothing changed

def _describe(path):
    st = os.lstat(path)
    entry = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
             st.st_size, st.st_mtime_ns, st.st_nlink)
    if stat.S_ISLNK(st.st_mode):
        return entry + (os.readlink(path),)
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            return entry + (hashlib.sha256(f.read()).hexdigest(),)
    return entry


def snapshot(root, exclude=()):
    """{path: description} of everything under root except `exclude` subtrees, plus the watched
    host files. Symlinks are described, never followed."""
    root = str(root)
    excluded = {os.path.abspath(str(path)) for path in exclude}
    state = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(directory, d) not in excluded]
        for name in dirs + files:
            path = os.path.join(directory, name)
            if path not in excluded:
                state[os.path.relpath(path, root)] = _describe(path)
    for path in WATCHED_HOST_FILES:
        if os.path.lexists(path):
            state[path] = _describe(path)
    return state
