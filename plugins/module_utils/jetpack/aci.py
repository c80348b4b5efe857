"""ACI archives: compression, image IDs, hardened streaming extraction, reproducible writing.

An image ID is "sha512-" + the hex SHA-512 of the *uncompressed* tar, every byte of it up to the
end of the stream (trailing padding included), computed while the archive is read once.

Extraction trusts nothing in the archive: every name, type, size and link is checked from the
headers before anything is written, and every filesystem call goes through directory fds opened
with O_NOFOLLOW below the destination, so no symlink (from this archive or from a parent image
already in the destination) is ever followed.

Reading, decompressing and hashing run in a helper thread a few MiB ahead of tar parsing and
file writes (all of them release the GIL), which keeps an import close to sha512sum + tar -x.
"""
from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import hashlib
import io
import itertools
import lzma
import os
import queue
import stat
import tarfile
import tempfile
import threading
import zlib
from collections import namedtuple
from dataclasses import dataclass

from . import appc
from .errors import ArchiveError, InvalidInput

CHUNK = 1 << 20
# tarfile's own read buffer. Kept small: tarfile copies what is left of it after every header.
TAR_BUFSIZE = 32 << 10
# PAX and GNU long-name headers are read into memory by tarfile: cap them.
MAX_META_HEADER_BYTES = 1 << 20
NAME_MAX = 255
COMPRESSIONS = ("none", "gzip", "bzip2", "xz")

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | _O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC
# What open(O_NOFOLLOW|O_DIRECTORY) reports for a symlink or a file (FreeBSD says EMLINK).
_NOT_A_DIRECTORY_ERRNOS = (errno.ELOOP, errno.EMLINK, errno.ENOTDIR)
# setxattr failures that only mean "this filesystem or this user cannot keep it".
_XATTR_SKIPPED_ERRNOS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES,
                         errno.EINVAL, errno.E2BIG, errno.ERANGE}
# Host-specific labels, not image content.
_XATTRS_NOT_ARCHIVED = ("security.selinux",)
_CAPABILITY_XATTR = "security.capability"
_PAX_XATTR_PREFIX = "SCHILY.xattr."


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 64 << 30          # uncompressed tar bytes
    max_entries: int = 2_000_000
    max_manifest_bytes: int = 1 << 20
    max_path_bytes: int = 4096


@dataclass
class ExtractResult:
    image_id: str                       # "sha512-<128 hex>" of the uncompressed tar
    manifest: dict                      # parsed + validated (appc.parse_image_manifest)
    manifest_bytes: bytes               # exactly as in the archive
    entries: int                        # tar members read (manifest and rootfs/ included)
    size: int                           # bytes of file content written
    compression: str                    # "none" | "gzip" | "bzip2" | "xz"


# ================================================================ compression

_COMPRESSED_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_RECOMPRESS = "appc allows only gzip, bzip2, xz or no compression: recompress it (e.g. with gzip)"
_REFUSED_MAGIC = (
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", _RECOMPRESS),
    (b"\x04\x22\x4d\x18", "lz4-compressed", _RECOMPRESS),
    (b"LZIP", "lzip-compressed", _RECOMPRESS),
    (b"\x1f\x9d", "compress(1)-compressed (.Z)", _RECOMPRESS),
    (b"PK\x03\x04", "a zip file", "an ACI is a tar archive: repack it with tar"),
    (b"-----BEGIN PGP", "PGP-encrypted", "decrypt it first (encrypted ACIs are not supported)"),
)


def detect_compression(head):
    """Return "none", "gzip", "bzip2" or "xz" from the first bytes (512 or more for a tar)."""
    head = bytes(head)
    if not head:
        raise ArchiveError("the archive is empty; give an ACI file (a tar of manifest and rootfs/)")
    for magic, name in _COMPRESSED_MAGIC:
        if head.startswith(magic):
            return name
    if _looks_like_tar(head):
        return "none"
    for magic, description, advice in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise ArchiveError("the archive is %s; %s" % (description, advice))
    raise ArchiveError("not an ACI: neither a tar archive nor gzip, bzip2 or xz data; "
                       "give an .aci file (a tar of manifest and rootfs/, optionally compressed)")


def _looks_like_tar(head):
    if len(head) < tarfile.BLOCKSIZE:
        return False
    block = head[:tarfile.BLOCKSIZE]
    if block[257:262] == b"ustar" or block.count(0) == tarfile.BLOCKSIZE:
        return True
    try:
        stored = int(block[148:156].strip(b" \x00") or b"-1", 8)
    except ValueError:
        return False
    return stored == 256 + sum(block[:148]) + sum(block[156:])


class _GzipMember:
    """One gzip member, with the `needs_input` interface of bz2/lzma decompressors."""

    def __init__(self):
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""

    @property
    def eof(self):
        return self._inflate.eof

    @property
    def unused_data(self):
        return self._inflate.unused_data

    @property
    def needs_input(self):
        return not self._tail

    def decompress(self, data, max_length):
        if self._tail:
            data = self._tail + data
        out = self._inflate.decompress(data, max_length)
        self._tail = self._inflate.unconsumed_tail
        return out


_DECOMPRESSORS = {
    "gzip": (_GzipMember, b"\x1f\x8b"),
    "bzip2": (bz2.BZ2Decompressor, b"BZh"),
    "xz": (lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), b"\xfd7zXZ\x00"),
}
_DECOMPRESSION_ERRORS = (zlib.error, OSError, EOFError, lzma.LZMAError)


def _decompressed_chunks(raw, compression):
    """The decompressed stream as chunks of at most CHUNK bytes (bounded memory for bombs).

    Concatenated members (pigz, pbzip2, multi-stream xz) form one stream, as their tools read
    them; zero padding after the last member is allowed, anything else is refused.
    """
    if compression == "none":
        yield from raw
        return
    new_member, magic = _DECOMPRESSORS[compression]
    member = new_member()
    try:
        while True:
            if member.eof:
                data = _next_member_start(member.unused_data, raw, magic, compression)
                if not data:
                    return
                member = new_member()
            elif member.needs_input:
                data = next(raw, b"")
                if not data:
                    out = member.decompress(b"", CHUNK)
                    if out:
                        yield out
                    elif not member.eof:
                        raise ArchiveError("the %s data ends before the end of its stream: the "
                                           "archive is truncated; download or copy it again"
                                           % compression)
                    continue
            else:
                data = b""
            out = member.decompress(data, CHUNK)
            if out:
                yield out
    except _DECOMPRESSION_ERRORS as error:
        raise ArchiveError("corrupt %s data (%s): the archive is damaged; download or copy it "
                           "again" % (compression, error)) from None


def _next_member_start(rest, raw, magic, compression):
    """The bytes starting the next concatenated member, or b"" when only padding is left."""
    while True:
        rest = rest.lstrip(b"\x00")
        while rest and len(rest) < len(magic):
            more = next(raw, b"")
            if not more:
                break
            rest += more
        if rest:
            break
        rest = next(raw, b"")
        if not rest:
            return b""
    if not rest.startswith(magic):
        raise ArchiveError("unexpected data after the end of the %s stream: the archive is "
                           "damaged or is not an ACI" % compression)
    return rest


def _raw_chunks(fileobj, copy=None):
    """The file as read, in CHUNK pieces, each also written to `copy` when given."""
    while True:
        data = fileobj.read(CHUNK)
        if not data:
            return
        if copy is not None:
            copy.write(data)
        yield data


class _HashedChunks:
    """Passes chunks through, hashing and counting them; refuses more than max_bytes."""

    def __init__(self, chunks, max_bytes):
        self.sha512 = hashlib.sha512()
        self.total = 0
        self._chunks = chunks
        self._max_bytes = max_bytes

    def __iter__(self):
        for chunk in self._chunks:
            self.total += len(chunk)
            if self._max_bytes is not None and self.total > self._max_bytes:
                raise ArchiveError("the uncompressed archive is larger than the limit of %d "
                                   "bytes (a decompression bomb?); raise the limit only for "
                                   "archives you trust" % self._max_bytes)
            self.sha512.update(chunk)
            yield chunk


_END = object()


class _Prefetcher:
    """Runs an iterator in a helper thread, a few items ahead of the consumer.

    Reading, decompressing and hashing release the GIL, so they overlap with tar parsing and
    file writes, as `tar -xJ` overlaps xz with its writes. Errors reach the consumer in order.
    """

    def __init__(self, items, depth=4):
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(items,),
                                        name="aci-reader", daemon=True)
        self._thread.start()

    def _produce(self, items):
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except Exception as error:  # pylint: disable=broad-exception-caught
            self._put(error)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, Exception):
            self._done = True
            raise item
        return item

    def close(self):
        self._stop.set()
        while self._thread.is_alive():
            try:  # make room: a producer blocked in put() then sees the stop flag
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.01)


class UncompressedStream:
    """The uncompressed tar of an archive as a readable stream.

    Every byte it produces is hashed and counted; `image_id()` reads to the end and returns
    the ID. Like a raw stream, `read(n)` may return fewer than n bytes; b"" means the end.
    With `background`, a helper thread reads ahead: call `close()` when done.
    """

    def __init__(self, chunks, compression, max_bytes=None, background=False):
        self.compression = compression
        self._hashed = _HashedChunks(chunks, max_bytes)
        self._source = _Prefetcher(iter(self._hashed)) if background else iter(self._hashed)
        self._buffer = b""
        self._offset = 0

    @property
    def bytes_read(self):
        """Uncompressed bytes decompressed so far (read ahead included)."""
        return self._hashed.total

    def _fill(self):
        self._buffer = next(self._source, b"")
        self._offset = 0
        return bool(self._buffer)

    def read(self, size=-1):
        if size is None or size < 0:
            parts = [self._buffer[self._offset:]]
            while self._fill():
                parts.append(self._buffer)
            self._offset = len(self._buffer)
            return b"".join(parts)
        if self._offset >= len(self._buffer) and not self._fill():
            return b""
        start = self._offset
        end = min(len(self._buffer), start + size)
        self._offset = end
        if start == 0 and end == len(self._buffer):
            return self._buffer
        return self._buffer[start:end]

    def readable(self):
        return True

    def image_id(self):
        """Read to the end of the stream; the image ID of everything it held."""
        self._offset = len(self._buffer)
        while self._fill():
            pass
        return "sha512-" + self._hashed.sha512.hexdigest()

    def close(self):
        if isinstance(self._source, _Prefetcher):
            self._source.close()


def open_uncompressed(fileobj, max_bytes=None, copy=None, background=False):
    """A streaming decompressor over a binary file object, compression detected from its head.

    `copy` (a writable file object) receives the compressed bytes as they are read.
    """
    raw = _raw_chunks(fileobj, copy)
    head = b""
    while len(head) < tarfile.BLOCKSIZE:
        data = next(raw, b"")
        if not data:
            break
        head += data
    compression = detect_compression(head)
    chunks = _decompressed_chunks(itertools.chain((head,), raw), compression)
    return UncompressedStream(chunks, compression, max_bytes, background)


def compute_image_id(path):
    """The image ID of an ACI file: sha512 of its uncompressed tar."""
    with open(path, "rb", buffering=0) as archive:
        stream = open_uncompressed(archive, background=True)
        try:
            return stream.image_id()
        finally:
            stream.close()


# ================================================================ tar reading

_BLOCK = tarfile.BLOCKSIZE
_EOFHeaderError = tarfile.EOFHeaderError
_HeaderError = tarfile.HeaderError


class _CheckedTarInfo(tarfile.TarInfo):
    """Refuses what tarfile would silently accept: bad headers, truncation, huge meta headers."""

    @classmethod
    def fromtarfile(cls, tarfile):  # the parameter shadows the module, as in the base class
        stream = tarfile.fileobj
        offset = stream.tell()
        buf = stream.read(_BLOCK)
        if len(buf) < _BLOCK:
            raise ArchiveError("the tar data ends %s at byte %d: the archive is truncated; "
                               "download or copy it again"
                               % ("in the middle of a header" if buf
                                  else "without an end-of-archive marker", offset))
        try:
            info = cls.frombuf(buf, tarfile.encoding, tarfile.errors)
        except _EOFHeaderError:
            raise
        except _HeaderError as error:
            if offset == 0:
                raise ArchiveError("not a tar archive (%s); an ACI is a tar of manifest and "
                                   "rootfs/" % error) from None
            raise ArchiveError("corrupt tar header at byte %d (%s): the archive is damaged"
                               % (offset, error)) from None
        info.offset = offset
        if info.type in _META_HEADER_TYPES and info.size > MAX_META_HEADER_BYTES:
            raise ArchiveError("a tar extended header at byte %d claims %d bytes, more than the "
                               "limit of %d; the archive is refused"
                               % (offset, info.size, MAX_META_HEADER_BYTES))
        return info._proc_member(tarfile)


_META_HEADER_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                      tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)

_FILE, _DIR, _SYMLINK, _HARDLINK, _FIFO = "file", "directory", "symlink", "hard link", "fifo"
_KINDS = {
    tarfile.REGTYPE: _FILE, tarfile.AREGTYPE: _FILE, tarfile.CONTTYPE: _FILE,
    tarfile.GNUTYPE_SPARSE: _FILE, tarfile.DIRTYPE: _DIR, tarfile.SYMTYPE: _SYMLINK,
    tarfile.LNKTYPE: _HARDLINK, tarfile.FIFOTYPE: _FIFO,
}


def _refuse(member, reason):
    raise ArchiveError("ACI member %r: %s; the archive is refused" % (member, reason))


def _name_parts(name, limits, what="path"):
    """A member name (or hard link target) as path components, './' and '//' removed."""
    if "\x00" in name:
        _refuse(name, "the %s contains a NUL byte" % what)
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > limits.max_path_bytes:
        _refuse(name[:64] + "...", "the %s is %d bytes, longer than the limit of %d"
                % (what, len(encoded), limits.max_path_bytes))
    if name.startswith("/"):
        _refuse(name, "absolute %s; ACI members are relative to the archive root" % what)
    parts = tuple(part for part in name.split("/") if part and part != ".")
    if ".." in parts:
        _refuse(name, "the %s contains '..'" % what)
    if len(encoded) > NAME_MAX:
        for part in parts:
            if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
                _refuse(name[:64] + "...", "a path component is longer than %d bytes" % NAME_MAX)
    return parts


def _check_owner_and_mtime(info):
    # What chown and utime accept: 0xFFFFFFFF would mean "leave unchanged", and nanoseconds
    # must fit in 64 bits.
    for what, value in (("uid", info.uid), ("gid", info.gid)):
        if not 0 <= value < 0xFFFFFFFF:
            _refuse(info.name, "%s %r is out of range" % (what, value))
    if not -_MAX_MTIME <= info.mtime < _MAX_MTIME:
        _refuse(info.name, "mtime %r is out of range" % (info.mtime,))


_MAX_MTIME = 1 << 33


def _symlink_stays_inside(link_parts, target):
    """Whether a symlink at rootfs/<link_parts> pointing at `target` resolves inside the rootfs.

    Lexical check: relative targets start at the link's directory, absolute ones at the rootfs.
    """
    resolved = [] if target.startswith("/") else list(link_parts[:-1])
    for part in target.split("/"):
        if part == "..":
            if not resolved:
                return False
            resolved.pop()
        elif part and part != ".":
            resolved.append(part)
    return True


class _MemberRules:
    """The archive-level rules, checked from headers alone before any data is read."""

    def __init__(self, limits):
        self.limits = limits
        self.entries = 0
        self.content_bytes = 0
        self.has_rootfs = False
        self._kinds = {}

    def check(self, info):
        """(path components, kind) of an acceptable member; ArchiveError otherwise."""
        name = info.name
        self.entries += 1
        if self.entries > self.limits.max_entries:
            _refuse(name, "the archive has more than %d entries (the limit)"
                    % self.limits.max_entries)
        kind = _KINDS.get(info.type)
        if kind is None:
            if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                _refuse(name, "device node; images cannot carry devices (the runtime provides "
                              "them)")
            _refuse(name, "unsupported tar entry type %r" % info.type)
        parts = _name_parts(name, self.limits)
        _check_owner_and_mtime(info)
        if not parts:
            if kind != _DIR:
                _refuse(name, "the archive root '.' must be a directory")
            return parts, kind
        self._check_top_level(name, parts, kind)
        key = "/".join(parts)
        if key in self._kinds:
            _refuse(name, "duplicate entry (an ACI must not hold the same path twice)")
        if kind == _FILE:
            self._check_size(name, parts, info.size)
        elif kind == _SYMLINK:
            self._check_symlink(name, parts, info.linkname)
        elif kind == _HARDLINK:
            self._check_hardlink(name, info.linkname)
        self._kinds[key] = _FILE if kind == _HARDLINK else kind
        return parts, kind

    def _check_top_level(self, name, parts, kind):
        top = parts[0]
        if top == "manifest":
            if len(parts) > 1 or kind != _FILE:
                _refuse(name, "the manifest must be a regular file at the top of the archive "
                              "(found a %s)" % (kind if len(parts) == 1 else "path below it"))
        elif top == "rootfs":
            if len(parts) == 1 and kind != _DIR:
                _refuse(name, "rootfs must be a directory (found a %s)" % kind)
            self.has_rootfs = True
        else:
            _refuse(name, "unexpected top-level name %r: an ACI holds only 'manifest' and "
                          "'rootfs/'" % top)

    def _check_size(self, name, parts, size):
        if parts == ("manifest",):
            if size > self.limits.max_manifest_bytes:
                _refuse(name, "the manifest is %d bytes, over the limit of %d"
                        % (size, self.limits.max_manifest_bytes))
            return
        if size > self.limits.max_bytes:
            _refuse(name, "the member claims %d bytes, over the size limit of %d"
                    % (size, self.limits.max_bytes))
        self.content_bytes += size
        if self.content_bytes > self.limits.max_bytes:
            _refuse(name, "the members add up to more than the size limit of %d bytes"
                    % self.limits.max_bytes)

    def _check_symlink(self, name, parts, target):
        if not target:
            _refuse(name, "symlink with an empty target")
        if "\x00" in target:
            _refuse(name, "symlink target contains a NUL byte")
        if len(target.encode("utf-8", "surrogateescape")) > self.limits.max_path_bytes:
            _refuse(name, "symlink target is longer than %d bytes" % self.limits.max_path_bytes)
        if not _symlink_stays_inside(parts[1:], target):
            _refuse(name, "symlink target %r leaves the rootfs" % target)

    def _check_hardlink(self, name, target):
        target_parts = _name_parts(target, self.limits, "hard link target")
        if (len(target_parts) < 2 or target_parts[0] != "rootfs"
                or self._kinds.get("/".join(target_parts)) != _FILE):
            _refuse(name, "hard link to %r, which is not a regular file extracted earlier "
                          "from this archive's rootfs" % target)

    def hardlink_target(self, info):
        return _name_parts(info.linkname, self.limits, "hard link target")


class _ArchiveReader:
    """One read of an ACI: file -> (tee to copy) -> decompress + hash -> tarfile stream."""

    def __init__(self, path, limits, copy_to=None):
        self.rules = _MemberRules(limits)
        self._file = self._copy = self.tar = self.stream = None
        try:
            self._file = open(path, "rb", buffering=0)
            if copy_to is not None:
                self._copy = _create_copy(copy_to)
            self.stream = open_uncompressed(self._file, limits.max_bytes, self._copy,
                                            background=True)
            self.tar = _open_tar(self.stream)
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.tar is not None:
            self.tar.close()
        for handle in (self.stream, self._copy, self._file):
            if handle is not None:
                handle.close()

    def members(self):
        """(info, path components, kind) of each member, after the archive-level rules."""
        tar = self.tar
        while True:
            try:
                info = tar.next()
            except tarfile.TarError as error:
                raise ArchiveError("invalid tar data (%s): the archive is damaged or truncated"
                                   % error) from None
            except OSError as error:
                raise ArchiveError("cannot read the archive: %s" % (error.strerror or error)
                                   ) from None
            if info is None:
                return
            # Stream mode keeps every member in a list otherwise: memory for 2M entries.
            del tar.members[:]
            parts, kind = self.rules.check(info)
            yield info, parts, kind

    def read_small(self, info):
        data = self.tar.fileobj.read(info.size)
        if len(data) != info.size:
            _refuse(info.name, "the archive ends inside this member: it is truncated")
        return data

    def copy_data(self, info, fd):
        """Write a regular member's content to fd, in CHUNK pieces."""
        if info.sparse is not None:
            source = self.tar.extractfile(info)
            read = source.read
        else:
            read = self.tar.fileobj.read
        remaining = info.size
        while remaining:
            data = read(CHUNK if remaining > CHUNK else remaining)
            if not data:
                _refuse(info.name, "the archive ends inside this member: it is truncated")
            _write_all(fd, data)
            remaining -= len(data)

    def finish(self):
        """Read to the end (the ID covers every byte); flush the copy; return the image ID."""
        image_id = self.stream.image_id()
        if self._copy is not None:
            self._copy.flush()
        return image_id


def _open_tar(stream):
    try:
        return tarfile.open(fileobj=stream, mode="r|", bufsize=TAR_BUFSIZE,
                            tarinfo=_CheckedTarInfo, encoding="utf-8", errors="surrogateescape")
    except tarfile.TarError as error:
        raise ArchiveError("not a tar archive (%s); an ACI is a tar of manifest and rootfs/"
                           % error) from None


def _create_copy(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | _O_CLOEXEC, 0o600)
    return open(fd, "wb")


def _write_all(fd, data):
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)
        while written < len(data):
            written += os.write(fd, view[written:])


def _remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _parse_manifest(member, raw):
    try:
        return appc.parse_image_manifest(raw)
    except InvalidInput as error:
        raise ArchiveError("ACI member %r: invalid image manifest: %s" % (member, error)) from None


# ================================================================ reading manifests

def _find_manifest(reader):
    """(manifest, raw bytes, first): first is True when no rootfs member came before it."""
    first = True
    for info, parts, _kind in reader.members():
        if parts == ("manifest",):
            raw = reader.read_small(info)
            return _parse_manifest(info.name, raw), raw, first
        if parts:
            first = False
    raise ArchiveError("the archive has no manifest; an ACI is a tar of a 'manifest' file and "
                       "a 'rootfs/' directory")


def read_manifest(path, limits=Limits()):
    """(manifest, raw manifest bytes, image ID) of an ACI, without extracting it."""
    with _ArchiveReader(path, limits) as reader:
        manifest, raw, _first = _find_manifest(reader)
        return manifest, raw, reader.finish()


# ================================================================ writing trees safely

_Meta = namedtuple("_Meta", "mode uid gid mtime_ns xattrs")


class _PathBlocked(Exception):
    """A path component below the root is a symlink or not a directory."""

    def __init__(self, parts, what):
        super().__init__("/".join(parts), what)
        self.parts = parts
        self.what = what


def _describe(parent_fd, name):
    try:
        mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except OSError:
        return "not a directory"
    return "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"


def _check_component(name):
    # Defense in depth: names were checked against the archive rules already.
    if name in ("", ".", "..") or "/" in name:
        raise ValueError("unsafe path component %r" % name)
    return name


def _open_subdir(parent_fd, name, parts, create):
    _check_component(name)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as error:
        if error.errno in _NOT_A_DIRECTORY_ERRNOS:
            raise _PathBlocked(parts, _describe(parent_fd, name)) from None
        raise
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    except FileExistsError:
        pass
    fd = _open_subdir(parent_fd, name, parts, create=False)
    os.fchmod(fd, 0o755)  # mkdir's mode went through the umask
    return fd


class _DirWalker:
    """Directory fds along one path below a root fd, reused from call to call.

    Archives and walks are depth-first, so consecutive members mostly share their parent.
    """

    def __init__(self, root_fd):
        self.root_fd = root_fd
        self._path = ()
        self._fds = []
        self._creation_owners = {}

    def creation_owner(self, dir_fd, new_fd):
        """(uid, gid) that files created in dir_fd get, learnt from the first one (new_fd).

        Observed rather than predicted: it depends on the OS, setgid bits and mount options.
        """
        owner = self._creation_owners.get(dir_fd)
        if owner is None:
            st = os.fstat(new_fd)
            owner = self._creation_owners[dir_fd] = (st.st_uid, st.st_gid)
        return owner

    def known_creation_owner(self, dir_fd):
        return self._creation_owners.get(dir_fd)

    def open(self, parts, create=True):
        """The fd of the directory root/<parts> (owned by the walker), missing ones created."""
        if parts == self._path:
            return self._fds[-1] if self._fds else self.root_fd
        keep = 0
        common = min(len(parts), len(self._path))
        while keep < common and parts[keep] == self._path[keep]:
            keep += 1
        self._close_from(keep)
        fd = self._fds[-1] if self._fds else self.root_fd
        for depth in range(keep, len(parts)):
            fd = _open_subdir(fd, parts[depth], parts[:depth + 1], create)
            self._fds.append(fd)
            self._path = parts[:depth + 1]
        return fd

    def forget(self, parts):
        """Drop fds at or below root/<parts>, which is about to be removed."""
        if self._path[:len(parts)] == parts:
            self._close_from(len(parts) - 1)

    def _close_from(self, depth):
        while len(self._fds) > depth:
            fd = self._fds.pop()
            self._creation_owners.pop(fd, None)
            os.close(fd)
        self._path = self._path[:depth]

    def close(self):
        self._close_from(0)


def _remove_tree(parent_fd, name):
    """rm -rf parent/name through directory fds, never following a symlink."""
    fds = [os.open(name, _DIR_FLAGS, dir_fd=parent_fd)]
    names = [name]
    try:
        while fds:
            fd = fds[-1]
            subdir = None
            for entry in _list_dir(fd):
                if entry.is_dir(follow_symlinks=False):
                    subdir = entry.name
                    break
                os.unlink(entry.name, dir_fd=fd)
            if subdir is not None:
                fds.append(os.open(subdir, _DIR_FLAGS, dir_fd=fd))
                names.append(subdir)
                continue
            os.close(fds.pop())
            os.rmdir(names.pop(), dir_fd=fds[-1] if fds else parent_fd)
    finally:
        for fd in fds:
            os.close(fd)


def _list_dir(fd):
    with os.scandir(fd) as entries:
        return list(entries)


def _set_xattrs(fd, xattrs):
    for name, value in xattrs:
        try:
            os.setxattr(fd, name, value)
        except OSError as error:
            if error.errno not in _XATTR_SKIPPED_ERRNOS:
                raise


def _read_xattrs(fd):
    if not hasattr(os, "listxattr"):
        return ()
    try:
        names = os.listxattr(fd)
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    return tuple((name, os.getxattr(fd, name)) for name in sorted(names)
                 if name not in _XATTRS_NOT_ARCHIVED)


class _TreeWriter:
    """Places entries below a root fd with the layering rules of appc rendering.

    Later entries replace what is there; a symlink or file where a directory goes is removed
    (never followed) and a directory where a file goes is removed with its content. Directory
    metadata is applied by `finish()`, once nothing more is written into them.
    """

    def __init__(self, root_fd):
        self.dirs = _DirWalker(root_fd)
        self._chown = os.geteuid() == 0
        self._can_set_xattrs = hasattr(os, "setxattr")
        self._dir_meta = []

    def directory(self, parts, meta):
        if parts:
            parent = self.dirs.open(parts[:-1])
            name = _check_component(parts[-1])
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                    self._remove(parent, parts)
                    os.mkdir(name, 0o700, dir_fd=parent)
        self._dir_meta.append((parts, meta))

    def file(self, parts, meta, fill):
        """A regular file; fill(fd) writes its content."""
        parent = self.dirs.open(parts[:-1])
        _check_component(parts[-1])
        try:
            fd = os.open(parts[-1], _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:
            self._remove(parent, parts)
            fd = os.open(parts[-1], _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            fill(fd)
            self._set_meta(fd, meta, self._creation_owner(parent, fd))
        finally:
            os.close(fd)

    def symlink(self, parts, target, meta):
        parent = self.dirs.open(parts[:-1])
        name = _check_component(parts[-1])
        try:
            os.symlink(target, name, dir_fd=parent)
        except FileExistsError:
            self._remove(parent, parts)
            os.symlink(target, name, dir_fd=parent)
        if self._chown and (meta.uid, meta.gid) != self.dirs.known_creation_owner(parent):
            os.chown(name, meta.uid, meta.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(name, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def hardlink(self, parts, target_parts):
        source_dir = os.dup(self.dirs.open(target_parts[:-1], create=False))
        try:
            parent = self.dirs.open(parts[:-1])
            link = (_check_component(target_parts[-1]), _check_component(parts[-1]))
            try:
                os.link(*link, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                self._remove(parent, parts)
                os.link(*link, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(source_dir)

    def fifo(self, parts, meta):
        parent = self.dirs.open(parts[:-1])
        name = _check_component(parts[-1])
        try:
            os.mkfifo(name, 0o600, dir_fd=parent)
        except FileExistsError:
            self._remove(parent, parts)
            os.mkfifo(name, 0o600, dir_fd=parent)
        fd = os.open(name, _READ_FLAGS | os.O_NONBLOCK, dir_fd=parent)
        try:
            self._set_meta(fd, meta, self._creation_owner(parent, fd))
        finally:
            os.close(fd)

    def finish(self):
        """Apply directory metadata, deepest last-written first; skip replaced directories."""
        for parts, meta in reversed(self._dir_meta):
            try:
                fd = self.dirs.open(parts, create=False)
            except (_PathBlocked, FileNotFoundError):
                continue
            self._set_meta(fd, meta)
        self.dirs.close()

    def close(self):
        self.dirs.close()

    def _remove(self, parent, parts):
        name = parts[-1]
        if stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            self.dirs.forget(parts)
            _remove_tree(parent, name)
        else:
            os.unlink(name, dir_fd=parent)

    def _creation_owner(self, parent, fd):
        return self.dirs.creation_owner(parent, fd) if self._chown else None

    def _set_meta(self, fd, meta, owner=None):
        # chown first: it clears setuid/setgid bits and file capabilities. Skipped when the
        # owner is already right: on FUSE-backed ZFS a chown costs as much as a small write.
        if self._chown and (meta.uid, meta.gid) != owner:
            os.fchown(fd, meta.uid, meta.gid)
        os.fchmod(fd, meta.mode)
        if meta.xattrs and self._can_set_xattrs:
            _set_xattrs(fd, meta.xattrs)
        os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))


def _open_directory(path, create=False):
    if create:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
    return os.open(path, _DIR_FLAGS)


# ================================================================ extraction

_SETID_BITS = stat.S_ISUID | stat.S_ISGID


def _member_meta(info, kind, allow_setuid):
    mode = info.mode & 0o7777
    xattrs = ()
    if info.pax_headers:
        xattrs = tuple(
            (key[len(_PAX_XATTR_PREFIX):], value.encode("utf-8", "surrogateescape"))
            for key, value in sorted(info.pax_headers.items())
            if key.startswith(_PAX_XATTR_PREFIX)
            and (allow_setuid or key[len(_PAX_XATTR_PREFIX):] != _CAPABILITY_XATTR))
    if not allow_setuid:
        # setgid on a directory only makes new files inherit its group: kept.
        mode &= ~(stat.S_ISUID if kind == _DIR else _SETID_BITS)
    mtime = info.mtime
    mtime_ns = mtime * 1_000_000_000 if isinstance(mtime, int) else int(mtime * 1e9)
    return _Meta(mode, info.uid, info.gid, mtime_ns, xattrs)


class _Extraction:
    """Writes the rootfs/ members of one archive read into a destination directory."""

    def __init__(self, reader, dest, allow_setuid):
        self.reader = reader
        self.allow_setuid = allow_setuid
        self.size = 0
        self._root_fd = _open_directory(dest, create=True)
        self.writer = _TreeWriter(self._root_fd)

    def close(self):
        self.writer.close()
        os.close(self._root_fd)

    def member(self, info, parts, kind):
        try:
            self._place(info, parts[1:], kind)
        except _PathBlocked as blocked:
            _refuse(info.name, "its parent rootfs/%s is %s; an ACI may not write through a "
                               "symlink or below a file" % ("/".join(blocked.parts), blocked.what))
        except ValueError as error:
            _refuse(info.name, str(error))
        except OSError as error:
            raise ArchiveError("ACI member %r: cannot extract it: %s"
                               % (info.name, error.strerror or error)) from None

    def _place(self, info, parts, kind):
        writer = self.writer
        if kind == _FILE:
            writer.file(parts, _member_meta(info, kind, self.allow_setuid),
                        lambda fd: self.reader.copy_data(info, fd))
            self.size += info.size
        elif kind == _DIR:
            writer.directory(parts, _member_meta(info, kind, self.allow_setuid))
        elif kind == _SYMLINK:
            writer.symlink(parts, info.linkname, _member_meta(info, kind, self.allow_setuid))
        elif kind == _HARDLINK:
            writer.hardlink(parts, self.reader.rules.hardlink_target(info)[1:])
        else:
            writer.fifo(parts, _member_meta(info, kind, self.allow_setuid))

    def finish(self):
        try:
            self.writer.finish()
        except OSError as error:
            raise ArchiveError("cannot set directory metadata in the rootfs: %s"
                               % (error.strerror or error)) from None


def _extract_members(reader, dest, allow_setuid, manifest_raw):
    """Extract the remaining members of `reader` into dest; the manifest must equal manifest_raw."""
    extraction = _Extraction(reader, dest, allow_setuid)
    try:
        for info, parts, kind in reader.members():
            if not parts:
                continue
            if parts[0] == "manifest":
                if reader.read_small(info) != manifest_raw:
                    raise ArchiveError("the archive changed while it was read (its manifest "
                                       "differs between two reads); import it again")
                continue
            extraction.member(info, parts, kind)
        if not reader.rules.has_rootfs:
            raise ArchiveError("the archive has no rootfs/ directory; an ACI is a tar of a "
                               "'manifest' file and a 'rootfs/' directory")
        extraction.finish()
    finally:
        extraction.close()
    return extraction.size


def extract(path, prepare, *, allow_setuid=False, limits=Limits(), expected_id=None,
            copy_to=None):
    """Extract an ACI's rootfs/ into the directory `prepare(manifest)` returns.

    One read of the archive when `manifest` is its first member, two otherwise. `copy_to`
    receives the archive's bytes as read; it is removed on any error. On an ID mismatch the
    rootfs has been written: the caller destroys it.
    """
    if expected_id is not None:
        appc.validate_image_id(expected_id, "expected_id")
    try:
        result = _extract(path, prepare, allow_setuid, limits, copy_to)
        if expected_id is not None and result.image_id != expected_id:
            raise ArchiveError("the archive's image ID is %s, not the expected %s; it is not "
                               "the image you asked for (or it was altered)"
                               % (result.image_id, expected_id))
    except BaseException:
        if copy_to is not None:
            _remove_quietly(copy_to)
        raise
    return result


def _extract(path, prepare, allow_setuid, limits, copy_to):
    with _ArchiveReader(path, limits, copy_to) as reader:
        manifest, raw, first = _find_manifest(reader)
        if first:
            size = _extract_members(reader, os.fspath(prepare(manifest)), allow_setuid, None)
            return _result(reader, manifest, raw, size)
    if not os.path.isfile(path):
        raise ArchiveError("the manifest is not the first member and %s cannot be read twice; "
                           "save the archive to a file first" % path)
    dest = os.fspath(prepare(manifest))
    with _ArchiveReader(path, limits, copy_to) as reader:
        size = _extract_members(reader, dest, allow_setuid, raw)
        return _result(reader, manifest, raw, size)


def _result(reader, manifest, raw, size):
    image_id = reader.finish()
    return ExtractResult(image_id=image_id, manifest=manifest, manifest_bytes=raw,
                         entries=reader.rules.entries, size=size,
                         compression=reader.stream.compression)


# ================================================================ rendered trees

def _walk(root_fd, selection=None):
    """(parts, parent fd, lstat, dir fd or None) of every entry below root_fd, depth-first.

    Each directory's entries come sorted by their bytes; symlinks are never followed. A
    directory's fd stays valid until the walk goes on past its content.
    """
    stack = [((), root_fd, iter(_sorted_names(root_fd, (), selection)))]
    try:
        while stack:
            parts, fd, names = stack[-1]
            for name in names:
                child = parts + (name,)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    if selection is not None and selection.names_under(child):
                        raise InvalidInput("paths: %s is not a directory, so nothing below it can "
                                           "be included" % "/".join(child), "paths")
                    yield child, fd, st, None
                    continue
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                stack.append((child, sub, iter(_sorted_names(sub, child, selection))))
                yield child, fd, st, sub
                break
            else:
                stack.pop()
                if parts:
                    os.close(fd)
    finally:
        for parts, fd, _names in stack:
            if parts:
                os.close(fd)


def _sorted_names(fd, parts, selection):
    if selection is None:
        return sorted(os.listdir(fd), key=os.fsencode)
    wanted = selection.names_under(parts)
    if not wanted:
        return []
    present = set(os.listdir(fd))
    missing = sorted(wanted - present)
    if missing:
        raise InvalidInput("paths: %s does not exist in the rootfs; list only existing paths"
                           % "/".join(parts + (missing[0],)), "paths")
    return sorted(wanted, key=os.fsencode)


def tree_entries(rootfs):
    """(relative path, lstat, symlink target or None) of every entry below rootfs, sorted.

    Depth-first in the writer's order; symlinks are never followed. What builds compare.
    """
    root_fd = _open_directory(rootfs)
    try:
        for parts, parent, st, _dir_fd in _walk(root_fd):
            target = os.readlink(parts[-1], dir_fd=parent) if stat.S_ISLNK(st.st_mode) else None
            yield "/".join(parts), st, target
    finally:
        os.close(root_fd)


class _PathSelection:
    """A set of relative paths plus their parent directories (directories' content excluded)."""

    def __init__(self, paths):
        self._children = {}
        for path in paths:
            parts = tuple(part for part in str(path).split("/") if part and part != ".")
            if ".." in parts:
                raise InvalidInput("paths: %r contains '..'; give paths relative to the rootfs"
                                   % path, "paths")
            for depth in range(len(parts)):
                self._children.setdefault(parts[:depth], set()).add(parts[depth])

    def names_under(self, parts):
        return self._children.get(parts, set())


def apply_path_whitelist(rootfs, whitelist):
    """Remove every non-directory not listed (exact paths, as the appc reference code does).

    Directories are kept, with the times extraction gave them (so that a rendered tree does not
    depend on when it was rendered). An empty whitelist keeps everything. Symlinks are never
    followed.
    """
    if not whitelist:
        return
    keep = {"/" + "/".join(part for part in path.split("/") if part) for path in whitelist}
    root_fd = _open_directory(rootfs)
    try:
        for parts, parent, st, _dir_fd in _walk(root_fd):
            if not stat.S_ISDIR(st.st_mode) and "/" + "/".join(parts) not in keep:
                times = os.fstat(parent)
                os.unlink(parts[-1], dir_fd=parent)
                os.utime(parent, ns=(times.st_atime_ns, times.st_mtime_ns))
    finally:
        os.close(root_fd)


def overlay_tree(src_rootfs, dest_rootfs):
    """Copy a rendered tree onto another with extraction's placement rules.

    Owner, mode, mtime, xattrs and hard links within src are kept; sockets and devices skipped.
    """
    src_fd = _open_directory(src_rootfs)
    dest_fd = None
    writer = None
    try:
        dest_fd = _open_directory(dest_rootfs, create=True)
        writer = _TreeWriter(dest_fd)
        writer.directory((), _stat_meta(os.fstat(src_fd), _read_xattrs(src_fd)))
        _overlay_entries(src_fd, writer)
        writer.finish()
    except _PathBlocked as blocked:
        raise ArchiveError("cannot overlay %s onto %s: %s there is %s"
                           % (src_rootfs, dest_rootfs, "/".join(blocked.parts), blocked.what)
                           ) from None
    finally:
        if writer is not None:
            writer.close()
        for fd in (src_fd, dest_fd):
            if fd is not None:
                os.close(fd)


def _overlay_entries(src_fd, writer):
    copied = {}
    for parts, parent, st, dir_fd in _walk(src_fd):
        mode = st.st_mode
        if dir_fd is not None:
            writer.directory(parts, _stat_meta(st, _read_xattrs(dir_fd)))
        elif stat.S_ISLNK(mode):
            target = os.readlink(parts[-1], dir_fd=parent)
            writer.symlink(parts, target, _stat_meta(st, ()))
        elif stat.S_ISFIFO(mode):
            writer.fifo(parts, _stat_meta(st, ()))
        elif stat.S_ISREG(mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in copied:
                writer.hardlink(parts, copied[inode])
                continue
            _overlay_file(parent, parts, writer)
            if st.st_nlink > 1:
                copied[inode] = parts


def _overlay_file(parent, parts, writer):
    source = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
    try:
        st = os.fstat(source)
        writer.file(parts, _stat_meta(st, _read_xattrs(source)),
                    lambda fd: _copy_file_data(source, fd, st.st_size))
    finally:
        os.close(source)


def _stat_meta(st, xattrs):
    return _Meta(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, xattrs)


def _copy_file_data(source, dest, size):
    copied = 0
    if hasattr(os, "copy_file_range"):
        try:
            while copied < size:
                count = os.copy_file_range(source, dest, min(size - copied, 1 << 30))
                if not count:
                    return
                copied += count
            return
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                   errno.ENOTSUP, errno.EBADF, errno.EPERM):
                raise
    os.lseek(source, copied, os.SEEK_SET)
    os.lseek(dest, copied, os.SEEK_SET)
    while copied < size:
        data = os.read(source, min(CHUNK, size - copied))
        if not data:
            return
        _write_all(dest, data)
        copied += len(data)


# ================================================================ writing ACIs

class _HashingWriter:
    """Counts and hashes the uncompressed tar on its way to the compressor."""

    def __init__(self, sink):
        self._sink = sink
        self._sha512 = hashlib.sha512()
        self._offset = 0

    def write(self, data):
        self._sha512.update(data)
        self._sink.write(data)
        self._offset += len(data)
        return len(data)

    def tell(self):
        return self._offset

    def image_id(self):
        return "sha512-" + self._sha512.hexdigest()


def _compressor(raw, compression):
    """A writable file object compressing into raw (closing it leaves raw open)."""
    if compression == "gzip":
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)
    if compression == "bzip2":
        return bz2.BZ2File(raw, "wb", compresslevel=9)
    if compression == "xz":
        return lzma.LZMAFile(raw, "wb", format=lzma.FORMAT_XZ, preset=6)
    return _Uncloseable(raw)


class _Uncloseable:
    def __init__(self, raw):
        self.write = raw.write

    def close(self):
        pass


def write_aci(rootfs, manifest_bytes, out_path, *, compression="gzip", owner=None, paths=None):
    """Write a reproducible ACI of `rootfs` and return its image ID.

    Entries are sorted, `manifest` first (mode 0644, mtime 0), PAX format, integer mtimes,
    numeric owners only (all forced to `owner=(uid, gid)` when given), gzip header mtime 0.
    `paths` (relative paths) limits the rootfs to them and their parent directories; a listed
    directory brings only itself. Device nodes and sockets are left out (extract refuses them).
    """
    if compression not in COMPRESSIONS:
        raise InvalidInput("compression: %r is not supported; use one of %s"
                           % (compression, ", ".join(COMPRESSIONS)), "compression")
    manifest_bytes = bytes(manifest_bytes)
    appc.parse_image_manifest(manifest_bytes)
    selection = None if paths is None else _PathSelection(paths)
    out_path = os.fspath(out_path)
    directory, base = os.path.split(os.path.abspath(out_path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix="." + base + ".", suffix=".tmp")
    try:
        with open(fd, "wb") as raw:
            image_id = _write_tar(raw, compression, rootfs, manifest_bytes, owner, selection)
            os.fchmod(raw.fileno(), 0o644)
        os.replace(temporary, out_path)
    except BaseException:
        _remove_quietly(temporary)
        raise
    return image_id


def _write_tar(raw, compression, rootfs, manifest_bytes, owner, selection):
    sink = _compressor(raw, compression)
    try:
        image_id = _write_entries(sink, rootfs, manifest_bytes, owner, selection)
    except BaseException:
        # Closed now, or the compressor would flush into a closed file when collected.
        with contextlib.suppress(Exception):
            sink.close()
        raise
    sink.close()
    return image_id


def _write_entries(sink, rootfs, manifest_bytes, owner, selection):
    hashing = _HashingWriter(sink)
    tar = tarfile.TarFile(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape", copybufsize=CHUNK)
    root_fd = _open_directory(rootfs)
    try:
        manifest = _new_tarinfo("manifest", tarfile.REGTYPE, 0o644, (0, 0), 0, owner)
        manifest.size = len(manifest_bytes)
        tar.addfile(manifest, io.BytesIO(manifest_bytes))
        _add_directory(tar, "rootfs", os.fstat(root_fd), root_fd, owner)
        _add_tree(tar, root_fd, selection, owner)
        tar.close()
    finally:
        os.close(root_fd)
    return hashing.image_id()


def _new_tarinfo(name, kind, mode, ids, mtime, owner):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = owner if owner is not None else ids
    info.uname = info.gname = ""
    info.mtime = mtime
    return info


def _stat_tarinfo(name, kind, st, owner):
    return _new_tarinfo(name, kind, stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid),
                        st.st_mtime_ns // 1_000_000_000, owner)


def _add_xattrs(info, xattrs):
    for name, value in xattrs:
        info.pax_headers[_PAX_XATTR_PREFIX + name] = value.decode("utf-8", "surrogateescape")


def _add_directory(tar, name, st, fd, owner):
    info = _stat_tarinfo(name, tarfile.DIRTYPE, st, owner)
    _add_xattrs(info, _read_xattrs(fd))
    tar.addfile(info)


def _add_tree(tar, root_fd, selection, owner):
    written_inodes = {}
    for parts, parent, st, dir_fd in _walk(root_fd, selection):
        name = "rootfs/" + "/".join(parts)
        mode = st.st_mode
        if dir_fd is not None:
            _add_directory(tar, name, os.fstat(dir_fd), dir_fd, owner)
        elif stat.S_ISLNK(mode):
            info = _stat_tarinfo(name, tarfile.SYMTYPE, st, owner)
            info.linkname = os.readlink(parts[-1], dir_fd=parent)
            tar.addfile(info)
        elif stat.S_ISFIFO(mode):
            tar.addfile(_stat_tarinfo(name, tarfile.FIFOTYPE, st, owner))
        elif stat.S_ISREG(mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in written_inodes:
                info = _stat_tarinfo(name, tarfile.LNKTYPE, st, owner)
                info.linkname = written_inodes[inode]
                tar.addfile(info)
                continue
            _add_file(tar, name, parent, parts[-1], owner)
            if st.st_nlink > 1:
                written_inodes[inode] = name


def _add_file(tar, name, parent, entry, owner):
    fd = os.open(entry, _READ_FLAGS, dir_fd=parent)
    with open(fd, "rb", buffering=0) as source:
        st = os.fstat(fd)
        info = _stat_tarinfo(name, tarfile.REGTYPE, st, owner)
        info.size = st.st_size
        _add_xattrs(info, _read_xattrs(fd))
        tar.addfile(info, source)


# ================================================================ rootfs tarballs

def write_aci_from_tarball(tarball, manifest_bytes, out_path, *, compression="gzip"):
    """Write an ACI of a rootfs tarball (plain, gzip, bzip2 or xz) and return its image ID.

    Streams: nothing is extracted on the host. Each member is renamed below `rootfs/` (leading
    "./" and "/" dropped, hard link targets too), owners kept as numbers, only xattrs kept of its
    PAX headers; device nodes are left out (extract refuses them). Anything else an import
    refuses (`..`, links leaving the rootfs) is left for the import to refuse.
    """
    if compression not in COMPRESSIONS:
        raise InvalidInput("compression: %r is not supported; use one of %s"
                           % (compression, ", ".join(COMPRESSIONS)), "compression")
    manifest_bytes = bytes(manifest_bytes)
    appc.parse_image_manifest(manifest_bytes)
    out_path = os.fspath(out_path)
    directory, base = os.path.split(os.path.abspath(out_path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix="." + base + ".", suffix=".tmp")
    try:
        with open(fd, "wb") as raw:
            sink = _compressor(raw, compression)
            try:
                image_id = _convert_tarball(tarball, sink, manifest_bytes)
            finally:
                sink.close()
            os.fchmod(raw.fileno(), 0o644)
        os.replace(temporary, out_path)
    except tarfile.TarError as error:
        _remove_quietly(temporary)
        raise ArchiveError("%s is not a readable tar archive (%s); give a rootfs tarball" % (tarball, error)) from None
    except BaseException:
        _remove_quietly(temporary)
        raise
    return image_id


def _tarball_name(name):
    while name.startswith(("./", "/")):
        name = name[1:] if name.startswith("/") else name[2:]
    return "" if name in (".", "") else name.rstrip("/")


def _convert_tarball(tarball, sink, manifest_bytes):
    import copy
    hashing = _HashingWriter(sink)
    out = tarfile.TarFile(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape", copybufsize=CHUNK)
    manifest = _new_tarinfo("manifest", tarfile.REGTYPE, 0o644, (0, 0), 0, None)
    manifest.size = len(manifest_bytes)
    out.addfile(manifest, io.BytesIO(manifest_bytes))
    root_written = False
    with tarfile.open(tarball, "r|*", encoding="utf-8", errors="surrogateescape") as source:
        for member in source:
            name = _tarball_name(member.name)
            if member.ischr() or member.isblk() or (not name and root_written):
                continue
            if not root_written:
                root = _new_tarinfo("rootfs", tarfile.DIRTYPE, 0o755, (0, 0), 0, None)
                if not name and member.isdir():
                    root.mode, root.uid, root.gid, root.mtime = member.mode, member.uid, member.gid, int(member.mtime)
                out.addfile(root)
                root_written = True
                if not name:
                    continue
            entry = copy.copy(member)
            entry.name = "rootfs/" + name
            if member.islnk():
                entry.linkname = "rootfs/" + _tarball_name(member.linkname)
            entry.uname = entry.gname = ""
            entry.mtime = int(member.mtime)
            entry.pax_headers = {k: v for k, v in member.pax_headers.items() if k.startswith(_PAX_XATTR_PREFIX)}
            out.addfile(entry, source.extractfile(member) if member.isreg() else None)
    if not root_written:
        out.addfile(_new_tarinfo("rootfs", tarfile.DIRTYPE, 0o755, (0, 0), 0, None))
    out.close()
    return hashing.image_id()
