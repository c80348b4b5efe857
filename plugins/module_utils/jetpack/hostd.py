"""The host service of a store ("hostd"): the appc metadata service and each pod network's DNS responder.

One process per store, `python -m jetpack.hostd` from the core installed on the host (like the
zygote, it outlives the task that starts it), listening only on the pod networks' host sides:
every gateway gets the metadata service (TCP 18112) and a DNS responder (UDP and TCP 53) that
answers the names of that network's pods and forwards the rest to the host's resolvers.

    /var/run/jetpack/<root with / as _>.hostd.lock   flock'ed by the running service for its life
    /var/run/jetpack/<root with / as _>.hostd.json   {"pid", "listen", "port", "core"} once it serves
    /var/run/jetpack/<root with / as _>.hostd.log    its stderr
    <mountpoint>/metadata/pods/<uuid hex>.json       the metadata registry (metadata.Registry)
    <mountpoint>/metadata/hmac.key                   the host's HMAC key

Lifecycle, all under the store lock: pods.start_supervised registers a networked pod and calls
ensure() with the gateways of every network in use; a service that is dead is started again, one
that listens elsewhere (a network came or went) is restarted. The last networked pod's destroy
stops it. The service rereads the registry and the pod records when they change (a stat per
request), so registering a pod never needs to talk to it.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sys
import threading
import time

from . import dns, metadata
from .daemon import spawn_detached
from .errors import JetpackError
from .store import listdir, read_json

STATE_DIR = "/var/run/jetpack"
LAUNCH_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def state_paths(store_root: str, directory: str = STATE_DIR) -> dict:
    base = os.path.join(directory, store_root.replace("/", "_") + ".hostd")
    return {"lock": base + ".lock", "state": base + ".json", "log": base + ".log"}


def registry_dir(mountpoint: str) -> str:
    return os.path.join(mountpoint, "metadata", "pods")


def key_path(mountpoint: str) -> str:
    return os.path.join(mountpoint, "metadata", "hmac.key")


# --- pod names, as the DNS responders answer them ----------------------------------------------
class PodNames:
    """{network: {pod name: [addresses]}} from <mountpoint>/pods/*/pod.json, reread when one changes."""

    def __init__(self, mountpoint: str):
        self.pods = os.path.join(mountpoint, "pods")
        self._lock = threading.Lock()
        self._stamp, self._names = None, {}

    def lookup(self, network_name: str, name: str):
        with self._lock:
            self._refresh()
            return self._names.get(network_name, {}).get(name)

    def _refresh(self) -> None:
        stamp = []
        for key in listdir(self.pods):
            try:
                info = os.stat(os.path.join(self.pods, key, "pod.json"))
            except (FileNotFoundError, NotADirectoryError):
                continue
            stamp.append((key, info.st_ino, info.st_mtime_ns))
        if stamp == self._stamp:
            return
        records = []
        for key, _ino, _mtime in stamp:
            try:
                records.append(read_json(os.path.join(self.pods, key, "pod.json")))
            except (OSError, ValueError):
                continue
        from . import network
        self._stamp, self._names = stamp, network.pod_names(records)


# --- the service -------------------------------------------------------------------------------
def serve(mountpoint: str, listen: dict, port: int, resolv_conf: str, dns_port: int = dns.PORT):
    """Start every server (metadata on each address, DNS on each network's); returns them to stop."""
    registry = metadata.Registry(registry_dir(mountpoint))
    os.makedirs(os.path.dirname(key_path(mountpoint)), mode=0o700, exist_ok=True)
    key = metadata.load_or_create_key(key_path(mountpoint))
    addresses = sorted({a for found in listen.values() for a in found})
    started = [metadata.MetadataService(registry, key, addresses, port)]
    started[0].start()
    names = PodNames(mountpoint)

    def upstreams():
        return [(address, dns.PORT) for address in dns.host_resolvers(resolv_conf)]

    try:
        for network_name, found in sorted(listen.items()):
            for address in found:
                responder = dns.Responder(address, _lookup_on(names, network_name), upstreams, dns_port)
                try:
                    responder.start()
                except OSError as error:
                    raise JetpackError("pod DNS: cannot listen on %s port %d: %s; stop what serves DNS there "
                                       "(ss -ulpn)" % (address, dns_port, error.strerror)) from None
                started.append(responder)
    except BaseException:
        for server in started:
            server.stop()
        raise
    return started


def _lookup_on(names: PodNames, network_name: str):
    return lambda name: names.lookup(network_name, name)


def main(argv=None) -> int:
    """`python -m jetpack.hostd --root R --mountpoint MP [--port N] [--resolv-conf F] NET=ADDRESS...`"""
    import argparse
    parser = argparse.ArgumentParser(prog="jetpack-hostd")
    parser.add_argument("--root", required=True)
    parser.add_argument("--mountpoint", required=True)
    parser.add_argument("--state-dir", default=STATE_DIR)
    parser.add_argument("--port", type=int, default=metadata.DEFAULT_PORT)
    parser.add_argument("--dns-port", type=int, default=dns.PORT)
    parser.add_argument("--resolv-conf", default="/etc/resolv.conf")
    parser.add_argument("listen", nargs="+")
    options = parser.parse_args(argv)
    os.chdir("/")
    paths = state_paths(options.root, options.state_dir)
    lock_fd = -1
    try:
        listen = parse_listen(options.listen)
        lock_fd = _take_lock(paths["lock"])
        servers = serve(options.mountpoint, listen, options.port, options.resolv_conf, options.dns_port)
    except (JetpackError, OSError) as error:
        if lock_fd >= 0:
            os.close(lock_fd)  # before the starter hears of it: it then sees no service at all
        _tell({"error": str(error)})
        return 1
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    _write_state(paths["state"], {"pid": os.getpid(), "listen": listen, "port": servers[0].port,
                                  "core": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    _tell({"ready": True})
    while not stopping.wait(3600):
        pass
    for server in servers:
        server.stop()
    try:
        os.unlink(paths["state"])
    except FileNotFoundError:
        pass
    os.close(lock_fd)
    return 0


def parse_listen(words) -> dict:
    listen = {}
    for word in words:
        network_name, sep, address = word.partition("=")
        if not sep or not network_name or not address:
            raise JetpackError("listen %r is not NETWORK=ADDRESS" % word)
        listen.setdefault(network_name, []).append(address)
    return listen


def _take_lock(path: str) -> int:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise JetpackError("another jetpack hostd holds %s; stop it first" % path) from None
    return fd


def _write_state(path: str, state: dict) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(state, f, sort_keys=True)
    os.replace(temporary, path)


def _tell(message: dict) -> None:
    """The one line the starter waits for; stdout is then /dev/null (the starter is gone)."""
    try:
        os.write(1, json.dumps(message).encode() + b"\n")
    except OSError:
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


# --- the client side: pods.py's calls ------------------------------------------------------------
def running(store_root: str, directory: str = STATE_DIR):
    """The state of the store's service ({"pid", "listen", "port", "core"}) when it runs, else None."""
    paths = state_paths(store_root, directory)
    try:
        fd = os.open(paths["lock"], os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            return read_json(paths["state"])
        except (OSError, ValueError):
            return {"pid": None, "listen": {}, "port": None, "core": None}
    finally:
        os.close(fd)  # also releases the lock when we took it
    return None


def ensure(store_root: str, mountpoint: str, core: str, listen: dict, port: int = metadata.DEFAULT_PORT,
           directory: str = STATE_DIR, extra=()) -> dict:
    """The service running from core on exactly these addresses: started, or restarted when it
    listens elsewhere or runs another core. With the store lock held. Returns its state."""
    listen = {name: sorted(found) for name, found in listen.items() if found}
    state = running(store_root, directory)
    same_core = state and os.path.realpath(state.get("core") or "") == os.path.realpath(core)
    if same_core and state.get("listen") == listen and state.get("port") == port:
        return state
    if state:
        stop(store_root, directory)
    if not listen:
        return {}
    launch(store_root, mountpoint, core, listen, port, directory, extra)
    return running(store_root, directory) or {}


def stop(store_root: str, directory: str = STATE_DIR) -> bool:
    """End the store's service; False when none was running."""
    state = running(store_root, directory)
    if not state:
        return False
    if state.get("pid"):
        try:
            os.kill(state["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while running(store_root, directory) and time.monotonic() < deadline:
        time.sleep(0.02)
    if running(store_root, directory) and state.get("pid"):
        os.kill(state["pid"], signal.SIGKILL)
        while running(store_root, directory):
            time.sleep(0.02)
    return True


def launch(store_root: str, mountpoint: str, core: str, listen: dict, port: int, directory: str = STATE_DIR,
           extra=()) -> None:
    """Start the service from an installed core, detached (own session, re-parented to init); wait
    until it serves, or raise with its own message."""
    if not os.path.isfile(os.path.join(core, "jetpack", "hostd.py")):
        raise JetpackError("%s is not an installed jetpack core (no jetpack/hostd.py); use install.ensure_installed()"
                           % core)
    paths = state_paths(store_root, directory)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    argv = [sys.executable or "/usr/bin/python3", "-m", "jetpack.hostd", "--root", store_root,
            "--mountpoint", mountpoint, "--state-dir", directory, "--port", str(port)] + list(extra)
    argv += ["%s=%s" % (name, address) for name, found in sorted(listen.items()) for address in found]
    log_fd = os.open(paths["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    ready_r, ready_w = os.pipe()
    try:
        status = spawn_detached(argv, core, ready_w, log_fd)
        os.close(ready_w)
        ready_w = -1
        line = _read_line(ready_r, LAUNCH_TIMEOUT) if status == 0 else b""
    finally:
        for fd in (log_fd, ready_r, ready_w):
            if fd >= 0:
                os.close(fd)
    try:
        message = json.loads(line or b"{}")
    except ValueError:
        message = {}
    if not message.get("ready"):
        raise JetpackError("the jetpack host service (metadata, DNS) did not start: %s (see %s)"
                           % (message.get("error") or "no answer within %d s" % LAUNCH_TIMEOUT, paths["log"]))


def _read_line(fd: int, timeout: float) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


# --- pods ----------------------------------------------------------------------------------------
def listen_for(records) -> dict:
    """{network: [gateway, gateway6]} of every network a pod of records has an address on."""
    listen = {}
    for record in records:
        for entry in record.get("networks") or ():
            if entry.get("name") in ("host", "none") or not entry.get("gateway"):
                continue
            listen[entry["name"]] = sorted({entry["gateway"]} | ({entry["gateway6"]} if entry.get("gateway6") else set()))
    return listen


def register(mountpoint: str, record: dict, images: dict, port: int = metadata.DEFAULT_PORT) -> str:
    """Record a networked pod in the registry; its AC_METADATA_URL (through its first network's gateway).

    images: {app name: {"id", "manifest" (the image manifest's bytes)}}.
    """
    joined = [n for n in record.get("networks") or () if n.get("address")]
    addresses = [a for n in joined for a in (n["address"], n.get("address6")) if a]
    with open(os.path.join(record["pod_dir"], "manifest"), "rb") as f:
        manifest = f.read()
    token = metadata.Registry(registry_dir(mountpoint)).register(record["uuid"], addresses, manifest, images)
    return metadata.url(joined[0]["gateway"], token, port)


def unregister(mountpoint: str, pod_uuid: str) -> bool:
    return metadata.Registry(registry_dir(mountpoint)).unregister(pod_uuid)


def prune(mountpoint: str, live_uuids) -> list:
    """Unregister every pod that no longer exists (a crash between destroy and unregister)."""
    import uuid as uuidlib
    live = {uuidlib.UUID(u).hex for u in live_uuids}
    gone = []
    for name in listdir(registry_dir(mountpoint)):
        key = name.split(".", 1)[0]
        if name.endswith((".json", ".json.tmp")) and key not in live:
            os.unlink(os.path.join(registry_dir(mountpoint), name))
            gone.append(key)
    return gone


if __name__ == "__main__":
    raise SystemExit(main())
