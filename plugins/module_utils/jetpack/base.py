"""Base images: images without a parent, made from a rootfs, Debian's debootstrap or FreeBSD's base.txz.

Every kind ends as an ordinary ACI imported into the store, so a base image is exactly what any
host importing its archive gets. Sources:

- {"rootfs": path}: a directory (written with aci.write_aci) or a tarball (converted member by
  member with aci.write_aci_from_tarball, nothing extracted on the host);
- {"debootstrap": {"suite", "variant", "include", "mirror"}}: `debootstrap --variant=minbase` into a
  directory of the store's tmp, the mirror read from this host's apt sources unless given;
- {"freebsd_base": {"path" | "url", "manifest"}}: a release's base.txz, checked against the
  SHA-256 its release MANIFEST lists (six TAB-separated columns: archive, sha256, entries,
  distribution, description, default), then converted as a tarball.

Like builds, base images are cached by a key (the annotation build.BUILD_KEY): sha256 over the
source's identity (a directory's listing with sizes and mtimes, a tarball's sha256, the
debootstrap options, the MANIFEST's sha256 of base.txz) and the manifest asked for.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from typing import Optional

from . import appc, build, fetch, images
from .errors import ArchiveError, CommandError, InvalidInput, NotFound
from .store import SEALED, Store, remove_work_tree

KINDS = ("rootfs", "debootstrap", "freebsd_base")
APT_SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources")
DEBOOTSTRAP = "debootstrap"
VARIANTS = ("minbase", "buildd", "fakechroot")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_SUITE = re.compile(r"[a-z0-9][a-z0-9.-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MACHINE_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "aarch64", "arm64": "aarch64", "i686": "i386",
                "i386": "i386", "armv7l": "armv7l", "armv6l": "armv6l", "ppc64le": "ppc64le", "s390x": "s390x"}


class BaseSpec:
    """What a task asks for: the image's name, labels, app and annotations, and its source."""

    def __init__(self, name: str, source: dict, labels: Optional[dict] = None, app: Optional[dict] = None,
                 annotations: Optional[dict] = None, allow_setuid: bool = False):
        self.name = appc.validate_identifier(name, "name")
        given = [k for k in KINDS if (source or {}).get(k)]
        if len(given) != 1:
            raise InvalidInput("base needs exactly one of %s" % ", ".join(KINDS), field="base")
        self.kind = given[0]
        self.source = source[self.kind]
        self.labels = appc.normalize_labels(labels or {})
        self.app = app
        self.annotations = {str(k): str(v) for k, v in (annotations or {}).items()}
        self.allow_setuid = bool(allow_setuid)


def plan(store: Store, spec: BaseSpec) -> tuple:
    """(image an identical base already made or None, key, manifest); changes nothing."""
    identity = source_identity(spec)
    manifest = base_manifest(spec)
    key = hashlib.sha256(json.dumps({"version": build.KEY_VERSION, "kind": spec.kind, "source": identity,
                                     "manifest": json.loads(appc.serialize_manifest(manifest).decode())},
                                    sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    annotations = manifest.get("annotations", []) + [{"name": build.BUILD_KEY, "value": key}]
    manifest["annotations"] = sorted(annotations, key=lambda a: a["name"])
    return build.find_built(store, key), key, manifest


def make(store: Store, spec: BaseSpec) -> tuple:
    """Make (or find) a base image: (image, changed)."""
    existing, key, manifest = plan(store, spec)
    if existing:
        return existing, False
    with store.lock():
        store.ensure()
        store.collect_garbage("images", SEALED)
        existing = build.find_built(store, key)
        if existing:
            return existing, False
        work = tempfile.mkdtemp(dir=store.tmp_dir(), prefix="base-")
        try:
            archive, image_id = _write_archive(store, spec, manifest, work)
            request = images.ImportRequest(source=archive, image_id=image_id, allow_setuid=spec.allow_setuid,
                                           origin={"location": "base", "kind": spec.kind, "key": key})
            return images.import_made_archive(store, archive, request)
        finally:
            remove_work_tree(work)


def base_manifest(spec: BaseSpec) -> dict:
    labels = dict(default_labels(spec.kind))
    labels.update(spec.labels)
    manifest = {"acKind": "ImageManifest", "acVersion": appc.AC_VERSION, "name": spec.name,
                "labels": appc.labels_to_list(labels)}
    app = build.app_section(None, spec.app)
    if app:
        manifest["app"] = app
    if spec.annotations:
        manifest["annotations"] = [{"name": k, "value": v} for k, v in sorted(spec.annotations.items())]
    return appc.parse_image_manifest(manifest)


def default_labels(kind: str) -> dict:
    """os and arch of what a debootstrap (this host's) or a FreeBSD base gives; none for a rootfs."""
    arch = MACHINE_ARCH.get(platform.machine())
    if kind == "debootstrap":
        return {"os": "linux", "arch": arch} if arch else {"os": "linux"}
    if kind == "freebsd_base":
        return {"os": "freebsd"}
    return {}


# --- identities ---------------------------------------------------------------------------------
def source_identity(spec: BaseSpec):
    if spec.kind == "rootfs":
        return rootfs_identity(_absolute(spec.source, "base.rootfs"))
    if spec.kind == "debootstrap":
        options = debootstrap_options(spec.source)
        return {k: v for k, v in options.items() if k != "mirror" or spec.source.get("mirror")}
    manifest_text = _read_location(spec.source.get("manifest"), "base.freebsd_base.manifest")
    return {"base.txz": release_manifest_entry(manifest_text, "base.txz")["sha256"]}


def rootfs_identity(path: str) -> str:
    """A directory: sha256 of its listing (type, mode, owner, size, mtime, link target of every
    entry); a tarball: sha256 of its bytes."""
    if os.path.isdir(path):
        from . import aci
        digest = hashlib.sha256()
        for name, st, target in aci.tree_entries(path):
            digest.update(("%s\0%o\0%d\0%d\0%d\0%d\0%s\n" % (name, st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                                             st.st_mtime_ns, target or "")).encode("utf-8", "surrogateescape"))
        return "dir:" + digest.hexdigest()
    if not os.path.isfile(path):
        raise NotFound("base.rootfs %s is neither a directory nor a tarball; check the path" % path)
    return "tar:" + file_sha256(path)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _absolute(path, field: str) -> str:
    if not isinstance(path, str) or not os.path.isabs(path):
        raise InvalidInput("%s must be an absolute path on the managed host" % field, field=field)
    return path


def _read_location(location, field: str) -> str:
    """The text of a small file given as an absolute path or an https URL."""
    if not location:
        raise InvalidInput("%s is required: the release's MANIFEST (path or https URL)" % field, field=field)
    fetch.check_location(location)
    path = fetch.local_path(location)
    if path is not None:
        with open(_absolute(path, field), encoding="utf-8") as f:
            return f.read()
    directory = tempfile.mkdtemp(prefix="jetpack-manifest-")
    try:
        with open(fetch.download(location, directory), encoding="utf-8") as f:
            return f.read()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- archives -----------------------------------------------------------------------------------
def _write_archive(store: Store, spec: BaseSpec, manifest: dict, work: str) -> tuple:
    from . import aci
    out = os.path.join(work, "image.aci")
    manifest_bytes = appc.serialize_manifest(manifest)
    if spec.kind == "rootfs":
        path = spec.source
        if os.path.isdir(path):
            return out, aci.write_aci(path, manifest_bytes, out)
        return out, aci.write_aci_from_tarball(path, manifest_bytes, out)
    if spec.kind == "debootstrap":
        target = os.path.join(work, "rootfs")
        run_debootstrap(debootstrap_options(spec.source), target)
        return out, aci.write_aci(target, manifest_bytes, out)
    tarball = _freebsd_base_file(spec.source, work)
    return out, aci.write_aci_from_tarball(tarball, manifest_bytes, out)


# --- debootstrap --------------------------------------------------------------------------------
def debootstrap_options(options: dict) -> dict:
    field = "base.debootstrap"
    suite = str(options.get("suite") or "")
    if not _SUITE.fullmatch(suite):
        raise InvalidInput("%s.suite %r must be a Debian suite such as bookworm" % (field, suite), field=field)
    variant = options.get("variant") or "minbase"
    if variant not in VARIANTS:
        raise InvalidInput("%s.variant must be one of %s" % (field, ", ".join(VARIANTS)), field=field)
    include = sorted(str(p) for p in options.get("include") or ())
    for package in include:
        if not _PACKAGE.fullmatch(package):
            raise InvalidInput("%s.include: %r is not a Debian package name" % (field, package), field=field)
    mirror = options.get("mirror") or ""
    if mirror and not re.fullmatch(r"(https?|file)://[^\s]+", mirror):
        raise InvalidInput("%s.mirror %r must be an http(s) or file URL" % (field, mirror), field=field)
    return {"suite": suite, "variant": variant, "include": include, "mirror": mirror}


def argv_debootstrap(options: dict, target: str, mirror: str) -> list:
    argv = [DEBOOTSTRAP, "--variant=" + options["variant"]]
    if options["include"]:
        argv.append("--include=" + ",".join(options["include"]))
    # debootstrap takes no "--": the suite (validated), an absolute target and a URL cannot pass for options.
    return argv + [options["suite"], target, mirror]


def host_mirror(suite: str, patterns=APT_SOURCES) -> str:
    """The archive this host's apt uses for suite (else for its own release), read from its sources."""
    entries = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            entries += parse_deb822_sources(text) if path.endswith(".sources") else parse_one_line_sources(text)
    for wanted in (lambda s: s == suite, lambda s: "-" not in s and "/" not in s):
        for uri, suites in entries:
            if any(wanted(s) for s in suites):
                return uri
    raise NotFound("no Debian archive for %s in this host's apt sources (%s); give base.debootstrap.mirror"
                   % (suite, ", ".join(APT_SOURCES)))


def parse_one_line_sources(text: str) -> list:
    """[(uri, [suite])] of the `deb` lines of a sources.list(5) file."""
    entries = []
    for line in text.splitlines():
        fields = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(fields) >= 3 and fields[0] == "deb":
            entries.append((fields[1], [fields[2]]))
    return entries


def parse_deb822_sources(text: str) -> list:
    """[(uri, [suite])] of the enabled `deb` stanzas of a deb822 .sources file."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _sep, value = line.partition(":")
            fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            entries += [(uri, fields.get("suites", [])) for uri in fields.get("uris", [])]
    return entries


def run_debootstrap(options: dict, target: str) -> None:
    if not shutil.which(DEBOOTSTRAP):
        raise NotFound("debootstrap is not installed on this host; install it (apt-get install debootstrap)")
    argv = argv_debootstrap(options, target, options["mirror"] or host_mirror(options["suite"]))
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if proc.returncode != 0:
        out, err = (p.decode("utf-8", "replace")[-4000:] for p in (proc.stdout, proc.stderr))
        raise CommandError("debootstrap failed (exit status %d): %s; check the suite and mirror"
                           % (proc.returncode, (err.strip() or out.strip())[-500:]), argv, proc.returncode, out, err)
    # The downloaded packages are installed: not part of the image.
    for deb in glob.glob(os.path.join(target, "var/cache/apt/archives/*.deb")):
        os.unlink(deb)


# --- FreeBSD base.txz ---------------------------------------------------------------------------
def parse_release_manifest(text: str) -> dict:
    """{archive: {"sha256", "entries", "distribution", "description", "default"}} of a release MANIFEST."""
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 6 or not _SHA256.fullmatch(fields[1]) or not fields[2].isdigit():
            raise InvalidInput("MANIFEST line %d is not six TAB-separated columns (archive, sha256, entries, "
                               "distribution, description, on|off); give the release's own MANIFEST" % number,
                               field="base.freebsd_base.manifest")
        found[fields[0]] = {"sha256": fields[1], "entries": int(fields[2]), "distribution": fields[3],
                            "description": fields[4].strip('"'), "default": fields[5] == "on"}
    return found


def release_manifest_entry(text: str, archive: str) -> dict:
    entries = parse_release_manifest(text)
    if archive not in entries:
        raise InvalidInput("the MANIFEST lists no %s; give the MANIFEST of the release the archive comes from"
                           % archive, field="base.freebsd_base.manifest")
    return entries[archive]


def verify_distribution(path: str, manifest_text: str, archive: str = "base.txz") -> None:
    """Refuse a distribution file whose SHA-256 is not the one the release MANIFEST lists."""
    wanted = release_manifest_entry(manifest_text, archive)["sha256"]
    have = file_sha256(path)
    if have != wanted:
        raise ArchiveError("%s has SHA-256 %s but the release MANIFEST lists %s for %s; download it again "
                           "from the same release" % (path, have, wanted, archive))


def _freebsd_base_file(source: dict, work: str) -> str:
    field = "base.freebsd_base"
    location = source.get("path") or source.get("url")
    if not location:
        raise InvalidInput("%s needs path or url of base.txz" % field, field=field)
    fetch.check_location(location)
    path = fetch.local_path(location) or fetch.download(location, work)
    verify_distribution(path, _read_location(source.get("manifest"), field + ".manifest"))
    return path
