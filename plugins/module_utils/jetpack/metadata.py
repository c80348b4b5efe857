"""The appc metadata service (ace.md "App Container Metadata Service"), stdlib http.server only.

Apps get AC_METADATA_URL = http://<host side of their network>:<port>/<token>, and read under
$AC_METADATA_URL/acMetadata/v1:

    GET  pod/annotations                application/json      the pod manifest's annotations
    GET  pod/manifest                   application/json      the reified pod manifest, as stored
    GET  pod/uuid                       text/plain; charset=us-ascii
    GET  apps/<app>/annotations         application/json      image annotations, the pod app's win
    GET  apps/<app>/image/manifest      application/json      the original image manifest, as stored
    GET  apps/<app>/image/id            text/plain; charset=us-ascii
    POST pod/hmac/sign    content=      text/plain; charset=us-ascii   base64 HMAC-SHA512
    POST pod/hmac/verify  content=, uuid=, signature=                  200 valid, 403 not

Manifests are served byte for byte as registered, so a field absent from them stays absent; an
absent annotations list is served as [] (the empty list the schema allows), never null.

Who may ask: the token (256 random bits, not derived from the UUID) names the pod, and the request
must come from one of that pod's own addresses. An unknown token is 401, a known token from an
address that is not the pod's is 403: a pod cannot read or sign as another pod, even with a
stolen token. The HMAC covers the pod UUID's 16 bytes followed by the content (the spec leaves
the bytes open; rkt signed the same), so a signature vouches for the pod that asked for it.

Registry: one JSON file per pod (<uuid hex>.json, 0600 in a 0700 directory; it holds the token),
written atomically; the service rereads the directory when it changes, so pods register and
unregister without talking to it, and a restarted service knows every pod again.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.server
import json
import os
import secrets
import signal
import socket
import threading
import uuid as uuidlib
from urllib.parse import parse_qs

from .errors import InvalidInput, JetpackError
from .serving import ServerThreads

DEFAULT_PORT = 18112          # the port rkt's metadata service used; configurable
KEY_BYTES = 64                # HMAC-SHA512 key: one block's worth of randomness
TOKEN_BYTES = 32              # 256 bits: ace.md asks for at least 128
MAX_FORM_BYTES = 1 << 20
JSON = "application/json"
TEXT = "text/plain; charset=us-ascii"
PREFIX = ("acMetadata", "v1")


# --- host key and HMAC ---------------------------------------------------------------------
def load_or_create_key(path: str) -> bytes:
    """The host's HMAC key: created once (64 random bytes, 0600, root's), then only read."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    temporary = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # never replaces a key another process made first
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    return _read_key(path)


def _read_key(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if info.st_mode & 0o077 or info.st_uid != os.geteuid():
            raise JetpackError("metadata HMAC key %s must belong to the service's user and be readable by it "
                               "alone; chmod 600 it (or remove it to make a new one, which voids every "
                               "signature made so far)" % path)
        key = f.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        raise JetpackError("metadata HMAC key %s is not %d bytes; remove it to make a new one" % (path, KEY_BYTES))
    return key


def sign(key: bytes, pod_uuid: str, content: bytes) -> str:
    digest = hmac.new(key, uuidlib.UUID(pod_uuid).bytes + content, hashlib.sha512).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(key: bytes, pod_uuid: str, content: bytes, signature: str) -> bool:
    try:
        given = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    expected = base64.b64decode(sign(key, pod_uuid, content))
    return hmac.compare_digest(given, expected)


# --- registry ----------------------------------------------------------------------------------
def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def url(address: str, token: str, port: int = DEFAULT_PORT) -> str:
    """AC_METADATA_URL for a pod reaching the service at address."""
    host = "[%s]" % address if ":" in address else address
    return "http://%s:%d/%s" % (host, port, token)


def _canonical_uuid(value) -> str:
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise InvalidInput("%r is not a pod UUID" % (value,), "uuid") from None


def _json_text(value, field: str) -> str:
    """A manifest as the JSON text to serve: stored bytes/str kept as they are, a dict serialised once."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            raise InvalidInput("%s is not JSON" % field, field) from None
        return value
    return json.dumps(value, sort_keys=True)


class Registry:
    """The pods the service answers for: <directory>/<uuid hex>.json each."""

    def __init__(self, directory: str):
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp = None
        self._by_token = {}

    def path(self, pod_uuid: str) -> str:
        return os.path.join(self.directory, uuidlib.UUID(pod_uuid).hex + ".json")

    def register(self, pod_uuid, addresses, pod_manifest, images, token=None) -> str:
        """Record a pod (again: its token is kept unless one is given); returns the token.

        addresses: the pod's own IP addresses (requests must come from one); pod_manifest: the
        reified PodManifest; images: {app name: {"id": image ID, "manifest": image manifest}}.
        """
        pod_uuid = _canonical_uuid(pod_uuid)
        if not addresses:
            raise InvalidInput("pod %s has no address the metadata service could check requests against; "
                               "give it a network" % pod_uuid, "addresses")
        token = token or self._token_of(pod_uuid) or new_token()
        entry = {"uuid": pod_uuid, "token": token, "addresses": sorted(set(addresses)),
                 "manifest": _json_text(pod_manifest, "pod manifest"),
                 "images": {name: {"id": image["id"], "manifest": _json_text(image["manifest"], "image manifest")}
                            for name, image in images.items()}}
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        temporary = self.path(pod_uuid) + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path(pod_uuid))
        return token

    def _token_of(self, pod_uuid: str):
        try:
            with open(self.path(pod_uuid)) as f:
                return json.load(f)["token"]
        except (OSError, ValueError, KeyError):
            return None

    def unregister(self, pod_uuid) -> bool:
        """Forget a pod (and a half-written file a crash left); False when it was not registered."""
        path = self.path(_canonical_uuid(pod_uuid))
        try:
            os.unlink(path + ".tmp")
        except FileNotFoundError:
            pass
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False

    def find(self, token: str):
        """The entry of the pod with this token, or None."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        with self._lock:
            self._refresh()
            return self._by_token.get(digest)

    def _refresh(self) -> None:
        """Reread the entries when a file changed: register renames a new file (a new inode) into place."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".json"))
        except FileNotFoundError:
            names = []
        stamp = []
        for name in names:
            try:
                info = os.stat(os.path.join(self.directory, name))
            except FileNotFoundError:
                continue
            stamp.append((name, info.st_ino, info.st_mtime_ns, info.st_size))
        if stamp == self._stamp:
            return
        entries = {}
        for name, _ino, _mtime, _size in stamp:
            try:
                with open(os.path.join(self.directory, name)) as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue  # removed meanwhile, or a crash's leftover: not a pod
            # Keyed by a hash: a dict lookup compares the digest, not the secret, so it leaks nothing.
            entries[hashlib.sha256(entry["token"].encode()).digest()] = entry
        self._stamp, self._by_token = stamp, entries


# --- the HTTP application ------------------------------------------------------------------
def merged_annotations(image_manifest: dict, pod_app: dict) -> list:
    """The image's annotations with the pod app's over them by name (ace.md: the pod wins)."""
    merged = {a["name"]: a["value"] for a in image_manifest.get("annotations") or []}
    merged.update((a["name"], a["value"]) for a in pod_app.get("annotations") or [])
    return [{"name": name, "value": value} for name, value in merged.items()]


class Answer:
    def __init__(self, status: int, body: bytes = b"", content_type: str = TEXT):
        self.status, self.body, self.content_type = status, body, content_type


def _json_answer(value) -> Answer:
    return Answer(200, json.dumps(value).encode("utf-8"), JSON)


def _text_answer(text: str) -> Answer:
    return Answer(200, text.encode("ascii"), TEXT)


def answer(entry: dict, key: bytes, method: str, parts: list, form: dict) -> Answer:
    """What the service returns to the pod `entry` for a request to acMetadata/v1/<parts>."""
    route = "/".join(parts)
    manifest = json.loads(entry["manifest"])
    if method == "GET" and route == "pod/annotations":
        return _json_answer(manifest.get("annotations") or [])
    if method == "GET" and route == "pod/manifest":
        return Answer(200, entry["manifest"].encode("utf-8"), JSON)
    if method == "GET" and route == "pod/uuid":
        return _text_answer(entry["uuid"])
    if method == "POST" and route == "pod/hmac/sign":
        return _text_answer(sign(key, entry["uuid"], form.get("content", "").encode("utf-8")))
    if method == "POST" and route == "pod/hmac/verify":
        return _verify_answer(key, form)
    if len(parts) >= 3 and parts[0] == "apps" and method == "GET":
        return _app_answer(entry, manifest, parts[1], "/".join(parts[2:]))
    if route in ("pod/annotations", "pod/manifest", "pod/uuid", "pod/hmac/sign", "pod/hmac/verify"):
        return Answer(405, b"method not allowed\n")
    return Answer(404, b"not found\n")


def _verify_answer(key: bytes, form: dict) -> Answer:
    try:
        pod_uuid = _canonical_uuid(form.get("uuid", ""))
    except InvalidInput:
        return Answer(400, b"uuid is not a UUID\n")
    if verify(key, pod_uuid, form.get("content", "").encode("utf-8"), form.get("signature", "")):
        return Answer(200, b"")
    return Answer(403, b"signature does not verify\n")


def _app_answer(entry: dict, manifest: dict, app: str, what: str) -> Answer:
    image = entry["images"].get(app)
    pod_app = next((a for a in manifest.get("apps") or [] if a.get("name") == app), None)
    if image is None or pod_app is None:
        return Answer(404, b"no such app in this pod\n")
    if what == "annotations":
        return _json_answer(merged_annotations(json.loads(image["manifest"]), pod_app))
    if what == "image/manifest":
        return Answer(200, image["manifest"].encode("utf-8"), JSON)
    if what == "image/id":
        return _text_answer(image["id"])
    return Answer(404, b"not found\n")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "jetpack-metadata"
    sys_version = ""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        try:
            result = self._answer(method)
        except Exception:  # noqa: BLE001 - a broken entry must not take the service down
            result = Answer(500, b"internal error\n")
        self.send_response(result.status)
        self.send_header("Content-Type", result.content_type)
        self.send_header("Content-Length", str(len(result.body)))
        self.end_headers()
        self.wfile.write(result.body)

    def _answer(self, method: str) -> Answer:
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        if len(parts) < 3 or tuple(parts[1:3]) != PREFIX:
            return Answer(404, b"not found\n")
        entry = self.server.registry.find(parts[0])
        if entry is None:
            return Answer(401, b"unknown token\n")
        if self.client_address[0] not in entry["addresses"]:
            return Answer(403, b"not this pod's address\n")
        form = self._form() if method == "POST" else {}
        if form is None:
            return Answer(413, b"form too large\n")
        return answer(entry, self.server.key, method, parts[3:], form)

    def _form(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_FORM_BYTES:
            return None
        body = self.rfile.read(length).decode("utf-8", "replace")
        return {name: values[0] for name, values in parse_qs(body, keep_blank_values=True).items()}

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass  # requests carry tokens: never written to a log


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, registry: Registry, key: bytes):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.registry = registry
        self.key = key


class MetadataService:
    """The service on each of `addresses` (the pod networks' host sides), all on one port."""

    def __init__(self, registry: Registry, key: bytes, addresses, port: int = DEFAULT_PORT):
        if not addresses:
            raise InvalidInput("the metadata service needs at least one address to listen on", "addresses")
        self.registry, self.key, self.addresses, self.port = registry, key, list(addresses), port
        self._serving = ServerThreads("metadata")

    def start(self) -> int:
        """Bind every address and serve in threads; the port (chosen by the kernel when 0)."""
        try:
            for address in self.addresses:
                server = self._serving.add(_Server((address, self.port), self.registry, self.key))
                self.port = server.server_address[1]
        except OSError as error:
            self.stop()
            raise JetpackError("metadata service: cannot listen on %s port %d: %s; free the port or choose "
                               "another" % (address, self.port, error.strerror)) from None
        self._serving.serve()
        return self.port

    def stop(self) -> None:
        self._serving.stop()


def main(argv=None) -> int:
    """`python -m ...jetpack.metadata --registry DIR --key FILE [--port N] ADDRESS...`: serve until SIGTERM."""
    import argparse
    parser = argparse.ArgumentParser(prog="jetpack-metadata")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("addresses", nargs="+")
    options = parser.parse_args(argv)
    service = MetadataService(Registry(options.registry), load_or_create_key(options.key), options.addresses,
                              options.port)
    service.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    service.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
