"""Where an image comes from: a local path or an http(s) URL, downloaded into the store."""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from typing import Optional

from .errors import InvalidInput, JetpackError, NotFound

CHUNK = 1 << 20
TIMEOUT = 60


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


def download(url: str, directory: str, validate_certs: bool = True) -> str:
    """Download url into a new file in directory and return its path (the caller removes it)."""
    import ssl  # only here: a run that downloads nothing does not pay for ssl and http.client
    import urllib.error
    import urllib.request
    handlers = []
    if url.startswith("https:") and not validate_certs:
        handlers.append(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
    opener = urllib.request.build_opener(*handlers)
    fd, path = tempfile.mkstemp(dir=directory, prefix="download-", suffix=".aci")
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "jetpack.runtime"})
            with opener.open(request, timeout=TIMEOUT) as response:
                shutil.copyfileobj(response, out, CHUNK)
    except urllib.error.HTTPError as e:
        os.unlink(path)
        raise JetpackError("downloading %s failed: HTTP %s %s; check the URL" % (url, e.code, e.reason))
    except (urllib.error.URLError, OSError) as e:
        os.unlink(path)
        reason = getattr(e, "reason", e)
        raise JetpackError("downloading %s failed: %s; check the URL and that the host is reachable"
                           % (url, reason))
    return path
