"""Builds: a child image made from a parent image by a few declared steps, in a temporary pod.

A build runs with the store lock held:

1. The parent is resolved to one image ID, the inputs are read (a copied file by its content) and
   the build key computed: sha256 over the parent ID, the normalised steps, the network and the
   child's manifest. An image whose annotation `jetpack.runtime/build-key` holds the key is what an
   identical build made before (here, or on a host that imported its ACI): nothing runs.
2. A build pod: a directory pods/<key> holding build.json (never pod.json, so that whatever a
   crash leaves is garbage: `collect_garbage` stops a build pod still running, then
   pods.collect_garbage removes it) and the dataset pods/<key>-app-build, a clone of the parent's
   @seal. Copy steps write from the host side without following any symlink; run steps run as
   root in the pod (FreeBSD: securelevel 0 and allow.chflags). The pod starts with the first run
   step and is stopped before anything is compared.
3. What changed: the build rootfs compared with the parent's sealed rootfs entry by entry. A file
   a clone did not touch keeps its inode and ctime; anything else is compared by type, mode,
   owner, size, mtime, symlink target and content. zfs-fuse has no `zfs diff`; the comparison
   gives the same answer on every ZFS, so it is the one way.
4. The child's ACI: its manifest (the parent as its dependency, by ID; a pathWhitelist of every
   non-directory of the result when files of the parent were deleted) and only the changed
   entries, written reproducibly. Its ID is the image's ID.
5. That ACI is imported as any child image is: a clone of the parent's @seal with the layer
   extracted on top. So a built image is exactly what every host importing its ACI gets (setuid
   bits, device nodes and deleted directories fare as in an import), and exporting it gives the
   same archive and ID. The build pod is destroyed before the import.

A failed step removes the pod and its clone and raises BuildError with the step's output.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import tempfile
import time
import uuid as uuidlib
from collections import namedtuple
from typing import Optional

from . import appc, beneath, execution, images
from .errors import InvalidInput, JetpackError, NotFound
from .store import KIND, SEALED, Store, listdir, read_json, write_json

BUILD_KEY = "jetpack.runtime/build-key"  # the annotation holding a built image's key
KEY_VERSION = 1  # bump when what a key covers changes: older builds then run again
APP = "build"
RECORD = "build.json"
NETWORKS = ("host", "none")
# FreeBSD build jails: jail(8) securelevel 0 and allow.chflags let installers set and clear file
# flags (schg on /lib, /bin...), which the pods' securelevel 2 refuses. Linux has no equivalent.
BUILD_JAIL = {"securelevel": "0", "allow.chflags": True}
# Mount points the engines create in an app rootfs that lacks them; not the build's doing.
RUNTIME_DIRS = ("dev", "proc", "sys")
OUTPUT_TAIL = 4000  # characters of a step's output shown in results and errors
MAX_COPY_BYTES = 256 << 20
CHUNK = 1 << 20

Changes = namedtuple("Changes", "changed deleted files")


class BuildError(JetpackError):
    """A build step failed; `output` is the end of what it printed."""

    def __init__(self, message: str, step: int, rc=None, output: str = ""):
        super().__init__(message)
        self.step = step
        self.rc = rc
        self.output = output

    def details(self) -> dict:
        return {"step": self.step, "rc": self.rc, "stdout": self.output}


# --- the spec -----------------------------------------------------------------------------------
class BuildSpec:
    """What a task asks to build.

    parent: {"id": "sha512-..."} or {"name": ..., "labels": {...}}. steps: a list of
    {"copy": {"content" | "src", "dest", "mode", "owner", "group"}} and {"run": argv or a shell
    string, "environment": {}}. app: {"exec", "user", "group", "environment": {}, "working_directory",
    "ports": [{"name", "port", "protocol", "count", "socket_activated"}], "mount_points": [{"name",
    "path", "read_only"}]}, merged over the parent's app. network: "host" (default) or "none".
    """

    def __init__(self, name: str, parent: dict, steps: list, labels: Optional[dict] = None,
                 app: Optional[dict] = None, annotations: Optional[dict] = None, network: str = "host",
                 allow_setuid: bool = False):
        self.name = appc.validate_identifier(name, "name")
        self.parent = dict(parent or {})
        self.steps = list(steps or [])
        self.labels = appc.normalize_labels(labels or {})
        self.app = dict(app) if app else None
        self.annotations = {str(k): str(v) for k, v in (annotations or {}).items()}
        if network not in NETWORKS:
            raise InvalidInput("build.network must be host or none", field="build.network")
        self.network = network
        self.allow_setuid = bool(allow_setuid)


class Plan:
    """A build worked out without running it: the parent, loaded steps, manifest and key."""

    def __init__(self, spec: BuildSpec, parent: images.Image, steps: list, manifest: dict, key: str):
        self.spec = spec
        self.parent = parent
        self.steps = steps
        self.manifest = manifest
        self.key = key


def plan(store: Store, spec: BuildSpec, known: Optional[list] = None) -> Plan:
    """Resolve the parent, read every input and compute the key; changes nothing."""
    known = images.list_images(store) if known is None else known
    parent = resolve_parent(store, spec.parent, known)
    steps = [load_step(step, index) for index, step in enumerate(spec.steps)]
    manifest = child_manifest(spec, parent)
    key = build_key(parent.id, steps, spec.network, manifest)
    annotations = manifest.get("annotations", []) + [{"name": BUILD_KEY, "value": key}]
    manifest["annotations"] = sorted(annotations, key=lambda a: a["name"])
    return Plan(spec, parent, steps, manifest, key)


def resolve_parent(store: Store, parent: dict, known: list) -> images.Image:
    if parent.get("id"):
        found = images.find_images(store, image_id=appc.validate_image_id(parent["id"], "build.parent.id"),
                                   images=known)
        what = parent["id"]
    elif parent.get("name"):
        labels = appc.normalize_labels(parent.get("labels") or {}, "build.parent.labels")
        found = images.find_images(store, appc.validate_identifier(parent["name"], "build.parent.name"), labels,
                                   images=known)
        what = "%s %s" % (parent["name"], labels or "")
    else:
        raise InvalidInput("build.parent needs the parent image's id, or its name (and labels)",
                           field="build.parent")
    if not found:
        raise NotFound("build.parent: no image %s in the store; import or build it first" % what)
    return found[-1]  # the newest, as for pods


# --- steps --------------------------------------------------------------------------------------
def load_step(step: dict, index: int) -> dict:
    """A step checked and with its inputs read: {"copy": {..., "data": bytes}} or {"run": argv, ...}."""
    field = "build.steps[%d]" % index
    if not isinstance(step, dict) or len([k for k in ("copy", "run") if step.get(k) is not None]) != 1:
        raise InvalidInput("%s must have exactly one of copy or run" % field, field=field)
    if step.get("copy") is not None:
        return {"copy": _load_copy(step["copy"], field + ".copy")}
    return {"run": _argv(step["run"], field + ".run"),
            "environment": _environment(step.get("environment"), field + ".environment")}


def _load_copy(copy: dict, field: str) -> dict:
    dest = copy.get("dest") or ""
    if not dest.startswith("/") or dest.endswith("/") or "\0" in dest:
        raise InvalidInput("%s.dest must be the absolute path of a file in the image" % field, field=field)
    if ".." in dest.split("/"):
        raise InvalidInput("%s.dest %r must not contain '..'" % (field, dest), field=field)
    if (copy.get("content") is None) == (copy.get("src") is None):
        raise InvalidInput("%s needs exactly one of content and src" % field, field=field)
    if copy.get("content") is not None:
        content = copy["content"]
        data = content if isinstance(content, bytes) else str(content).encode("utf-8")
    else:
        data = _read_source(copy["src"], field + ".src")
    return {"dest": posixpath.normpath(dest), "mode": _mode(copy.get("mode"), field + ".mode"),
            "owner": str(copy.get("owner") or "0"), "group": str(copy.get("group") or ""), "data": data}


def _read_source(path: str, field: str) -> bytes:
    if not isinstance(path, str) or not os.path.isabs(path):
        raise InvalidInput("%s must be an absolute path on the managed host" % field, field=field)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as error:
        raise NotFound("%s %s cannot be read: %s; check the path" % (field, path, error.strerror)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput("%s %s is not a regular file; copy files one by one" % (field, path), field=field)
        chunks, size = [], 0
        while size <= MAX_COPY_BYTES:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > MAX_COPY_BYTES:
        raise InvalidInput("%s %s is larger than %d MiB; fetch it with a run step instead"
                           % (field, path, MAX_COPY_BYTES >> 20), field=field)
    return data


def _mode(value, field: str) -> int:
    if value is None:
        return 0o644
    try:
        number = value if isinstance(value, int) else int(str(value), 8)
    except ValueError:
        number = -1
    if not 0 <= number <= 0o7777:
        raise InvalidInput("%s %r must be an octal mode such as '0644'" % (field, value), field=field)
    return number


def _argv(value, field: str) -> list:
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInput("%s is empty; give a command" % field, field=field)
        return ["/bin/sh", "-c", value]  # the image's own shell: the string is never seen by the host's
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and "\0" not in a for a in value):
        raise InvalidInput("%s must be a shell command string or a non-empty list of strings" % field, field=field)
    return list(value)


def _environment(value, field: str) -> dict:
    environment = {str(k): str(v) for k, v in (value or {}).items()}
    for name in environment:
        if not name or "=" in name or "\0" in name:
            raise InvalidInput("%s: %r is not a variable name" % (field, name), field=field)
    return environment


# --- the child's manifest and the key -----------------------------------------------------------
def child_manifest(spec: BuildSpec, parent: images.Image) -> dict:
    """The child's manifest without its build key: the parent's os/arch unless given, the app
    merged over the parent's, the parent as the one dependency (by ID)."""
    labels = {k: v for k, v in parent.labels.items() if k in ("os", "arch")}
    labels.update(spec.labels)
    manifest = {"acKind": "ImageManifest", "acVersion": appc.AC_VERSION, "name": spec.name,
                "labels": appc.labels_to_list(labels),
                "dependencies": [{"imageName": parent.name, "imageID": parent.id,
                                  "labels": appc.labels_to_list(parent.labels)}]}
    app = app_section(parent.manifest.get("app"), spec.app)
    if app:
        manifest["app"] = app
    if spec.annotations:
        manifest["annotations"] = [{"name": k, "value": v} for k, v in sorted(spec.annotations.items())]
    return appc.parse_image_manifest(manifest)


def app_section(inherited: Optional[dict], wanted: Optional[dict]) -> Optional[dict]:
    """The appc app section: the parent's, with each field the task gives replaced."""
    if not inherited and not wanted:
        return None
    app = dict(inherited or {"user": "0", "group": "0"})
    wanted = wanted or {}
    if wanted.get("exec") is not None:
        app["exec"] = [str(a) for a in wanted["exec"]]
    for key in ("user", "group"):
        if wanted.get(key) is not None:
            app[key] = str(wanted[key])
    if wanted.get("working_directory"):
        app["workingDirectory"] = wanted["working_directory"]
    if wanted.get("environment") is not None:
        app["environment"] = [{"name": str(k), "value": str(v)} for k, v in sorted(wanted["environment"].items())]
    if wanted.get("ports") is not None:
        app["ports"] = [_port(p) for p in wanted["ports"]]
    if wanted.get("mount_points") is not None:
        app["mountPoints"] = [{"name": m.get("name"), "path": m.get("path"), "readOnly": bool(m.get("read_only"))}
                              for m in wanted["mount_points"]]
    return app


def _port(port: dict) -> dict:
    entry = {"name": port.get("name"), "port": port.get("port"), "protocol": port.get("protocol") or "tcp"}
    if port.get("count") is not None:
        entry["count"] = port["count"]
    if port.get("socket_activated") is not None:
        entry["socketActivated"] = bool(port["socket_activated"])
    return entry


def step_for_key(step: dict) -> dict:
    """A loaded step as the key covers it: copied content by its sha256."""
    if "copy" in step:
        copy = dict(step["copy"])
        copy["sha256"] = hashlib.sha256(copy.pop("data")).hexdigest()
        return {"copy": copy}
    return step


def build_key(parent_id: str, steps: list, network: str, manifest: dict) -> str:
    """sha256 (hex) of everything that makes the child: the same inputs give the same key."""
    data = {"version": KEY_VERSION, "parent": parent_id, "network": network,
            "steps": [step_for_key(s) for s in steps],
            "manifest": json.loads(appc.serialize_manifest(manifest).decode("utf-8"))}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def find_built(store: Store, key: str, known: Optional[list] = None) -> Optional[images.Image]:
    """The image an identical build made, if the store has it."""
    for image in reversed(images.list_images(store) if known is None else known):
        if any(a["name"] == BUILD_KEY and a["value"] == key for a in image.manifest.get("annotations", [])):
            return image
    return None


# --- building -----------------------------------------------------------------------------------
def build(store: Store, spec: BuildSpec, engine=None) -> tuple:
    """Build (or find) the image a spec describes: (image, changed, step results)."""
    worked_out = plan(store, spec)
    cached = find_built(store, worked_out.key)
    if cached:
        return cached, False, []
    if engine is None:
        from .engines import for_host
        engine = for_host()
    if spec.network == "host" and any("run" in s for s in worked_out.steps):
        _check_host_network(store, worked_out.parent, engine)
    with store.lock():
        store.ensure()
        collect_garbage(store, engine)
        store.collect_garbage("images", SEALED)
        known = images.list_images(store)
        worked_out = plan(store, spec, known)  # again under the lock: the store may have changed
        cached = find_built(store, worked_out.key, known)
        if cached:
            return cached, False, []
        return _build_locked(store, worked_out, engine)


def _check_host_network(store: Store, parent: images.Image, engine) -> None:
    """Refuse network: host before anything is made where this engine cannot give it yet."""
    from . import pods
    try:
        pods.reify(store, {"name": "build", "apps": [{"image": parent.id, "exec": ["/bin/sh"]}],
                           "networks": ["host"]}, engine.name)
    except InvalidInput as error:
        if error.field != "networks":
            raise
        raise InvalidInput("build.network: host is not available here (%s); set network: none for builds "
                           "whose steps need no network" % error, field="build.network") from None


def _build_locked(store: Store, worked_out: Plan, engine) -> tuple:
    results = []
    layer = None
    pod = BuildPod(store, worked_out.parent, worked_out.spec.network, engine)
    try:
        pod.create()
        for index, step in enumerate(worked_out.steps):
            results.append(pod.run_step(index, step))
        pod.stop()
        pod.remove_runtime_dirs(worked_out.parent.rootfs)
        layer, image_id = write_layer(store, worked_out, pod.rootfs, pod.created_ns)
    except BaseException:
        try:
            pod.remove()
        except JetpackError:
            pass  # the step's error is what the user needs; the next run collects what is left
        if layer:
            _unlink(layer)
        raise
    pod.remove()
    try:
        request = images.ImportRequest(source=layer, image_id=image_id, allow_setuid=worked_out.spec.allow_setuid,
                                       origin={"location": "build", "parent": worked_out.parent.id,
                                               "key": worked_out.key})
        image, _changed = images.import_made_archive(store, layer, request)
    finally:
        _unlink(layer)
    return image, True, results


def write_layer(store: Store, worked_out: Plan, rootfs: str, cloned_ns: Optional[int] = None) -> tuple:
    """(path, ID) of the child's ACI: the manifest and what changed against the parent."""
    from . import aci
    changes = tree_changes(worked_out.parent.rootfs, rootfs, cloned_ns)
    manifest = dict(worked_out.manifest)
    if any(not path.endswith("/") for path in changes.deleted):
        manifest["pathWhitelist"] = ["/" + path for path in changes.files]
    fd, path = tempfile.mkstemp(dir=store.tmp_dir(), prefix="build-", suffix=".aci")
    os.close(fd)
    try:
        image_id = aci.write_aci(rootfs, appc.serialize_manifest(manifest), path, compression="gzip",
                                 paths=changes.changed)
    except BaseException:
        _unlink(path)
        raise
    return path, image_id


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- the build pod ------------------------------------------------------------------------------
class BuildPod:
    """A pod of one app, "build", over a clone of the parent; never listed as a pod."""

    def __init__(self, store: Store, parent: images.Image, network: str, engine):
        from .pods import POD
        self.store = store
        self.engine = engine
        self.key = uuidlib.uuid4().hex
        self.pod_prop = POD
        pod_dir = store.path("pods", self.key)
        root = os.path.join(pod_dir, "rootfs")
        self.rootfs = os.path.join(root, "app", APP, "rootfs")
        self.app = {"name": APP, "image_id": parent.id, "image_name": parent.name,
                    "os": parent.labels.get("os", ""), "exec": ["/bin/sh"], "user": "0", "group": "0",
                    "supplementary_gids": [], "environment": {}, "working_directory": "/",
                    "read_only_rootfs": False, "handlers": {}, "annotations": {}, "mounts": [],
                    "rootfs": self.rootfs, "dataset": store.dataset("pods", "%s-app-%s" % (self.key, APP))}
        self.record = {"uuid": str(uuidlib.UUID(self.key)), "name": "build-" + self.key[:12], "hostname": "build",
                       "engine": engine.name, "pod_dir": pod_dir, "root": root, "stop_timeout": 10,
                       "restart": {"policy": "no", "max_retries": 0}, "jail": dict(BUILD_JAIL),
                       "annotations": {}, "apps": [self.app], "volumes": [],
                       "networks": [{"name": "host", "requested": None}] if network == "host" else [],
                       "ports": [], "dns": None}
        self.parent = parent
        self.context = None
        self.created_ns = None  # a time before the clone was made, at the filesystem's granularity

    def create(self) -> None:
        # A whole second earlier: zfs-fuse keeps times in seconds, so "now" may read as the past.
        self.created_ns = (time.time_ns() // 10 ** 9 - 1) * 10 ** 9
        self._create()

    def _create(self) -> None:
        pod_dir = self.record["pod_dir"]
        os.mkdir(pod_dir, 0o700)
        for sub, mode in (("rootfs", 0o700), ("run", 0o700), ("logs", 0o750), ("volumes", 0o700)):
            os.mkdir(os.path.join(pod_dir, sub), mode)
        write_json(os.path.join(pod_dir, RECORD), self.record, mode=0o600)
        beneath.makedirs(self.record["root"], "app/%s" % APP)
        self.store.zfs.clone(self.parent.dataset + images.SEAL, self.app["dataset"],
                             {"mountpoint": self.rootfs, KIND: "app", self.pod_prop: self.key,
                              "jetpack:name": "%s/%s" % (self.record["name"], APP)})
        self.engine.prepare(self.record)

    def run_step(self, index: int, step: dict) -> dict:
        if "copy" in step:
            copy_into(self.rootfs, step["copy"], "build.steps[%d].copy" % index)
            return {"step": index, "copy": step["copy"]["dest"]}
        return self._run(index, step)

    def _run(self, index: int, step: dict) -> dict:
        if self.context is None:
            self.context = self.engine.start(self.record)
            write_json(os.path.join(self.record["pod_dir"], "run", "context.json"), self.context, mode=0o600)
        app = dict(self.app, environment=step["environment"])
        with tempfile.TemporaryFile() as log:
            try:
                pid = execution.spawn(self.engine, self.record, self.context, app, step["run"], as_root=True,
                                      stdout=log.fileno(), stderr=log.fileno())
            except JetpackError as error:
                raise BuildError("build step %d (%s) could not start: %s" % (index, _show(step["run"]), error),
                                 index) from None
            _pid, status = os.waitpid(pid, 0)
            rc = os.waitstatus_to_exitcode(status)
            output = _tail(log)
        if rc != 0:
            raise BuildError("build step %d (%s) failed with exit status %d; nothing was kept. Its output:\n%s"
                             % (index, _show(step["run"]), rc, output), index, rc, output)
        return {"step": index, "run": step["run"], "rc": rc, "output": output}

    def stop(self) -> None:
        if self.context is not None:
            self.engine.stop(self.record, self.context)
            self.context = None
            os.unlink(os.path.join(self.record["pod_dir"], "run", "context.json"))

    def remove_runtime_dirs(self, parent_rootfs: str) -> None:
        """rmdir the empty mount points the engine made in a rootfs whose parent lacks them."""
        fd = os.open(self.rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for name in RUNTIME_DIRS:
                if not os.path.lexists(os.path.join(parent_rootfs, name)):
                    try:
                        os.rmdir(name, dir_fd=fd)
                    except OSError:
                        pass  # absent, not a directory, or a step put something in it: the build's
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Stop the pod, destroy its clone and remove its directory (whatever exists of them)."""
        try:
            self.stop()
        finally:
            _remove_pod(self.store, self.key, self.pod_prop)


def _remove_pod(store: Store, key: str, pod_prop: str) -> None:
    for dataset, props in sorted(store.list_objects("pods").items()):
        if props.get(pod_prop) == key:
            store.zfs.destroy(dataset, recursive=True)
    pod_dir = store.path("pods", key)
    if os.path.lexists(pod_dir):
        store.remove_directory(pod_dir)


def collect_garbage(store: Store, engine) -> list:
    """Stop the build pods a crash left running, then remove every half-made pod; lock held."""
    from . import pods
    for key in listdir(store.path("pods")):
        pod_dir = store.path("pods", key)
        if os.path.exists(os.path.join(pod_dir, pods.RECORD)):
            continue
        try:
            record = read_json(os.path.join(pod_dir, RECORD))
            context = read_json(os.path.join(pod_dir, "run", "context.json"))
        except (OSError, ValueError):
            continue
        if engine.running(record, context):
            engine.stop(record, context)
    return pods.collect_garbage(store)


def copy_into(rootfs: str, copy: dict, field: str) -> None:
    """Write a copy step's file into rootfs: through a temporary name, never following a symlink
    (one at dest is replaced), parent directories created as 0755 root."""
    directory, name = posixpath.split(copy["dest"])
    accounts = execution.Accounts(rootfs)
    try:
        uid, gid = _owner(accounts, copy["owner"], copy["group"])
    except InvalidInput as error:
        raise InvalidInput("%s: %s" % (field, error), field=field) from None
    fd = beneath.open_dir(rootfs, directory, create=True)
    temporary = ".jetpack-copy-" + uuidlib.uuid4().hex
    try:
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=fd)
        try:
            view = memoryview(copy["data"])
            while view:
                view = view[os.write(out, view[:CHUNK]):]
            os.fchown(out, uid, gid)
            os.fchmod(out, copy["mode"])
        finally:
            os.close(out)
        os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
    except IsADirectoryError:
        raise InvalidInput("%s: dest %s is a directory in the image; give the file's path"
                           % (field, copy["dest"]), field=field) from None
    finally:
        try:
            os.unlink(temporary, dir_fd=fd)
        except FileNotFoundError:
            pass
        os.close(fd)


def _owner(accounts, owner: str, group: str) -> tuple:
    """(uid, gid): names from the image's own /etc/passwd and /etc/group, or numbers."""
    entry = None if owner.isdigit() else accounts.user(owner)
    if entry is None and not owner.isdigit():
        raise InvalidInput("owner %r is not in the image's /etc/passwd; give a user of the image or a number"
                           % owner)
    uid = entry.uid if entry else int(owner)
    if not group:
        return uid, entry.gid if entry else 0
    if group.isdigit():
        return uid, int(group)
    found = accounts.group(group)
    if found is None:
        raise InvalidInput("group %r is not in the image's /etc/group; give a group of the image or a number"
                           % group)
    return uid, found.gid


def _tail(log) -> str:
    log.seek(0, os.SEEK_END)
    size = log.tell()
    log.seek(max(0, size - OUTPUT_TAIL * 4))
    return log.read().decode("utf-8", "replace")[-OUTPUT_TAIL:]


def _show(argv: list) -> str:
    if argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3:
        return argv[2] if len(argv[2]) <= 80 else argv[2][:77] + "..."
    return " ".join(argv)[:80]


# --- what changed -------------------------------------------------------------------------------
def tree_changes(parent_rootfs: str, rootfs: str, cloned_ns: Optional[int] = None) -> Changes:
    """Compare a rootfs with its parent's: (changed paths, deleted paths, every non-directory).

    Paths are relative, "/"-separated. A deleted directory is listed with a trailing "/" (appc
    cannot delete directories: pathWhitelist only drops the others). Symlinks are never followed.
    cloned_ns: when rootfs is a clone of parent_rootfs, a time before the clone was made; a file
    whose inode is the parent's and whose ctime is older was not touched since (no content read).
    """
    from . import aci
    before = {path: (st, target) for path, st, target in aci.tree_entries(parent_rootfs)}
    changed, files = [], []
    for path, st, target in aci.tree_entries(rootfs):
        old = before.pop(path, None)
        if not stat.S_ISDIR(st.st_mode):
            files.append(path)
        if old is None or _differs(old, (st, target), os.path.join(parent_rootfs, path), os.path.join(rootfs, path),
                                   cloned_ns):
            changed.append(path)
    deleted = sorted(path + "/" if stat.S_ISDIR(st.st_mode) else path for path, (st, _t) in before.items())
    return Changes(changed, deleted, files)


def _differs(old: tuple, new: tuple, old_path: str, new_path: str, cloned_ns: Optional[int]) -> bool:
    (a, a_target), (b, b_target) = old, new
    same_meta = (stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode) and stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode)
                 and (a.st_uid, a.st_gid, a.st_mtime_ns) == (b.st_uid, b.st_gid, b.st_mtime_ns))
    if not same_meta:
        return True
    if stat.S_ISLNK(a.st_mode):
        return a_target != b_target
    if not stat.S_ISREG(a.st_mode):
        return False
    if a.st_size != b.st_size:
        return True
    # Any write, chmod or utime sets ctime to "now": an inode of the parent with an older ctime
    # is untouched since the clone was made.
    if cloned_ns is not None and a.st_ino == b.st_ino and b.st_ctime_ns < cloned_ns:
        return False
    return not _same_content(old_path, new_path)


def _same_content(a: str, b: str) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(a, flags), "rb") as fa, open(os.open(b, flags), "rb") as fb:
        while True:
            chunk_a, chunk_b = fa.read(CHUNK), fb.read(CHUNK)
            if chunk_a != chunk_b:
                return False
            if not chunk_a:
                return True
