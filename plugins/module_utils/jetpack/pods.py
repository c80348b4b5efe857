"""Pods: reify a pod spec, then prepare, start, stop, destroy and report it.

A pod spec is what a task asks for (apps by image name+labels or ID, volumes, options). Reifying
it pins every app to an image ID, fills each app from its image's manifest (the task wins) and
satisfies every mount point with a volume: the result is the PodRecord described in
docs/pods-design.md, written to pod.json, and the appc PodManifest written beside it.

Preparing creates the pod dataset (jetpack:state=preparing), one clone of each image's @seal per
app, a dataset per `empty` volume and every mount target, then writes the files and sets
jetpack:state=ready last: anything a crash leaves before that is collected by the next run.
"""
from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import time
import uuid as uuidlib
from typing import Optional

from . import appc, beneath, images
from .errors import AlreadyExists, InvalidInput, NotFound
from .store import KIND, Store, listdir, read_json, write_json

RECORD = "pod.json"
POD = "jetpack:pod"  # on every dataset of a pod: the pod's key (its UUID as 32 hex digits)
RESTART_POLICIES = ("no", "on-failure", "always")
DEFAULT_NETWORKS = ["none"]  # what a pod joins when its task names no networks
NETWORKED_ENGINES = ("linux", "freebsd")
VOLUME_KINDS = ("host", "empty", "jetpack")
NO_ISOLATORS = {"pod": {"enforced": [], "unenforceable": []}, "apps": {}}  # the report of a pod without any


# --- reifying -----------------------------------------------------------------------------------
def reify(store: Store, spec: dict, engine_name: str) -> dict:
    """The PodRecord (without uuid and paths) a spec asks for; errors name the option to fix.

    spec: {"name", "hostname", "apps": [...], "volumes": [...], "annotations": {}, "restart",
    "restart_retries", "stop_timeout", "jail": {}, "limits": {}, "isolators": [], "strict"} as the
    jetpack_pod module documents them.
    """
    name = appc.validate_acname(spec["name"], "name")
    apps_spec = spec.get("apps") or []
    if not apps_spec:
        raise InvalidInput("a pod needs at least one app in apps", field="apps")
    known = images.list_images(store)
    volumes = [_volume(v, i) for i, v in enumerate(spec.get("volumes") or [])]
    image_ports = {}
    apps = [_app(store, a, i, known, volumes, image_ports) for i, a in enumerate(apps_spec)]
    _unique([a["name"] for a in apps], "apps", "app")
    pod_isolators, report = _isolators(spec, apps, engine_name)
    _unique([v["name"] for v in volumes], "volumes", "volume")
    _check_mounts(apps, volumes)
    policy = spec.get("restart") or "no"
    if policy not in RESTART_POLICIES:
        raise InvalidInput("restart must be one of %s" % ", ".join(RESTART_POLICIES), field="restart")
    record = {
        "name": name,
        "hostname": spec.get("hostname") or name,
        "engine": engine_name,
        "annotations": dict(spec.get("annotations") or {}),
        "stop_timeout": int(spec.get("stop_timeout", 10)),
        "restart": {"policy": policy, "max_retries": int(spec.get("restart_retries", 3))},
        "jail": dict(spec.get("jail") or {}),
        "apps": apps,
        "volumes": volumes,
        "networks": _networks(spec.get("networks")),
        "ports": [_port(p, i, image_ports) for i, p in enumerate(spec.get("ports") or [])],
        "dns": _dns(spec.get("dns")),
        "isolators": pod_isolators,
        "strict": bool(spec.get("strict", False)),
        "isolators_report": report,
    }
    if (record["networks"] or record["ports"]) and engine_name not in NETWORKED_ENGINES:
        raise InvalidInput("pods on %s have loopback only in this release: leave networks and ports out"
                           % engine_name, field="networks")
    if record["ports"] and not _joined(record):
        if record["networks"]:
            raise InvalidInput("ports cannot be published for a pod on networks: [host]: its apps listen on the "
                               "host's own ports already; leave ports out", field="ports")
        raise InvalidInput("ports need a network: join one with networks (the pod has loopback only)", field="ports")
    return record


def _joined(record: dict) -> list:
    """The networks a pod has an address on: not `host` (the host's own stack), none for `none`."""
    return [n for n in record.get("networks") or () if n["name"] != "host"]


def _networks(value) -> list:
    """[{"name", "requested"}] for the networks a pod joins; [] for none, [{"name": "host"}] for host."""
    entries = [{"name": n} if isinstance(n, str) else dict(n) for n in (DEFAULT_NETWORKS if value is None else value)]
    names = [e.get("name") for e in entries]
    if any(n in ("host", "none") for n in names):
        if len(names) != 1:
            raise InvalidInput("networks: host and none cannot be combined with other networks", field="networks")
        return [] if names[0] == "none" else [{"name": "host", "requested": None}]
    _unique(names, "networks", "network entrie")
    return [{"name": appc.validate_acname(e.get("name") or "", "networks.name"), "requested": e.get("address")}
            for e in entries]


def _isolators(spec: dict, apps: list, engine_name: str) -> tuple:
    """The pod's normalized isolators (its `limits` and `isolators`) and the report of what the engine
    enforces; each app's "isolators" become its own bounded by the pod's. Under strict, anything
    unenforceable is refused here, before anything is made."""
    from . import isolators
    pod = isolators.combine(isolators.parse_limits(spec.get("limits")),
                            isolators.parse(spec.get("isolators") or None, "pod"))
    own = {}
    for app in apps:
        own[app["name"]] = app["isolators"]
        app["isolators"] = isolators.merge(pod, app["isolators"])
    return pod, isolators.report(pod, own, engine_name, bool(spec.get("strict", False)))


def _port(p: dict, index: int, image_ports: dict) -> dict:
    """A published port; `name` (appc's pod manifest) takes pod_port and protocol from the image
    port of that name; appc's hostPort and hostIP spellings are accepted too."""
    field = "ports[%d]" % index
    p = dict(p, host_port=p.get("host_port", p.get("hostPort")), host_ip=p.get("host_ip", p.get("hostIP")))
    if p.get("name"):
        p = _named_port(p, field, image_ports)
    protocol = p.get("protocol") or "tcp"
    if protocol not in ("tcp", "udp"):
        raise InvalidInput("%s.protocol must be tcp or udp" % field, field=field)
    port = {"protocol": protocol, "host_ip": p.get("host_ip") or None}
    if p.get("name"):
        port["name"] = p["name"]
    for key in ("host_port", "pod_port"):
        try:
            port[key] = int(p.get(key) if p.get(key) is not None else p.get("host_port"))
        except (TypeError, ValueError):
            port[key] = 0
        if not 1 <= port[key] <= 65535:
            raise InvalidInput("%s.%s must be a port number from 1 to 65535" % (field, key), field=field)
    if port["host_ip"]:
        import ipaddress
        try:
            port["host_ip"] = str(ipaddress.ip_address(port["host_ip"]))
        except ValueError:
            raise InvalidInput("%s.host_ip %r is not an IP address" % (field, p["host_ip"]), field=field) from None
    return port


def _named_port(p: dict, field: str, image_ports: dict) -> dict:
    """p with the pod_port and protocol of the apps' image port named p["name"]."""
    name = appc.validate_acname(p["name"], field + ".name")
    found = {(port["port"], port["protocol"]) for port in image_ports.get(name, ())}
    if not found:
        known = ", ".join(sorted(image_ports)) or "none"
        raise InvalidInput("%s.name: no app's image declares a port named %s (they declare: %s); use one of them, "
                           "or give pod_port and protocol instead of name" % (field, name, known), field=field)
    if len(found) > 1:
        raise InvalidInput("%s.name: apps' images declare port %s differently (%s); give pod_port and protocol "
                           "instead" % (field, name, ", ".join("%d/%s" % f for f in sorted(found))), field=field)
    pod_port, protocol = found.pop()
    for key, value in (("pod_port", pod_port), ("protocol", protocol)):
        if p.get(key) not in (None, value):
            raise InvalidInput("%s: port %s is %d/%s in the image; leave %s out or drop name"
                               % (field, name, pod_port, protocol, key), field=field)
    return dict(p, pod_port=pod_port, protocol=protocol)


def _dns(value) -> Optional[dict]:
    if not value:
        return None
    return {"nameservers": [str(n) for n in value.get("nameservers") or ()],
            "search": [str(d) for d in value.get("search") or ()]}


def _volume(v: dict, index: int) -> dict:
    field = "volumes[%d]" % index
    name = appc.validate_acname(v.get("name", ""), field + ".name")
    kind = v.get("kind") or ("host" if v.get("source") else "empty")
    if kind not in VOLUME_KINDS:
        raise InvalidInput("%s.kind must be one of %s" % (field, ", ".join(VOLUME_KINDS)), field=field)
    volume = {"name": name, "kind": kind, "read_only": bool(v.get("read_only", False))}
    if kind == "host":
        volume["source"] = _host_source(v.get("source"), field)
    elif kind == "empty":
        volume.update(mode=_mode(v.get("mode", "0755"), field), uid=int(v.get("uid", 0)), gid=int(v.get("gid", 0)))
    else:
        volume["volume"] = appc.validate_acname(v.get("volume") or name, field + ".volume")
    return volume


def _host_source(source, field: str) -> str:
    if not source or not os.path.isabs(source):
        raise InvalidInput("%s.source must be an absolute host path" % field, field=field)
    if os.path.realpath(source) != os.path.normpath(source):
        raise InvalidInput("%s.source %s goes through a symlink; give the real path %s"
                           % (field, source, os.path.realpath(source)), field=field)
    if not os.path.exists(source):
        raise NotFound("%s.source %s does not exist; create it first (jetpack never creates host paths)"
                       % (field, source))
    return os.path.normpath(source)


def _mode(value, field: str) -> str:
    text = str(value)
    try:
        number = int(text, 8)
    except ValueError:
        number = -1
    if not 0 <= number <= 0o7777:
        raise InvalidInput("%s.mode %r must be an octal mode such as 0755" % (field, value), field=field)
    return "%04o" % number


def _app(store: Store, a: dict, index: int, known: list, volumes: list, image_ports: dict) -> dict:
    field = "apps[%d]" % index
    image = _resolve_image(store, a, field, known)
    defaults = image.manifest.get("app") or {}
    for port in defaults.get("ports", []):
        image_ports.setdefault(port["name"], []).append(port)
    name = appc.validate_acname(a.get("name") or image.name.rsplit("/", 1)[-1].replace(".", "-").replace("_", "-"),
                                field + ".name")
    argv = list(a.get("exec") or defaults.get("exec") or [])
    if not argv:
        raise InvalidInput("%s: image %s has no exec; give exec" % (field, image.name), field=field + ".exec")
    environment = {e["name"]: e["value"] for e in defaults.get("environment", [])}
    environment.update({str(k): str(v) for k, v in (a.get("environment") or {}).items()})
    handlers = {h["name"]: list(h["exec"]) for h in defaults.get("eventHandlers", [])}
    for event, option in (("pre-start", "pre_start"), ("post-stop", "post_stop")):
        if a.get(option):
            handlers[event] = list(a[option])
    workdir = a.get("working_directory") or defaults.get("workingDirectory") or "/"
    if not workdir.startswith("/"):
        raise InvalidInput("%s.working_directory must be absolute" % field, field=field)
    app = {
        "name": name,
        "image_id": image.id,
        "image_name": image.name,
        "os": image.labels.get("os", ""),
        "exec": argv,
        "user": str(a.get("user") or defaults.get("user") or "0"),
        "group": str(a.get("group") or defaults.get("group") or "0"),
        "supplementary_gids": [int(g) for g in (a.get("supplementary_gids")
                                                if a.get("supplementary_gids") is not None
                                                else defaults.get("supplementaryGIDs", []))],
        "environment": environment,
        "working_directory": workdir,
        "read_only_rootfs": bool(a.get("read_only_rootfs", False)),
        "handlers": handlers,
        "annotations": dict(a.get("annotations") or {}),
        "mounts": _mounts(a, defaults, field, volumes),
        "isolators": _app_isolators(a, defaults, field, image.name),
    }
    return app


def _app_isolators(a: dict, defaults: dict, field: str, image_name: str) -> dict:
    """The app's own normalized isolators: the task's, else its image's (the task's replace them)."""
    from . import isolators
    if a.get("isolators") is not None:
        return isolators.parse(a["isolators"], "app", field + ".isolators")
    try:
        return isolators.parse(defaults.get("isolators"), "app", "app.isolators")
    except InvalidInput as error:
        raise InvalidInput("%s: the isolators of image %s: %s; give the app's own isolators to replace them"
                           % (field, image_name, error), field=field + ".isolators") from None


def _resolve_image(store: Store, a: dict, field: str, known: list) -> images.Image:
    reference = a.get("image") or ""
    labels = appc.normalize_labels(a.get("labels") or {}, field + ".labels")
    if reference.startswith("sha512-"):
        found = images.find_images(store, image_id=reference, images=known)
    else:
        found = images.find_images(store, appc.validate_identifier(reference, field + ".image"), labels,
                                   images=known)
    if not found:
        raise NotFound("%s: no image %s %s in the store; import it first with jetpack.runtime.jetpack_image"
                       % (field, reference, labels or ""))
    return found[-1]


def _mounts(a: dict, defaults: dict, field: str, volumes: list) -> list:
    """The task's mounts, plus one for every image mount point the task left unsatisfied."""
    mounts = []
    for i, m in enumerate(a.get("mounts") or []):
        mfield = "%s.mounts[%d]" % (field, i)
        path = m.get("path") or ""
        if not path.startswith("/") or os.path.normpath(path) == "/":
            raise InvalidInput("%s.path must be an absolute path inside the app, not /" % mfield, field=mfield)
        beneath.components(path)
        mounts.append({"volume": appc.validate_acname(m.get("volume", ""), mfield + ".volume"),
                       "path": os.path.normpath(path), "read_only": bool(m.get("read_only", False))})
    for point in defaults.get("mountPoints", []):
        if any(m["volume"] == point["name"] or m["path"] == os.path.normpath(point["path"]) for m in mounts):
            continue
        mounts.append({"volume": point["name"], "path": os.path.normpath(point["path"]),
                       "read_only": bool(point.get("readOnly", False))})
        if not any(v["name"] == point["name"] for v in volumes):
            volumes.append({"name": point["name"], "kind": "empty", "read_only": False,
                            "mode": "0755", "uid": 0, "gid": 0})
    return mounts


def _unique(names: list, field: str, what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise InvalidInput("two %ss are named %s; names must be unique" % (what, name), field=field)
        seen.add(name)


def _check_mounts(apps: list, volumes: list) -> None:
    names = {v["name"] for v in volumes}
    for app in apps:
        paths = []
        for m in app["mounts"]:
            if m["volume"] not in names:
                raise InvalidInput("app %s mounts volume %s, which volumes does not declare"
                                   % (app["name"], m["volume"]), field="apps")
            for other in paths:
                if _overlaps(other, m["path"]):
                    raise InvalidInput("app %s mounts two volumes at overlapping paths %s and %s"
                                       % (app["name"], other, m["path"]), field="apps")
            paths.append(m["path"])


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


# --- the appc pod manifest ---------------------------------------------------------------------
def pod_manifest(record: dict) -> dict:
    """The reified appc PodManifest of a record (served by the metadata service later)."""
    from . import isolators

    def app_section(app):
        section = {"exec": app["exec"], "user": app["user"], "group": app["group"],
                   "workingDirectory": app["working_directory"],
                   "environment": [{"name": k, "value": v} for k, v in sorted(app["environment"].items())]}
        if app["supplementary_gids"]:
            section["supplementaryGIDs"] = app["supplementary_gids"]
        if app["handlers"]:
            section["eventHandlers"] = [{"name": k, "exec": v} for k, v in sorted(app["handlers"].items())]
        if app.get("isolators"):
            section["isolators"] = isolators.to_appc(app["isolators"])
        return section

    def volume(v):
        if v["kind"] == "empty":
            return {"name": v["name"], "kind": "empty", "readOnly": v["read_only"], "mode": v["mode"],
                    "uid": v["uid"], "gid": v["gid"]}
        return {"name": v["name"], "kind": "host", "source": v["source"], "readOnly": v["read_only"]}

    manifest = {
        "acKind": "PodManifest",
        "acVersion": appc.AC_VERSION,
        "apps": [{"name": a["name"], "image": {"id": a["image_id"], "name": a["image_name"]},
                  "app": app_section(a), "readOnlyRootFS": a["read_only_rootfs"],
                  "mounts": [{"volume": m["volume"], "path": m["path"]} for m in a["mounts"]],
                  "annotations": [{"name": k, "value": v} for k, v in sorted(a["annotations"].items())]}
                 for a in record["apps"]],
        "volumes": [volume(v) for v in record["volumes"]],
        "annotations": [{"name": k, "value": v} for k, v in sorted(record["annotations"].items())],
    }
    if record.get("isolators"):
        manifest["isolators"] = isolators.to_appc(record["isolators"])
    named = [p for p in record.get("ports") or () if p.get("name")]
    if named:
        manifest["ports"] = [dict({"name": p["name"], "hostPort": p["host_port"]},
                                  **({"hostIP": p["host_ip"]} if p["host_ip"] else {}))
                             for p in named]
    return manifest


# --- lookups ------------------------------------------------------------------------------------
class Pod:
    """A pod of the store, as its pod.json describes it."""

    def __init__(self, store: Store, record: dict):
        self.store = store
        self.record = record

    @property
    def name(self) -> str:
        return self.record["name"]

    @property
    def uuid(self) -> str:
        return self.record["uuid"]

    @property
    def key(self) -> str:
        return self.record["uuid"].replace("-", "")

    def datasets(self) -> list:
        """The pod's datasets (app clones, empty volumes), as the store lists them now."""
        return _datasets_of(self.store, self.key)

    def run_file(self, name: str) -> str:
        return os.path.join(self.record["pod_dir"], "run", name)

    def supervisor_pid(self) -> Optional[int]:
        from .supervisor import running_pid  # not at the top: most module runs never need it
        return running_pid(self.record["pod_dir"])

    def running(self) -> bool:
        return self.supervisor_pid() is not None

    def status(self) -> dict:
        try:
            return read_json(self.run_file("status.json"))
        except (OSError, ValueError):
            return {}

    def info(self) -> dict:
        """The pod as jetpack_pod_info returns it."""
        status = self.status()
        apps = []
        for app in self.record["apps"]:
            state = (status.get("apps") or {}).get(app["name"], {})
            apps.append({"name": app["name"], "image_id": app["image_id"], "image_name": app["image_name"],
                         "dataset": app["dataset"], "exec": app["exec"], "user": app["user"],
                         "group": app["group"], "state": state.get("state", "created"), "pid": state.get("pid"),
                         "exit_code": state.get("exit_code"), "signal": state.get("signal"),
                         "restarts": state.get("restarts", 0), "started": state.get("started"),
                         "finished": state.get("finished")})
        return {"name": self.name, "uuid": self.uuid, "state": "running" if self.running() else "stopped",
                "hostname": self.record["hostname"], "engine": self.record["engine"],
                "root": self.record["root"], "apps": apps,
                "volumes": self.record["volumes"], "annotations": self.record["annotations"],
                "restart": self.record["restart"], "stop_timeout": self.record["stop_timeout"],
                "logs": os.path.join(self.record["pod_dir"], "logs"),
                "networks": [{"name": n["name"], "address": n.get("address"), "address6": n.get("address6")}
                             for n in self.record.get("networks") or ()],
                "ports": [dict(p) for p in self.record.get("ports") or ()],
                "isolators": self.record.get("isolators_report") or NO_ISOLATORS}


def list_pods(store: Store) -> list:
    """Every complete pod: a directory under pods/ whose pod.json (written last) exists."""
    pods = []
    for key in listdir(store.path("pods")):
        try:
            record = read_json(store.path("pods", key, RECORD))
        except (OSError, ValueError):
            continue
        pods.append(Pod(store, record))
    return pods


def find_pod(store: Store, name: str) -> Optional[Pod]:
    for pod in list_pods(store):
        if pod.name == name:
            return pod
    return None


def _datasets_of(store: Store, key: str) -> list:
    return sorted(name for name, props in store.list_objects("pods").items() if props.get(POD) == key)


# --- lifecycle ----------------------------------------------------------------------------------
def create(store: Store, record: dict, engine) -> Pod:
    """Prepare a pod on disk from a reified record (not started); nothing is left on failure.

    A pod is a directory under pods/ plus sibling datasets <key>-app-<app> (clones of the images)
    and <key>-vol-<volume> (empty volumes), each tagged jetpack:pod=<key>. pod.json is written
    last and atomically: without it, whatever exists of a pod is garbage. A pod on networks gets
    its addresses and names here; its start makes the host side (bridges, rules).
    """
    with store.lock():
        store.ensure()
        collect_garbage(store)
        existing = [pod.record for pod in list_pods(store)]
        if any(other["name"] == record["name"] for other in existing):
            raise AlreadyExists("a pod named %s exists; remove it first or choose another name" % record["name"])
        uuid = uuidlib.uuid4()
        pod_dir = store.path("pods", uuid.hex)
        record = dict(record, uuid=str(uuid), pod_dir=pod_dir, root=os.path.join(pod_dir, "rootfs"))
        try:
            os.mkdir(pod_dir, 0o700)
            _join_networks(store, record, uuid.hex, engine, existing)
            _prepare(store, record, uuid.hex, engine)
            write_json(os.path.join(pod_dir, "manifest"), pod_manifest(record), mode=0o640)
            write_json(os.path.join(pod_dir, RECORD), record, mode=0o600)
            if record["networks"]:
                _write_names(existing + [record], record)
        except BaseException:
            _remove(store, uuid.hex)
            if record["networks"]:  # the pods that learnt its name forget it
                _write_names([pod.record for pod in list_pods(store)], record)
            raise
    return Pod(store, record)


def _join_networks(store: Store, record: dict, key: str, engine, existing: list) -> None:
    """Lease the pod's addresses and check its published ports; with the store lock held."""
    from . import network
    joined = _joined(record)
    in_use = engine.addresses_in_use() if joined else set()
    for entry in joined:
        net = network.get_network(store, entry["name"])
        entry.update(net)
        entry["address"] = network.allocate(store, net, key, in_use, entry.get("requested"))
        if net.get("subnet6"):
            entry["address6"] = network.allocate(store, net, key, in_use, version=6)
    if record["ports"]:
        _check_ports(existing, record)
        engine.check_ports([dict(p, address=joined[0]["address"], address6=joined[0].get("address6"), pod=record["name"])
                            for p in record["ports"]])


def _check_ports(existing: list, record: dict) -> None:
    published = [(other["name"], port) for other in existing for port in other.get("ports") or ()]
    for index, mine in enumerate(record["ports"]):
        for owner, theirs in published + [(record["name"], p) for p in record["ports"][:index]]:
            same_port = (mine["protocol"], mine["host_port"]) == (theirs["protocol"], theirs["host_port"])
            same_address = None in (mine["host_ip"], theirs["host_ip"]) or mine["host_ip"] == theirs["host_ip"]
            if same_port and same_address:
                raise AlreadyExists("port %s/%d is published by pod %s already; choose another host_port"
                                    % (mine["protocol"], mine["host_port"], owner))


def _write_names(records: list, changed: dict) -> None:
    """/etc/hosts of the pod `changed` (when among records) and of every pod sharing one of its
    networks: the pods that see it come or go. Pods on other networks are not touched."""
    shared = {n["name"] for n in _joined(changed)}
    for record in records:
        if record["uuid"] == changed["uuid"] or shared & {n["name"] for n in _joined(record)}:
            _write_hosts(records, record)


def _write_hosts(records: list, record: dict) -> None:
    """Only into apps whose image has no /etc/hosts: an image's own is never changed (its pod
    names come from the network's DNS responder, see hostd.py)."""
    from . import network
    _write_app_files(record, "etc/hosts", network.hosts_file(records, record), skip=record.get("image_hosts", ()))


def _sync_host_side(store: Store, engine, records: list) -> None:
    """The host's bridges and rules for the networks the pods use and the ports they publish; no
    bridge for the networks none uses. The engine changes only what differs from that."""
    from . import network
    in_use = {n["name"] for record in records for n in _joined(record)}
    declared = network.list_networks(store)
    ports = [dict(p, address=n["address"], address6=n.get("address6"), pod=record["name"])
             for record in records for p in record.get("ports") or () for n in _joined(record)[:1]]
    engine.sync_networks([net for net in declared if net["name"] in in_use], ports,
                         [net for net in declared if net["name"] not in in_use])


def _write_app_files(record: dict, path: str, text: str, skip=()) -> None:
    """Write a file into every app's rootfs (the pod's own clone) but those of `skip`, never following a symlink.

    Rewritten in place when it exists, as Jetpack did with resolv.conf. A pod whose image made
    that path something else is left alone: its names go stale, nobody else's do.
    """
    directory, name = os.path.split(path)
    for app in record["apps"]:
        if app["name"] in skip:
            continue
        try:
            fd = beneath.open_dir(app["rootfs"], directory, create=True)
        except (OSError, InvalidInput):
            continue
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                          dir_fd=fd)
            with os.fdopen(out, "w") as f:
                f.write(text)
        except OSError:
            pass
        finally:
            os.close(fd)


def _prepare(store: Store, record: dict, key: str, engine) -> None:
    root = record["root"]
    for sub, mode in (("rootfs", 0o700), ("run", 0o700), ("logs", 0o750), ("volumes", 0o700)):
        os.mkdir(os.path.join(record["pod_dir"], sub), mode)
    known = {image.id: image for image in images.list_images(store)}
    for app in record["apps"]:
        beneath.makedirs(root, "app/%s" % app["name"])
        app["rootfs"] = os.path.join(root, "app", app["name"], "rootfs")
        app["dataset"] = store.dataset("pods", "%s-app-%s" % (key, app["name"]))
        store.zfs.clone(known[app["image_id"]].dataset + images.SEAL, app["dataset"],
                        {"mountpoint": app["rootfs"], KIND: "app", POD: key,
                         "jetpack:name": "%s/%s" % (record["name"], app["name"])})
    for volume in record["volumes"]:
        _prepare_volume(store, record, key, volume)
    for app in record["apps"]:
        for m in app["mounts"]:
            beneath.makedirs(app["rootfs"], m["path"])
        _check_working_directory(app)
    if record["networks"]:
        from . import network
        record["image_hosts"] = [app["name"] for app in record["apps"] if _has_file(app["rootfs"], "etc", "hosts")]
        gateway = next((n["gateway"] for n in _joined(record)), None)
        _write_app_files(record, "etc/resolv.conf", network.resolv_conf(record.get("dns"), gateway=gateway))
    engine.prepare(record)


def _has_file(rootfs: str, directory: str, name: str) -> bool:
    """Whether the rootfs has directory/name (of any type), looked at without leaving the rootfs."""
    try:
        fd = beneath.open_dir(rootfs, directory)
    except (OSError, InvalidInput):
        return False
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _check_working_directory(app: dict) -> None:
    """appc: the working directory must exist; refused at creation rather than by a failed exec."""
    from . import execution
    path = app["working_directory"]
    if any(path == m["path"] or path.startswith(m["path"].rstrip("/") + "/") for m in app["mounts"]):
        return  # in a volume: what it holds is only known when the app starts
    try:
        is_directory = stat.S_ISDIR(execution.stat_in_rootfs(app["rootfs"], path).st_mode)
    except (OSError, InvalidInput):
        is_directory = False
    if not is_directory:
        raise InvalidInput("app %s: working directory %s is not a directory in image %s; set working_directory "
                           "to one that exists, or create it in the image" % (app["name"], path, app["image_name"]),
                           field="working_directory")


def _prepare_volume(store: Store, record: dict, key: str, volume: dict) -> None:
    if volume["kind"] == "empty":
        path = os.path.join(record["pod_dir"], "volumes", volume["name"])
        store.zfs.create(store.dataset("pods", "%s-vol-%s" % (key, volume["name"])),
                         {"mountpoint": path, KIND: "empty-volume", POD: key, "jetpack:name": volume["name"]})
        os.chown(path, volume["uid"], volume["gid"])
        os.chmod(path, int(volume["mode"], 8))
        volume["source"] = path
    elif volume["kind"] == "jetpack":
        from . import volumes  # volumes imports pods to find users: import here, not at the top
        volume["source"] = volumes.get_volume(store, volume["volume"]).data


def collect_garbage(store: Store) -> list:
    """Remove what a crash left of pods that never got their pod.json; with the store lock held."""
    complete = {pod.key for pod in list_pods(store)}
    keys = set(listdir(store.path("pods")))
    keys.update(props.get(POD) for props in store.list_objects("pods").values() if props.get(POD))
    garbage = sorted(keys - complete)
    for key in garbage:
        _remove(store, key)
    _release_cgroups(garbage + [pod.key for pod in list_pods(store) if not pod.running()])
    return garbage


def _release_cgroups(keys) -> None:
    """Linux: remove the cgroups a crash left to pods of this store that do not run. Only keys of this
    store: the pods of other stores share the hierarchy (cgroups.py names pods by key alone)."""
    if not keys or not sys.platform.startswith("linux"):
        return
    from . import cgroups
    layout = cgroups.detect()
    if layout.version:
        for key in keys:
            cgroups.PodCgroup(key, layout).remove()


def _remove(store: Store, key: str) -> None:
    """Free a pod's addresses, destroy its datasets (empty volumes included), then its directory."""
    from . import network
    network.release(store, key)
    for dataset in _datasets_of(store, key):
        store.zfs.destroy(dataset, recursive=True)
    pod_dir = store.path("pods", key)
    if os.path.lexists(pod_dir):
        store.remove_directory(pod_dir)


def start(pod: Pod, start_supervisor) -> bool:
    """Start a stopped pod through start_supervisor(pod.json path); False when already running."""
    if pod.running():
        return False
    start_supervisor(os.path.join(pod.record["pod_dir"], "pod.json"))
    return True


def start_supervised(store: Store, pod: Pod) -> bool:
    """Start a pod under a supervisor forked by the store's zygote, from the core installed on the host."""
    from . import install, zygote
    core = install.ensure_installed()
    if pod.record.get("networks") and not pod.running():
        with store.lock():
            records = [other.record for other in list_pods(store)]
            _write_hosts(records, pod.record)  # as they are now: a crash may have cut a change short
            if _joined(pod.record):  # after a reboot the host's bridges and rules are gone: make them again
                from .engines import for_host
                _sync_host_side(store, for_host(), records)
                _serve_metadata(store, pod, records, core)
    return start(pod, lambda path: zygote.start_pod(path, zygote.socket_path_for(store.root), core))


def _serve_metadata(store: Store, pod: Pod, records: list, core: str) -> None:
    """Register the pod with the metadata service (its AC_METADATA_URL into pod.json), and have the
    store's host service (metadata + DNS) listen on every network in use; with the store lock held."""
    from . import hostd
    known = {image.id: image for image in images.list_images(store)}
    served = {}
    for app in pod.record["apps"]:
        with open(store.path("images", known[app["image_id"]].key, images.MANIFEST), "rb") as f:
            served[app["name"]] = {"id": app["image_id"], "manifest": f.read()}
    pod.record["metadata_url"] = hostd.register(store.config.mountpoint, pod.record, served)
    write_json(os.path.join(pod.record["pod_dir"], RECORD), pod.record, mode=0o600)
    hostd.prune(store.config.mountpoint, [record["uuid"] for record in records])
    hostd.ensure(store.root, store.config.mountpoint, core, hostd.listen_for(records))


def stop(pod: Pod, engine, grace: float = 5.0) -> bool:
    """Stop a running pod; False when it was not running. The supervisor stops the apps."""
    from .supervisor import stop_budget
    pid = pod.supervisor_pid()
    if pid is None:
        _stop_leftovers(pod, engine)
        return False
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, stop_budget(pod.record) + grace):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, grace)
        _stop_leftovers(pod, engine)
    return True


def _stop_leftovers(pod: Pod, engine) -> None:
    """Tear down a context whose supervisor died (crash, kill -9): nothing of the pod may linger."""
    try:
        context = read_json(pod.run_file("context.json"))
    except (OSError, ValueError):
        return
    # Only a context still there is stopped: a Linux holder killed with its supervisor may never be
    # reaped (an init that does not reap), and waiting for it would make destroy fail. What a gone
    # FreeBSD jail kept on the host (pf anchors, epairs) is replaced by the pod's next start.
    if engine.running(pod.record, context):
        engine.stop(pod.record, context)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pod.run_file("context.json"))


def destroy(pod: Pod, engine) -> None:
    """Stop and remove a pod; named volumes and host paths are never touched."""
    stop(pod, engine)
    with pod.store.lock():
        _remove(pod.store, pod.key)
        if _joined(pod.record):
            records = [other.record for other in list_pods(pod.store)]
            _write_names(records, pod.record)
            _sync_host_side(pod.store, engine, records)
            from . import hostd
            hostd.unregister(pod.store.config.mountpoint, pod.uuid)
            if not hostd.listen_for(records):  # the last networked pod: nothing to serve
                hostd.stop(pod.store.root)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def spec_differences(record: dict, wanted: dict, ignore=()) -> list:
    """Names of the options whose reified values differ between a pod and what a task wants."""
    keys = ("hostname", "annotations", "stop_timeout", "restart", "jail", "volumes", "apps", "networks", "ports",
            "dns", "isolators")
    differences = []
    for key in keys:
        if key in ignore:
            continue
        if _comparable(key, record.get(key)) != _comparable(key, wanted.get(key)):
            differences.append(key)
    return differences


def _comparable(key: str, value):
    """A value as compared: paths and runtime-filled fields dropped, order kept where it matters."""
    if key == "apps":  # no isolators and none recorded (a pod made before they existed) are the same
        return [{k: v for k, v in app.items() if k not in ("rootfs", "dataset") and not (k == "isolators" and not v)}
                for app in value or []]
    if key == "isolators":
        return value or {}

    if key == "volumes":
        return [{k: v for k, v in vol.items() if not (k == "source" and vol.get("kind") != "host")}
                for vol in value or []]
    if key == "networks":  # what was asked for, not what was allocated
        return [(n["name"], n.get("requested")) for n in value or []]
    return value or ([] if key == "ports" else value)
