"""appc meta discovery: from an image name and labels to a verified archive on this host.

`https://<name>?ac-discovery=1` is fetched and its `<meta name="ac-discovery" content="PREFIX
TEMPLATE">` and `<meta name="ac-discovery-pubkeys" content="PREFIX URL">` tags read; only tags
whose PREFIX starts the name count. On an HTTP 4xx, or a page without such tags, the parent name
is tried (`a.com/x/y`, `a.com/x`, `a.com`). Redirects are followed (fetch.Client). Templates
are filled with `{name}`, `{ext}` (`aci` or `aci.asc`) and the labels, `version` defaulting to
`latest` and `os`/`arch` to this host's; a template left with an unknown `{...}` is skipped.

`fetch_image` downloads the first archive an endpoint serves, with its detached signature,
verifies the signature against the keys trusted for the name (trust.py), and checks that the
manifest holds the name and labels asked for, before the caller imports anything.
"""
from __future__ import annotations

import contextlib
import html.parser
import os
import platform
import re
import tempfile
import urllib.parse
from typing import Callable, Optional

from . import appc, fetch, trust
from .errors import InvalidInput, JetpackError, NotFound

MAX_PAGE_BYTES = 1 << 20
DEFAULT_VERSION = "latest"
_VARIABLE_RE = re.compile(r"\{([^{}]*)\}")
# Python's platform.machine() spellings in appc's; unknown machines get no default arch label.
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "i386": "i386", "i686": "i386", "aarch64": "aarch64"}


class Endpoints:
    """What discovery found: (archive URL, signature URL) pairs in the page's order, and key URLs."""

    def __init__(self, archives: list, pubkeys: list, page: str):
        self.archives = archives
        self.pubkeys = pubkeys
        self.page = page


class FetchedImage:
    """A downloaded archive whose signature (unless skipped) and manifest were checked."""

    def __init__(self, path: str, image_id: str, manifest: dict, url: str, signer: Optional[str]):
        self.path = path
        self.image_id = image_id
        self.manifest = manifest
        self.url = url
        self.signer = signer  # fingerprint of the trusted key that signed it; None when not verified


# --- labels and templates -----------------------------------------------------------------------
def host_labels() -> dict:
    """This host's os and arch in appc's spelling (empty when appc has no word for them)."""
    os_name = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    if os_name not in appc.OS_ARCHES:
        return {}
    if arch not in appc.OS_ARCHES[os_name]:
        return {"os": os_name}
    return {"os": os_name, "arch": arch}


def template_labels(labels: dict, defaults: Optional[dict] = None) -> dict:
    """The labels templates are filled with: the asked ones, else version=latest and the host's os/arch."""
    filled = {"version": DEFAULT_VERSION}
    filled.update(host_labels() if defaults is None else defaults)
    filled.update(labels)
    return filled


def expand(template: str, name: str, labels: dict, ext: str) -> Optional[str]:
    """The template filled in, or None when it names a variable that has no value."""
    values = {"name": name, "ext": ext}
    for label, value in labels.items():
        values.setdefault(label, urllib.parse.quote(value, safe=""))
    missing = [v for v in _VARIABLE_RE.findall(template) if v not in values]
    if missing:
        return None
    return _VARIABLE_RE.sub(lambda m: values[m.group(1)], template)


def ancestors(name: str) -> list:
    """The name, then each parent path: a.com/x/y, a.com/x, a.com."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


def page_urls(name: str, allow_http: bool) -> list:
    """The discovery pages to try, nearest first; https before http."""
    schemes = ("https", "http") if allow_http else ("https",)
    return [["%s://%s?ac-discovery=1" % (scheme, prefix) for scheme in schemes] for prefix in ancestors(name)]


# --- pages --------------------------------------------------------------------------------------
class _MetaTags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []

    def handle_starttag(self, tag, attrs):
        if tag == "meta":
            attributes = dict(attrs)
            if attributes.get("name") and attributes.get("content") is not None:
                self.tags.append((attributes["name"].strip().lower(), attributes["content"]))


def meta_tags(page: str) -> list:
    """(name, content) of every <meta> of an HTML page, in order."""
    parser = _MetaTags()
    parser.feed(page)
    parser.close()
    return parser.tags


def prefixed(tags: list, tag_name: str, name: str) -> list:
    """The values of `tag_name` tags whose prefix starts `name` (appc: a string prefix)."""
    values = []
    for tag, content in tags:
        fields = content.split()
        if tag == tag_name and len(fields) == 2 and name.startswith(fields[0]):
            values.append(fields[1])
    return values


def endpoints_in(tags: list, name: str, labels: dict, client: fetch.Client, page: str) -> Endpoints:
    """The usable endpoints of one page: both URLs expanded and allowed by the client."""
    archives = []
    for template in prefixed(tags, "ac-discovery", name):
        if "{ext}" not in template:
            continue
        aci, asc = expand(template, name, labels, "aci"), expand(template, name, labels, "aci.asc")
        if aci and _fetchable(client, aci) and _fetchable(client, asc):
            archives.append((aci, asc))
    pubkeys = [url for url in prefixed(tags, "ac-discovery-pubkeys", name) if _fetchable(client, url)]
    return Endpoints(archives, pubkeys, page)


def _fetchable(client: fetch.Client, url: str) -> bool:
    try:
        client.check_url(url)
    except InvalidInput:
        return False
    return True


def _read_page(url: str, client: fetch.Client) -> Optional[list]:
    """The meta tags of a discovery page; None when the server says 4xx (try the parent)."""
    try:
        data = client.read(url, MAX_PAGE_BYTES)
    except fetch.DownloadError as e:
        if e.status is not None and 400 <= e.status < 500:
            return None
        raise
    return meta_tags(data.decode("utf-8", "replace"))


def _pages(name: str, client: fetch.Client):
    """(URL, meta tags) of each discovery page that answers, nearest first."""
    for urls in page_urls(name, client.allow_http):
        for index, url in enumerate(urls):
            try:
                tags = _read_page(url, client)
            except fetch.DownloadError as e:
                if e.status is None and index + 1 < len(urls):
                    continue  # no https server: allow_http lets the http page answer
                raise
            if tags is not None:
                yield url, tags
            break


def discover(name: str, labels: dict, client: fetch.Client, defaults: Optional[dict] = None) -> Endpoints:
    """The archive and key URLs for name+labels; NotFound says which pages were read."""
    filled = template_labels(labels, defaults)
    pubkeys, read = [], []
    for url, tags in _pages(name, client):
        read.append(url)
        found = endpoints_in(tags, name, filled, client, url)
        pubkeys += [k for k in found.pubkeys if k not in pubkeys]
        if found.archives:
            return Endpoints(found.archives, pubkeys, url)
    where = ", ".join(read) if read else "https://%s?ac-discovery=1 or its parents (all HTTP 4xx)" % name
    raise NotFound("appc discovery found no usable ac-discovery template for %s (labels %s) at %s; check the "
                   "name and labels%s" % (name, _labels_text(filled), where,
                                          "" if client.allow_http else ", or set allow_http=true if the "
                                          "publisher only serves http"))


def discover_pubkeys(name: str, client: fetch.Client) -> list:
    """The ac-discovery-pubkeys URLs for name, from the nearest page that lists any."""
    for _url, tags in _pages(name, client):
        urls = [url for url in prefixed(tags, "ac-discovery-pubkeys", name) if _fetchable(client, url)]
        if urls:
            return urls
    raise NotFound("appc discovery found no ac-discovery-pubkeys for %s; give the key as a file or URL" % name)


# --- fetching -----------------------------------------------------------------------------------
def check_manifest(manifest: dict, name: str, labels: dict, defaults: Optional[dict] = None) -> None:
    """The archive must hold what was asked for: the name, every label asked, and no other os/arch.

    A default os/arch label (the host's) only refuses an image that names another one: an image
    without os or arch runs anywhere.
    """
    if manifest["name"] != name:
        raise InvalidInput("discovery for %s served an image named %r; the publisher's page or archive is "
                           "wrong, so nothing was imported" % (name, manifest["name"]), field="name")
    have = appc.normalize_labels(manifest.get("labels", []))
    wanted = dict(labels)
    for label, value in (host_labels() if defaults is None else defaults).items():
        if label in have and label not in wanted:
            wanted[label] = value
    if not appc.labels_match(wanted, have):
        raise InvalidInput("discovery for %s served an image labelled %s, not %s; fix labels, or the "
                           "publisher's page, so nothing was imported"
                           % (name, _labels_text(have), _labels_text(wanted)), field="labels")


@contextlib.contextmanager
def fetch_image(store, name: str, labels: Optional[dict] = None, *, allow_http: bool = False,
                validate_certs: bool = True, verify_signature: bool = True, progress: Optional[Callable] = None,
                client: Optional[fetch.Client] = None, defaults: Optional[dict] = None):
    """Discover, download and check an image; yields a FetchedImage whose file is removed afterwards.

    Nothing in the store changes: the caller imports `fetched.path` (images.ImportRequest with
    `image_id=fetched.image_id` pins what was verified). Refused when no trusted key signed it
    (unless verify_signature is false), or when its manifest does not hold name and labels.
    `client` replaces the one allow_http/validate_certs would make; `defaults` the host's os/arch.
    """
    name = appc.validate_identifier(name, "name")
    labels = appc.normalize_labels(labels or {})
    client = client or fetch.Client(allow_http=allow_http, validate_certs=validate_certs)
    endpoints = discover(name, labels, client, defaults)
    keys = trust.trust_store(store).keys_for(name) if verify_signature else []
    if verify_signature and not keys:
        raise NotFound("no key is trusted to sign %s, so it cannot be verified; trust the publisher's key with "
                       "jetpack.runtime.jetpack_trust (prefix %s%s), or set verify_signature=false"
                       % (name, name.split("/")[0], _key_hint(endpoints.pubkeys)))
    with fetch.scratch_directory(download_parent(store)) as scratch:
        url, path, signature = _download_first(endpoints, client, scratch, verify_signature, progress)
        signer = trust.verify(keys, path, signature, name) if verify_signature else None
        manifest, _raw, image_id = _aci().read_manifest(path)
        check_manifest(manifest, name, labels, defaults)
        yield FetchedImage(path, image_id, manifest, url, signer)


def download_parent(store) -> str:
    """Where downloads go: the store's `downloads/` when the store exists, else the system's temp."""
    if store.root in store.inventory():
        return os.path.join(store.config.mountpoint, "downloads")
    return tempfile.gettempdir()


def _download_first(endpoints: Endpoints, client: fetch.Client, scratch: str, signed: bool,
                    progress: Optional[Callable]) -> tuple:
    """(archive URL, archive path, signature path or None) from the first endpoint that serves both."""
    failures = []
    for aci_url, asc_url in endpoints.archives:
        try:
            signature = _download_signature(client, asc_url, scratch) if signed else None
            return aci_url, client.download(aci_url, scratch, progress), signature
        except fetch.DownloadError as e:
            failures.append(str(e))
    raise JetpackError("no endpoint discovered at %s served the image: %s"
                       % (endpoints.page, "; ".join(failures)))


def _download_signature(client: fetch.Client, url: str, scratch: str) -> str:
    try:
        data = client.read(url, trust.MAX_SIGNATURE_BYTES)
    except fetch.DownloadError as e:
        if e.status == 404:
            raise fetch.DownloadError("the image has no signature at %s (HTTP 404), so it is refused; ask the "
                                      "publisher to sign it, or set verify_signature=false" % url, url, e.status)
        raise
    path = os.path.join(scratch, "signature.asc")
    with open(path, "wb") as f:
        f.write(data)
    return path


def _key_hint(pubkeys: list) -> str:
    if not pubkeys:
        return ""
    return "; the publisher lists its keys at %s: check a fingerprint with the publisher and give it as " \
           "fingerprint" % ", ".join(pubkeys)


def _labels_text(labels: dict) -> str:
    return ",".join("%s=%s" % kv for kv in sorted(labels.items())) or "(none)"


def _aci():
    """The archive code, imported only when an archive is read."""
    from . import aci
    return aci


# --- keys ---------------------------------------------------------------------------------------
def discover_key(trusted: trust.TrustStore, prefix: str, fingerprint: str, client: fetch.Client) -> bytes:
    """The publisher's key with this fingerprint, from the ac-discovery-pubkeys of prefix.

    The fingerprint is the pin: a key the page lists is used only when it is that key.
    """
    fingerprint = trust.normalize_fingerprint(fingerprint)
    problems = []
    for url in discover_pubkeys(prefix, client):
        try:
            data = client.read(url, trust.MAX_KEY_BYTES)
            trusted.read_key(data, fingerprint)
        except (InvalidInput, fetch.DownloadError) as e:
            problems.append("%s: %s" % (url, e))
            continue
        return data
    raise InvalidInput("no key discovered for %s has the pinned fingerprint %s (%s); check the fingerprint with "
                       "the publisher" % (prefix, fingerprint, "; ".join(problems)), field="fingerprint")
