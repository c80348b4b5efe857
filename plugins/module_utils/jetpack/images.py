"""Images: import, look up, export and remove sealed appc images.

On disk an image is

    <root>/images/<key>                    dataset, mounted at <mountpoint>/images/<key>/rootfs
    <mountpoint>/images/<key>/manifest     the manifest exactly as in the archive
    <mountpoint>/images/<key>/image.json   what the store knows: ID, name, labels, source, deps
    <mountpoint>/images/<key>/aci          the archive as imported (export copies it)

An image without dependencies is a fresh dataset; an image with one dependency is a ZFS clone of
its parent's `@seal` snapshot with its own rootfs extracted on top; several dependencies are
rendered in the manifest's order into a fresh dataset. `pathWhitelist` is applied to the
rendered tree. Sealing (`@seal`, `readonly=on`, then `jetpack:state=sealed` last) is the commit
point: anything before it is collected as garbage by the next run.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
from typing import Optional

from . import appc, fetch
from .errors import InUse, InvalidInput, NotFound
from .store import KIND, SEALED, STATE, Store, read_json, write_json

SEAL = "@seal"
RECORD = "image.json"
ARCHIVE = "aci"
MANIFEST = "manifest"


class Image:
    """A sealed image of the store: its dataset, manifest and the store's record of it."""

    def __init__(self, key: str, dataset: str, id: str, manifest: dict, record: dict, rootfs: str,
                 used: int = 0):
        self.key = key
        self.dataset = dataset
        self.id = id
        self.manifest = manifest
        self.record = record
        self.rootfs = rootfs
        self.used = used

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def labels(self) -> dict:
        return appc.normalize_labels(self.manifest.get("labels", []))

    def info(self) -> dict:
        """The image as modules and the CLI return it."""
        manifest = self.manifest
        return {
            "id": self.id,
            "name": self.name,
            "labels": self.labels,
            "annotations": {a["name"]: a["value"] for a in manifest.get("annotations", [])},
            "app": manifest.get("app"),
            "dependencies": list(self.record.get("dependencies", [])),
            "path_whitelist": list(manifest.get("pathWhitelist", [])),
            "dataset": self.dataset,
            "rootfs": self.rootfs,
            "imported": self.record.get("imported"),
            "size": self.used,
            "source": self.record.get("source", {}).get("location"),
            "manifest": manifest,
        }


# --- lookups ------------------------------------------------------------------------------------
def list_images(store: Store) -> list:
    """Every sealed image, oldest import first; half-made ones are invisible."""
    images = []
    for dataset, props in store.list_objects("images").items():
        if props.get(STATE) != SEALED or props.get(KIND) != "image":
            continue
        key = dataset.rsplit("/", 1)[1]
        try:
            record = read_json(store.path("images", key, RECORD))
            # Validated when imported, and the store is the source of truth: no need to again.
            manifest = read_json(store.path("images", key, MANIFEST))
        except (OSError, ValueError):
            continue  # a sealed dataset whose files are gone is reported by `jetpack gc`, not here
        images.append(Image(key=key, dataset=dataset, id=props.get("jetpack:id", record["id"]),
                            manifest=manifest, record=record, rootfs=store.path("images", key, "rootfs"),
                            used=_int(props.get("used"))))
    images.sort(key=lambda i: (i.record.get("imported", ""), i.id))
    return images


def find_images(store: Store, name: Optional[str] = None, labels: Optional[dict] = None,
                image_id: Optional[str] = None, images: Optional[list] = None) -> list:
    """Images matching every criterion given: exact ID, name, and a subset of labels."""
    found = []
    for image in list_images(store) if images is None else images:
        if image_id and image.id != image_id:
            continue
        if name and image.name != name:
            continue
        if labels and not appc.labels_match(labels, image.labels):
            continue
        found.append(image)
    return found


def get_image(store: Store, image_id: str, images: Optional[list] = None) -> Optional[Image]:
    found = find_images(store, image_id=image_id, images=images)
    return found[0] if found else None


def image_users(store: Store, image: Image, images: Optional[list] = None) -> list:
    """Who uses an image: child images (by ID) and any clone of its @seal (pods, builds).

    Returns dicts {"kind", "name", "dataset"}; a child image also has its "id".
    """
    users = [{"kind": "image", "name": other.name, "id": other.id, "dataset": other.dataset}
             for other in (list_images(store) if images is None else images)
             if image.id in other.record.get("dependencies", []) and other.id != image.id]
    seal = image.dataset + SEAL
    for dataset, props in store.list_objects("pods").items():
        if props.get("origin") == seal:
            users.append({"kind": "pod", "name": props.get("jetpack:name") or dataset, "dataset": dataset})
    return users


def describe_users(users: list) -> str:
    return ", ".join("%s %s" % (u["kind"], u["name"]) for u in users)


# --- import -------------------------------------------------------------------------------------
class ImportRequest:
    """What a task asks to import; name, labels and image_id are checked against the archive."""

    def __init__(self, source: str, image_id: Optional[str] = None, name: Optional[str] = None,
                 labels: Optional[dict] = None, allow_http: bool = False, validate_certs: bool = True,
                 allow_setuid: bool = False, limits=None, origin: Optional[dict] = None, progress=None):
        self.source = source
        self.image_id = image_id
        self.name = name
        self.labels = labels or {}
        self.allow_http = allow_http
        self.validate_certs = validate_certs
        self.allow_setuid = allow_setuid
        self.limits = limits  # an aci.Limits; None: the defaults
        self.origin = origin  # what image.json records as the source instead of the file (builds)
        self.progress = progress  # progress(url, done, total) while downloading; see fetch.Client.download


def cached_import(store: Store, request: ImportRequest, images: list) -> Optional[Image]:
    """The image already imported from this very file (same path, size, mtime, inode), if any."""
    path = fetch.local_path(request.source)
    if path is None or not os.path.exists(path):
        return None
    signature = fetch.file_signature(path)
    for image in images:
        if image.record.get("source") == signature and _matches(image, request):
            return image
    return None


def already_present(store: Store, request: ImportRequest, images: list) -> Optional[Image]:
    """The image a request asks for when the store has it already, found without reading the source."""
    image = get_image(store, request.image_id, images) if request.image_id else None
    image = image or cached_import(store, request, images)
    if image:
        _check_expected(image.manifest, image.id, request)
    return image


def plan_import(store: Store, request: ImportRequest) -> tuple:
    """(existing image or None, manifest, image ID) without changing anything (check mode)."""
    fetch.check_location(request.source, request.allow_http)
    images = list_images(store)
    existing = already_present(store, request, images)
    if existing:
        return existing, existing.manifest, existing.id
    with _source_file(store, request, persistent=False) as path:
        manifest, _raw, image_id = _aci().read_manifest(path, request.limits or _aci().Limits())
    _check_expected(manifest, image_id, request)
    return get_image(store, image_id, images), manifest, image_id


def import_image(store: Store, request: ImportRequest) -> tuple:
    """Import an ACI; returns (image, changed). Identical re-imports change nothing."""
    fetch.check_location(request.source, request.allow_http)
    existing = already_present(store, request, list_images(store))
    if existing:
        return existing, False
    with store.lock():
        store.ensure()
        store.collect_garbage("images", SEALED)
        images = list_images(store)
        existing = already_present(store, request, images)
        if existing:
            return existing, False
        with _source_file(store, request, persistent=True) as path:
            return _import_file(store, request, path, images)


def _import_file(store: Store, request: ImportRequest, path: str, images: list) -> tuple:
    import uuid  # only here: importing uuid costs a no-op run more than the rest of this file
    key = uuid.uuid4().hex
    image_dir = store.path("images", key)
    dataset = store.dataset("images", key)
    os.mkdir(image_dir, 0o750)
    made = {}

    def prepare(manifest):
        _check_expected(manifest, None, request)
        parents = resolve_dependencies(store, manifest, images)
        rootfs = os.path.join(image_dir, "rootfs")
        props = {"mountpoint": rootfs, KIND: "image", STATE: "importing"}
        if len(parents) == 1:
            store.zfs.clone(parents[0].dataset + SEAL, dataset, props)
        else:
            store.zfs.create(dataset, props)
        made["dataset"] = dataset
        for parent in parents if len(parents) > 1 else ():
            _aci().overlay_tree(parent.rootfs, rootfs)
        made["parents"] = parents
        return rootfs

    try:
        result = _aci().extract(path, prepare, allow_setuid=request.allow_setuid,
                                limits=request.limits or _aci().Limits(),
                                expected_id=request.image_id, copy_to=os.path.join(image_dir, ARCHIVE))
        duplicate = get_image(store, result.image_id, images)
        if duplicate:
            _discard(store, made.get("dataset"), image_dir)
            return duplicate, False
        whitelist = result.manifest.get("pathWhitelist") or []
        if whitelist:
            _aci().apply_path_whitelist(os.path.join(image_dir, "rootfs"), whitelist)
        _write_files(image_dir, result, request, made["parents"])
        seal(store, dataset, result.image_id, result.manifest["name"])
    except BaseException:
        _discard(store, made.get("dataset"), image_dir)
        raise
    image = get_image(store, result.image_id)
    return image, True


def import_made_archive(store: Store, path: str, request: ImportRequest) -> tuple:
    """Import an archive this host just wrote (a build or a base image); call with the lock held.

    (image, changed): an image with the same ID already in the store is returned unchanged.
    """
    images = list_images(store)
    existing = get_image(store, request.image_id, images) if request.image_id else None
    if existing:
        return existing, False
    return _import_file(store, request, path, images)


def _write_files(image_dir: str, result, request: ImportRequest, parents: list) -> None:
    with open(os.path.join(image_dir, MANIFEST), "wb") as f:
        f.write(result.manifest_bytes)
    path = fetch.local_path(request.source)
    source = fetch.file_signature(path) if path else {"location": request.source}
    if request.origin is not None:
        source = dict(request.origin)
    write_json(os.path.join(image_dir, RECORD), {
        "id": result.image_id,
        "imported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "dependencies": [p.id for p in parents],
        "compression": result.compression,
    })


def seal(store: Store, dataset: str, image_id: str, name: str) -> None:
    """Make an image immutable; `jetpack:state=sealed` goes last: it is the commit point."""
    store.zfs.snapshot(dataset + SEAL)
    store.zfs.set(dataset, {"readonly": "on", "jetpack:id": image_id, "jetpack:name": name})
    store.zfs.set(dataset, {STATE: SEALED})


def _discard(store: Store, dataset: Optional[str], image_dir: str) -> None:
    if dataset and store.zfs.exists(dataset):
        store.zfs.destroy(dataset, recursive=True)
    if os.path.lexists(image_dir):
        store.remove_directory(image_dir)


@contextlib.contextmanager
def _source_file(store: Store, request: ImportRequest, persistent: bool):
    """A local file holding the archive: the source itself, or a download removed afterwards."""
    path = fetch.local_path(request.source)
    if path is not None:
        if not os.path.isfile(path):
            raise NotFound("source %s does not exist or is not a file; check the path" % path)
        yield path
        return
    directory = store.tmp_dir() if persistent else tempfile.gettempdir()
    path = fetch.download(request.source, directory, request.validate_certs, progress=request.progress)
    try:
        yield path
    finally:
        os.unlink(path)


def _matches(image: Image, request: ImportRequest) -> bool:
    return ((not request.name or image.name == request.name)
            and appc.labels_match(request.labels, image.labels)
            and (not request.image_id or image.id == request.image_id))


def _check_expected(manifest: dict, image_id: Optional[str], request: ImportRequest) -> None:
    """The archive must hold what the task asked for."""
    if request.name and manifest["name"] != request.name:
        raise InvalidInput("the archive %s holds image %r, not %r; fix name or source"
                           % (request.source, manifest["name"], request.name), field="name")
    have = appc.normalize_labels(manifest.get("labels", []))
    if not appc.labels_match(request.labels, have):
        raise InvalidInput("the archive %s has labels %s, which do not match %s; fix labels or source"
                           % (request.source, _labels_text(have), _labels_text(request.labels)),
                           field="labels")
    if image_id and request.image_id and image_id != request.image_id:
        raise InvalidInput("the archive %s has ID %s, not the pinned %s; fix id or source"
                           % (request.source, image_id, request.image_id), field="id")


def resolve_dependencies(store: Store, manifest: dict, images: list) -> list:
    """The stored images a manifest depends on, in its order; NotFound says what to import."""
    parents = []
    for index, dep in enumerate(manifest.get("dependencies", [])):
        where = "dependencies[%d] (%s)" % (index, dep["imageName"])
        if dep.get("imageID"):
            image = get_image(store, dep["imageID"], images)
            if image is None:
                raise NotFound("%s: image %s is not in the store; import it first"
                               % (where, dep["imageID"]))
            if image.name != dep["imageName"]:
                raise InvalidInput("%s: image %s is named %r, not %r"
                                   % (where, dep["imageID"], image.name, dep["imageName"]))
        else:
            labels = appc.normalize_labels(dep.get("labels", []))
            candidates = find_images(store, dep["imageName"], labels, images=images)
            if not candidates:
                raise NotFound("%s: no image named %s with labels %s is in the store; import it first"
                               % (where, dep["imageName"], _labels_text(labels)))
            image = candidates[-1]  # the newest import wins, as `latest` users expect
        parents.append(image)
    return parents


# --- removal ------------------------------------------------------------------------------------
def remove_images(store: Store, targets: list) -> list:
    """Remove images, children before parents; refuse (nothing removed) while others use them."""
    with store.lock():
        images = list_images(store)
        ids = {t.id for t in targets}
        targets = [image for image in images if image.id in ids]
        check_removable(store, targets, images)
        for image in _children_first(targets):
            store.zfs.destroy(image.dataset, recursive=True)
            store.remove_directory(store.path("images", image.key))
        return [image.id for image in targets]


def check_removable(store: Store, targets: list, images: Optional[list] = None) -> None:
    """Raise InUse, naming the users, when anything outside targets uses one of them."""
    ids = {t.id for t in targets}
    for image in targets:
        users = [u for u in image_users(store, image, images) if u.get("id") not in ids]
        if users:
            raise InUse("image %s (%s) is used by %s; remove those first"
                        % (image.name, image.id, describe_users(users)),
                        [describe_users([u]) for u in users])


def _children_first(images: list) -> list:
    ordered, pending = [], list(images)
    while pending:
        for image in pending:
            if not any(image.id in other.record.get("dependencies", []) for other in pending):
                ordered.append(image)
                pending.remove(image)
                break
    return ordered


# --- export -------------------------------------------------------------------------------------
def export_image(store: Store, image: Image, path: str, flat: bool = False,
                 compression: str = "gzip", check_only: bool = False) -> tuple:
    """Write image as an ACI at path; returns (changed, ID of the written archive).

    Not flat: the archive as imported, keeping its dependencies (same ID as the image).
    Flat: the rendered tree with dependencies and pathWhitelist dropped, written reproducibly.
    """
    if not os.path.isabs(path):
        raise InvalidInput("export_path %r must be an absolute path" % path, field="export_path")
    current = _aci().compute_image_id(path) if os.path.isfile(path) else None
    # The ID hashes the uncompressed tar, so it names the content whatever the compression.
    wanted = image.record.get("flat_id") if flat else image.id
    if current is not None and current == wanted:
        return False, current
    if check_only:
        return True, wanted
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".export-")
    os.close(fd)
    try:
        if flat:
            written = _aci().write_aci(image.rootfs, appc.serialize_manifest(flat_manifest(image.manifest)),
                                       tmp, compression=compression)
            _remember_flat_id(store, image, written)
        else:
            shutil.copyfile(store.path("images", image.key, ARCHIVE), tmp)
            written = image.id
        if written == current:
            os.unlink(tmp)
            return False, written
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True, written


def flat_manifest(manifest: dict) -> dict:
    flat = dict(manifest)
    flat.pop("dependencies", None)
    flat.pop("pathWhitelist", None)
    return flat


def _remember_flat_id(store: Store, image: Image, image_id: str) -> None:
    record = dict(image.record, flat_id=image_id)
    with store.lock():
        write_json(store.path("images", image.key, RECORD), record)
    image.record = record


# --- helpers ------------------------------------------------------------------------------------
def _aci():
    """The archive code, imported only to read or write an archive: a no-op run never compiles it."""
    from . import aci
    return aci


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _labels_text(labels: dict) -> str:
    return ",".join("%s=%s" % kv for kv in sorted(labels.items())) or "(none)"
