"""Where an image comes from: a local path or an http(s) URL, downloaded into the store.

`Client` is how every download reaches a server: https only unless plain http is explicitly
allowed, certificates verified (against the system's CAs or a given CA bundle), redirects
followed but never from https down to http, and an optional `connect_to` table
{(host, port): (address, port)} that sends a name's connections elsewhere while TLS still checks
the certificate against the name (a mirror, or a loopback server in tests).

Downloads go into scratch directories (`scratch_directory`): each is held by an flock while in
use and removed afterwards; one left by a crashed process (its lock free) is removed by the next
caller.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import urllib.parse
from typing import Callable, Optional

from .errors import InvalidInput, JetpackError, NotFound

CHUNK = 1 << 20
TIMEOUT = 60
SCRATCH_LOCK = ".lock"
SCRATCH_ATTEMPTS = 5


def is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in ("http", "https", "file")


def check_location(location: str, allow_http: bool = False) -> None:
    """Refuse what must never be fetched before anything is touched."""
    scheme = urllib.parse.urlsplit(location).scheme
    if not scheme:
        if not os.path.isabs(location):
            raise InvalidInput("source %r must be an absolute path or an http(s) URL" % location, field="source")
    elif scheme not in ("http", "https", "file"):
        raise InvalidInput("source %r is neither an absolute path nor an http(s) URL" % location, field="source")
    elif scheme == "http" and not allow_http:
        raise InvalidInput("%s is plain http: anyone on the path could replace the image. "
                           "Use https, or set allow_http=true if this network is trusted" % location,
                           field="source")


def local_path(location: str) -> Optional[str]:
    """The file behind a location, or None when it has to be downloaded."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return urllib.parse.unquote(parts.path)
    if not parts.scheme:
        return location
    return None


def file_signature(path: str) -> dict:
    """What identifies a local source cheaply: re-reading it is skipped while this is unchanged."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound("source %s does not exist; check the path" % path)
    return {"location": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def download(url: str, directory: str, validate_certs: bool = True, progress: Optional[Callable] = None) -> str:
    """Download url into a new file in directory and return its path (the caller removes it).

    An http URL was allowed by the caller (check_location); a redirect from https to http is not.
    """
    client = Client(allow_http=url.startswith("http:"), validate_certs=validate_certs)
    return client.download(url, directory, progress=progress)


class DownloadError(JetpackError):
    """A download failed; `status` is the HTTP status, or None when no server answered."""

    def __init__(self, message: str, url: str, status: Optional[int] = None):
        super().__init__(message)
        self.url = url
        self.status = status

    def details(self) -> dict:
        return {"url": self.url, "status": self.status}


class Client:
    """How downloads reach servers; see the module docstring."""

    def __init__(self, allow_http: bool = False, validate_certs: bool = True, ca_file: Optional[str] = None,
                 connect_to: Optional[dict] = None, timeout: float = TIMEOUT):
        self.allow_http = allow_http
        self.validate_certs = validate_certs
        self.ca_file = ca_file
        self.connect_to = dict(connect_to or {})
        self.timeout = timeout
        self._opener = None

    def check_url(self, url: str, field: str = "url") -> None:
        """Refuse a URL this client must not fetch: not http(s), or plain http when not allowed."""
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme == "https" or (scheme == "http" and self.allow_http):
            return
        if scheme == "http":
            raise InvalidInput("%s is plain http: anyone on the path could replace what it serves. "
                               "Use https, or set allow_http=true if this network is trusted" % url, field=field)
        raise InvalidInput("%s is not an https URL; only https (and http with allow_http) can be fetched"
                           % url, field=field)

    def read(self, url: str, max_bytes: int) -> bytes:
        """A small document (a discovery page, a key, a signature), refused beyond max_bytes."""
        with self._open(url) as response:
            data = response.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise DownloadError("%s is larger than %d bytes, more than such a document can be; "
                                "check the URL" % (url, max_bytes), url)
        return data

    def download(self, url: str, directory: str, progress: Optional[Callable] = None) -> str:
        """Download url into a new file in directory and return its path (the caller removes it).

        progress(url, bytes done, total bytes or None) is called after each chunk.
        """
        fd, path = tempfile.mkstemp(dir=directory, prefix="download-", suffix=".aci")
        try:
            with os.fdopen(fd, "wb") as out, self._open(url) as response:
                total = _content_length(response)
                done = 0
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(url, done, total)
        except BaseException:
            os.unlink(path)
            raise
        return path

    def _open(self, url: str):
        import urllib.error  # only here: a run that downloads nothing does not pay for http.client
        import urllib.request
        self.check_url(url)
        request = urllib.request.Request(url, headers={"User-Agent": "jetpack.runtime"})
        try:
            return self.opener().open(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            e.close()
            raise DownloadError("downloading %s failed: HTTP %s %s; check the URL" % (e.url or url, e.code, e.reason),
                                url, e.code)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DownloadError("downloading %s failed: %s; check the URL and that the host is reachable"
                                % (url, reason), url)

    def opener(self):
        if self._opener is None:
            self._opener = _build_opener(self)
        return self._opener


def _content_length(response) -> Optional[int]:
    try:
        return int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return None


def _build_opener(client: Client):
    import http.client
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=client.ca_file)
    if not client.validate_certs:
        context = ssl._create_unverified_context()
    connect_to = client.connect_to

    def mapped(base):
        """A connection class whose sockets go where connect_to says; TLS still checks the URL's host."""
        class Connection(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                create = self._create_connection
                self._create_connection = lambda address, *a, **kw: create(connect_to.get(address, address), *a, **kw)
        return Connection

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(mapped(http.client.HTTPConnection), req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(mapped(http.client.HTTPSConnection), req, context=context)

    class Redirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            client.check_url(newurl, field="redirect")
            # Python 3.9 and 3.10 do not know 308; it redirects like 307 (same method, same body).
            return super().redirect_request(req, fp, 307 if code == 308 else code, msg, headers, newurl)

        http_error_308 = urllib.request.HTTPRedirectHandler.http_error_302

    handlers = [HTTPHandler(), HTTPSHandler(context=context), Redirects()]
    if connect_to:
        handlers.append(urllib.request.ProxyHandler({}))  # connect_to says where to connect: no proxy
    return urllib.request.build_opener(*handlers)


# --- progress -----------------------------------------------------------------------------------
def progress_text(url: str, done: int, total: Optional[int]) -> str:
    """One line for a progress display: `name.aci  12.0 MiB of 40.0 MiB (30%)`."""
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1] or url
    if total:
        return "%s  %s of %s (%d%%)" % (name, _mib(done), _mib(total), done * 100 // total)
    return "%s  %s" % (name, _mib(done))


def _mib(count: int) -> str:
    return "%.1f MiB" % (count / float(1 << 20))


# --- scratch space ------------------------------------------------------------------------------
@contextlib.contextmanager
def scratch_directory(parent: str, prefix: str = "fetch-"):
    """A new private directory under parent, removed afterwards.

    It holds an flock on its `.lock` file while in use; directories under parent with this prefix
    whose lock is free were left by a crash and are removed first.
    """
    os.makedirs(parent, mode=0o700, exist_ok=True)
    remove_abandoned(parent, prefix)
    path, fd = _locked_directory(parent, prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _locked_directory(parent: str, prefix: str) -> tuple:
    for _attempt in range(SCRATCH_ATTEMPTS):
        path = tempfile.mkdtemp(dir=parent, prefix=prefix)
        lock = os.path.join(path, SCRATCH_LOCK)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # another process took the empty directory for abandoned and removed it
        fcntl.flock(fd, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                return path, fd
        os.close(fd)  # removed between open and flock: start again
    raise JetpackError("cannot make a scratch directory under %s: it keeps disappearing; "
                       "check what else removes files there" % parent)


def remove_abandoned(parent: str, prefix: str) -> list:
    """Remove the scratch directories under parent that no live process holds; returns their paths."""
    removed = []
    try:
        entries = sorted(os.listdir(parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        path = os.path.join(parent, entry)
        if entry.startswith(prefix) and _abandoned(path):
            removed.append(path)
    return removed


def _abandoned(path: str) -> bool:
    """Remove path when its lock is free (or it is empty and lockless); True when removed."""
    try:
        fd = os.open(os.path.join(path, SCRATCH_LOCK), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            os.rmdir(path)  # only an empty one: its maker may be about to create the lock
            return True
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        shutil.rmtree(path, ignore_errors=True)  # the lock is held until all is gone
    finally:
        os.close(fd)
    return True
