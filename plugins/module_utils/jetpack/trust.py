"""Trusted signing keys, per image-name prefix, and image signature verification with gpg.

The trust store lives in the store, beside images/ (the layout rkt used, facts only):

    <mountpoint>/trust/root.d/<FINGERPRINT>.asc                 trusted for every image name
    <mountpoint>/trust/prefix.d/<quoted prefix>/<FINGERPRINT>.asc

Each file is one OpenPGP public key, ASCII-armoured as gpg exports it; the prefix is
percent-quoted (`example.com/app` -> `example.com%2Fapp`). A prefix key is trusted for the
prefix itself and the names below it (`example.com` covers `example.com/app`, not
`example.com.evil.net/app`).

Verification never trusts gpg's exit code alone: the keys trusted for the name are imported into
a temporary keyring, `gpg --verify` runs as an argv with `--status-fd`, and the signature counts
only when every signature in the file is GOODSIG + VALIDSIG from one of those keys and gpg reports
no bad, expired or revoked signature or key.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections import namedtuple
from typing import Optional

from . import appc
from .errors import CommandError, InvalidInput, JetpackError, NotFound

TRUST_DIR = "trust"
ROOT_DIR = "root.d"
PREFIX_DIR = "prefix.d"
KEY_SUFFIX = ".asc"
TMP_PREFIX = ".tmp-"
MAX_SIGNATURE_BYTES = 64 << 10
MAX_KEY_BYTES = 1 << 20
SIGNATURE_BEGIN = b"-----BEGIN PGP SIGNATURE-----"
SIGNATURE_END = b"-----END PGP SIGNATURE-----"
# Status keywords that refuse a signature whatever else gpg says (doc/DETAILS in GnuPG).
REFUSING_STATUS = ("BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY")
_FINGERPRINT_RE = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
_GPG_OPTIONS = ["--batch", "--no-tty", "--no-autostart", "--no-options", "--quiet"]
# Validity letters of a colon listing that make a key useless for signing (doc/DETAILS, field 2).
_DEAD_KEYS = {"r": "revoked", "e": "expired", "d": "disabled", "i": "invalid"}

ListedKey = namedtuple("ListedKey", "fingerprint uids validity")


class Key:
    """A trusted key: its fingerprint, its scope (a prefix, or root) and its file."""

    def __init__(self, fingerprint: str, prefix: Optional[str], path: str, uids=None):
        self.fingerprint = fingerprint
        self.prefix = prefix  # None: a root key
        self.path = path
        self.uids = uids

    @property
    def root(self) -> bool:
        return self.prefix is None

    def info(self) -> dict:
        return {"fingerprint": self.fingerprint, "prefix": self.prefix, "root": self.root,
                "uids": list(self.uids or []), "path": self.path}


def normalize_fingerprint(value: str, field: str = "fingerprint") -> str:
    """Upper-case hex without spaces or 0x; a full v4 (40) or v5 (64) fingerprint, never a short key ID."""
    cleaned = value.replace(" ", "").upper()
    if cleaned.startswith("0X"):
        cleaned = cleaned[2:]
    if not _FINGERPRINT_RE.fullmatch(cleaned):
        raise InvalidInput("fingerprint %r is not a full OpenPGP fingerprint; give all 40 hex digits, as "
                           "`gpg --fingerprint` prints them" % value, field=field)
    return cleaned


def check_scope(prefix: Optional[str], root: bool) -> Optional[str]:
    """The prefix a key is for; None for a root key. Exactly one of prefix and root."""
    if root and prefix:
        raise InvalidInput("give either prefix or root, not both", field="prefix")
    if not root and not prefix:
        raise InvalidInput("give the image name prefix the key signs for, or root=true for every name",
                           field="prefix")
    return None if root else appc.validate_identifier(prefix, "prefix")


def covers(prefix: Optional[str], name: str) -> bool:
    """Whether a key of this scope is trusted for image `name`."""
    return prefix is None or name == prefix or name.startswith(prefix + "/")


# --- gpg ----------------------------------------------------------------------------------------
class Gpg:
    """gpg(1) run as an argv in throwaway home directories; `binary` None finds gpg on PATH."""

    def __init__(self, binary: Optional[str] = None):
        self.binary = binary

    def path(self) -> str:
        found = shutil.which(self.binary or "gpg")
        if not found:
            raise JetpackError("%s (GnuPG) is not installed but is needed to check image signatures; install "
                               "it (Debian: apt install gpg; FreeBSD: pkg install gnupg)" % (self.binary or "gpg"))
        return found

    @contextlib.contextmanager
    def home(self):
        """An empty, private GNUPGHOME removed afterwards (one a crash left is removed by the next)."""
        from .fetch import scratch_directory
        with scratch_directory(tempfile.gettempdir(), prefix="jetpack-gpg-") as home:
            yield home

    def run(self, home: str, args: list) -> tuple:
        argv = [self.path(), "--homedir", home] + _GPG_OPTIONS + args
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False,
                                  env=dict(os.environ, LC_ALL="C", GNUPGHOME=home))
        except OSError as e:
            raise CommandError("cannot run %s: %s; install GnuPG" % (argv[0], e), argv) from e
        return argv, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")

    def checked(self, home: str, args: list, what: str) -> str:
        argv, rc, out, err = self.run(home, args)
        if rc != 0:
            raise CommandError("gpg could not %s (rc %d): %s" % (what, rc, err.strip()), argv, rc, out, err)
        return out

    def list_keys(self, home: str, paths: list) -> list:
        """ListedKeys of the primary keys in these files, without importing them."""
        out = self.checked(home, ["--with-colons", "--import-options", "show-only", "--import", "--"] + paths,
                           "read the key")
        return parse_key_listing(out)

    def import_keys(self, home: str, paths: list) -> None:
        self.checked(home, ["--import", "--"] + paths, "import the keys")

    def export(self, home: str, fingerprint: str) -> bytes:
        return self.checked(home, ["--armor", "--export", "--", fingerprint], "export the key").encode()


def parse_key_listing(out: str) -> list:
    """ListedKeys from `gpg --with-colons` output (doc/DETAILS: pub, fpr, uid records; field 2 validity)."""
    keys, validity, want_fpr = [], "", False
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            validity, want_fpr = fields[1], True
        elif fields[0] == "sub":
            want_fpr = False
        elif fields[0] == "fpr" and want_fpr and len(fields) > 9:
            keys.append(ListedKey(fields[9].upper(), [], validity))
            want_fpr = False
        elif fields[0] == "uid" and keys and len(fields) > 9:
            keys[-1].uids.append(_unescape(fields[9]))
    return keys


def _unescape(value: str) -> str:
    """gpg escapes ':' and control characters in colon listings as \\xHH."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def parse_status(out: str) -> dict:
    """{keyword: [argument lists]} of `[GNUPG:] KEYWORD args` lines."""
    status = {}
    for line in out.splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, *args = line[len("[GNUPG:] "):].split(" ")
            status.setdefault(keyword, []).append(args)
    return status


def signer_of(status: dict, trusted: set, name: str) -> str:
    """The primary fingerprint of the trusted key that made every signature; JetpackError otherwise."""
    refusals = [k for k in REFUSING_STATUS if k in status]
    good, valid = status.get("GOODSIG", []), status.get("VALIDSIG", [])
    signatures = len(status.get("NEWSIG", [])) or len(good)
    if refusals or not good or len(good) != signatures or len(valid) != len(good):
        raise JetpackError("the signature of %s does not verify with the keys trusted for it (gpg said %s); "
                           "it was not made by a trusted key or the archive was changed, so it is refused"
                           % (name, ", ".join(refusals) or "no good signature"))
    signers = {args[9].upper() if len(args) > 9 else args[0].upper() for args in valid}
    untrusted = signers - trusted
    if untrusted:
        raise JetpackError("%s is signed by %s, which is not trusted for it; it is refused"
                           % (name, ", ".join(sorted(untrusted))))
    return sorted(signers)[0]


def check_signature_file(path: str) -> None:
    """The spec's form: one ASCII-armoured detached signature, nothing else."""
    with open(path, "rb") as f:
        data = f.read(MAX_SIGNATURE_BYTES + 1)
    text = data.strip()
    if (len(data) > MAX_SIGNATURE_BYTES or not text.startswith(SIGNATURE_BEGIN) or not text.endswith(SIGNATURE_END)
            or text.count(b"-----BEGIN ") != 1):
        raise JetpackError("the signature file is not one ASCII-armoured detached OpenPGP signature (%s ... %s); "
                           "it is refused" % (SIGNATURE_BEGIN.decode(), SIGNATURE_END.decode()))


def verify(keys: list, data_path: str, signature_path: str, name: str, gpg: Optional[Gpg] = None) -> str:
    """Check that a trusted key among `keys` signed data_path; returns its fingerprint."""
    if not keys:
        raise NotFound("no key is trusted to sign %s; add one with jetpack.runtime.jetpack_trust" % name)
    check_signature_file(signature_path)
    gpg = gpg or Gpg()
    with gpg.home() as home:
        gpg.import_keys(home, [key.path for key in keys])
        _argv, _rc, out, _err = gpg.run(home, ["--trust-model", "always", "--status-fd", "1",
                                               "--verify", "--", signature_path, data_path])
    return signer_of(parse_status(out), {key.fingerprint for key in keys}, name)


# --- the store of trusted keys ------------------------------------------------------------------
class TrustStore:
    """Trusted keys under one directory; `lock` is a context manager factory around every change."""

    def __init__(self, directory: str, lock=contextlib.nullcontext, gpg: Optional[Gpg] = None):
        self.directory = directory
        self.lock = lock
        self.gpg = gpg or Gpg()

    def scope_dir(self, prefix: Optional[str]) -> str:
        if prefix is None:
            return os.path.join(self.directory, ROOT_DIR)
        return os.path.join(self.directory, PREFIX_DIR, urllib.parse.quote(prefix, safe=""))

    def keys(self, prefix: Optional[str] = None, root: bool = False) -> list:
        """Every trusted key; with prefix or root, only that scope's. Sorted by scope, then fingerprint."""
        scopes = [None] if root else [prefix] if prefix else [None] + self._prefixes()
        found = []
        for scope in scopes:
            directory = self.scope_dir(scope)
            for entry in _listdir(directory):
                fingerprint = entry[:-len(KEY_SUFFIX)]
                if entry.endswith(KEY_SUFFIX) and _FINGERPRINT_RE.fullmatch(fingerprint):
                    found.append(Key(fingerprint, scope, os.path.join(directory, entry)))
        return found

    def keys_for(self, name: str) -> list:
        """The keys trusted for an image name: root keys and those of every prefix covering it."""
        return [key for key in self.keys() if covers(key.prefix, name)]

    def describe(self, keys: list) -> list:
        """The keys with their user IDs filled in (one gpg run)."""
        if not keys:
            return keys
        with self.gpg.home() as home:
            uids = {listed.fingerprint: listed.uids for listed in self.gpg.list_keys(home, [key.path for key in keys])}
        for key in keys:
            key.uids = uids.get(key.fingerprint, [])
        return keys

    def _prefixes(self) -> list:
        prefixes = []
        for entry in _listdir(os.path.join(self.directory, PREFIX_DIR)):
            prefix = urllib.parse.unquote(entry)
            with contextlib.suppress(InvalidInput):
                prefixes.append(appc.validate_identifier(prefix, "prefix"))
        return prefixes

    def find(self, fingerprint: str, prefix: Optional[str]) -> Optional[Key]:
        for key in self.keys(prefix, root=prefix is None):
            if key.fingerprint == fingerprint:
                return key
        return None

    def read_key(self, key_data: bytes, fingerprint: Optional[str] = None) -> tuple:
        """(fingerprint, uids, armoured key) of the one key of key_data to trust.

        With a fingerprint, that key (a pin: refused when key_data does not hold it); without,
        key_data must hold exactly one key.
        """
        if len(key_data) > MAX_KEY_BYTES:
            raise InvalidInput("the key is larger than %d bytes; give one public key" % MAX_KEY_BYTES, field="key")
        with self.gpg.home() as home:
            path = os.path.join(home, "given-key")
            with open(path, "wb") as f:
                f.write(key_data)
            try:
                listed = self.gpg.list_keys(home, [path])
            except CommandError as e:
                raise InvalidInput("the key is not an OpenPGP public key (%s); give an exported public key"
                                   % e.stderr.strip(), field="key") from None
            chosen = _choose(listed, fingerprint)
            self.gpg.import_keys(home, [path])
            armoured = self.gpg.export(home, chosen.fingerprint)
        return chosen.fingerprint, chosen.uids, armoured

    def add(self, key_data: bytes, prefix: Optional[str] = None, root: bool = False,
            fingerprint: Optional[str] = None, check_only: bool = False) -> tuple:
        """Trust a key for a prefix (or root); returns (Key, action): "added", "updated" or None.

        A key trusted already is replaced only when the given copy differs (new user IDs, a later
        expiry); adding the same key again changes nothing.
        """
        scope = check_scope(prefix, root)
        fingerprint, uids, armoured = self.read_key(key_data, normalize_fingerprint(fingerprint) if fingerprint else None)
        path = self._key_path(scope, fingerprint)
        action = "added" if self.find(fingerprint, scope) is None else "updated" if _read(path) != armoured else None
        if action and not check_only:
            with self.lock():
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                _remove_partial_writes(os.path.dirname(path))
                _write_atomically(path, armoured)
        return Key(fingerprint, scope, path, uids), action

    def remove(self, prefix: Optional[str] = None, root: bool = False, fingerprint: Optional[str] = None,
               check_only: bool = False) -> list:
        """Stop trusting a key of a scope, or all of them without a fingerprint; returns those removed."""
        scope = check_scope(prefix, root)
        fingerprint = normalize_fingerprint(fingerprint) if fingerprint else None
        keys = [k for k in self.keys(scope, root=scope is None) if fingerprint in (None, k.fingerprint)]
        if keys and not check_only:
            with self.lock():
                for key in keys:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(key.path)
                with contextlib.suppress(OSError):
                    os.rmdir(self.scope_dir(scope))  # only when empty
        return keys

    def _key_path(self, prefix: Optional[str], fingerprint: str) -> str:
        return os.path.join(self.scope_dir(prefix), fingerprint + KEY_SUFFIX)


def trust_store(store, gpg: Optional[Gpg] = None) -> TrustStore:
    """The trust store of a jetpack store; a change takes the store lock and creates the store if needed."""
    @contextlib.contextmanager
    def lock():
        with store.lock():
            store.ensure()
            yield

    return TrustStore(os.path.join(store.config.mountpoint, TRUST_DIR), lock, gpg)


def _choose(listed: list, fingerprint: Optional[str]) -> ListedKey:
    if not listed:
        raise InvalidInput("the key data holds no OpenPGP public key; give an exported public key", field="key")
    found = ", ".join(k.fingerprint for k in listed)
    if fingerprint:
        chosen = [k for k in listed if k.fingerprint == fingerprint]
        if not chosen:
            raise InvalidInput("the key data holds %s, not the pinned fingerprint %s; check the key source and the "
                               "fingerprint with the publisher" % (found, fingerprint), field="fingerprint")
    elif len(listed) > 1:
        raise InvalidInput("the key data holds %d keys (%s); give fingerprint to choose one" % (len(listed), found),
                           field="fingerprint")
    else:
        chosen = listed
    if chosen[0].validity in _DEAD_KEYS:
        raise InvalidInput("key %s is %s: it cannot sign anything; ask the publisher for its current key"
                           % (chosen[0].fingerprint, _DEAD_KEYS[chosen[0].validity]), field="key")
    return chosen[0]


def _remove_partial_writes(directory: str) -> None:
    """What a crash in _write_atomically left; called under the store lock, so nobody is writing."""
    for entry in _listdir(directory):
        if entry.startswith(TMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, entry))


def _write_atomically(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _listdir(path: str) -> list:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def load_key(location: str, client=None) -> bytes:
    """The bytes of a key given as an absolute path or an http(s) URL (`client`: a fetch.Client)."""
    from . import fetch
    if not fetch.is_url(location) or location.startswith("file:"):
        path = fetch.local_path(location)
        if not os.path.isabs(path):
            raise InvalidInput("key %r must be an absolute path or an https URL" % location, field="key")
        try:
            with open(path, "rb") as f:
                return f.read(MAX_KEY_BYTES + 1)
        except OSError as e:
            raise NotFound("cannot read the key file %s: %s; check the path" % (path, e.strerror)) from None
    return (client or fetch.Client()).read(location, MAX_KEY_BYTES)
