"""Named volumes: ZFS datasets under <root>/volumes that outlive pods and can be shared by several.

    <root>/volumes/<name>                  dataset, mounted at <mountpoint>/volumes/<name>/data
    <mountpoint>/volumes/<name>/volume.json

A volume is never destroyed or recreated because an option differs: properties ZFS can change are
set in place; creation-only properties that differ are reported, never applied. Removal refuses
while a pod uses the volume.
"""
from __future__ import annotations

import grp
import os
import pwd
import re
from typing import Optional

from .errors import InUse, InvalidInput, NotFound
from .store import KIND, READY, STATE, Store, write_json
from . import appc

# zfsprops(7): these are fixed when the dataset is created.
CREATION_ONLY = frozenset(("casesensitivity", "normalization", "utf8only", "encryption", "keyformat",
                           "keylocation", "pbkdf2iters", "volblocksize"))
SIZE_PROPERTIES = frozenset(("quota", "refquota", "reservation", "refreservation", "recordsize",
                             "special_small_blocks"))
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTPE]?)(?:i?B)?$", re.I)
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Volume:
    def __init__(self, store: Store, dataset: str, props: dict):
        self.store = store
        self.dataset = dataset
        self.name = dataset.rsplit("/", 1)[1]
        self.props = props

    @property
    def data(self) -> str:
        return self.store.path("volumes", self.name, "data")

    def info(self, users=None) -> dict:
        st = os.stat(self.data)
        return {"name": self.name, "dataset": self.dataset, "path": self.data,
                "owner": st.st_uid, "group": st.st_gid, "mode": "%04o" % (st.st_mode & 0o7777),
                "used": _int(self.props.get("used")), "users": users if users is not None else []}


def list_volumes(store: Store) -> list:
    return [Volume(store, dataset, props) for dataset, props in sorted(store.list_objects("volumes").items())
            if props.get(KIND) == "volume" and props.get(STATE) == READY]


def get_volume(store: Store, name: str) -> Volume:
    for volume in list_volumes(store):
        if volume.name == name:
            return volume
    raise NotFound("volume %s does not exist; create it with jetpack.runtime.jetpack_volume" % name)


def find_volume(store: Store, name: str) -> Optional[Volume]:
    try:
        return get_volume(store, name)
    except NotFound:
        return None


def volume_users(store: Store, name: str) -> list:
    """Names of the pods that mount the named volume."""
    from . import pods  # pods imports volumes when preparing: import here, not at the top
    return [pod.name for pod in pods.list_pods(store)
            if any(v["kind"] == "jetpack" and v["volume"] == name for v in pod.record["volumes"])]


# --- desired state ------------------------------------------------------------------------------
def normalize_properties(properties: dict) -> dict:
    """ZFS properties as zfs get -p prints them: sizes in bytes, everything a string."""
    result = {}
    for key, value in (properties or {}).items():
        if not _PROPERTY_NAME.match(key) and ":" not in key:
            raise InvalidInput("%r is not a ZFS property name" % key, field="properties")
        text = ("on" if value else "off") if isinstance(value, bool) else str(value)
        if "\n" in text or "=" in key:
            raise InvalidInput("property %s has an invalid value %r" % (key, value), field="properties")
        result[key] = str(parse_size(text)) if key in SIZE_PROPERTIES and text not in ("none", "-") else text
    return result


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise InvalidInput("%r is not a size such as 10G or 131072" % text, field="properties")
    number, unit = match.groups()
    return int(float(number) * (1024 ** " KMGTPE".index(unit.upper() or " ")))


def resolve_owner(owner, group) -> tuple:
    """(uid, gid) from names or numbers on the host; None where not given."""
    uid = _lookup(owner, pwd.getpwnam, "pw_uid", "owner")
    gid = _lookup(group, grp.getgrnam, "gr_gid", "group")
    return uid, gid


def _lookup(value, by_name, attribute, field):
    if value is None or value == "":
        return None
    if str(value).isdigit():
        return int(value)
    try:
        return getattr(by_name(str(value)), attribute)
    except KeyError:
        raise InvalidInput("%s %r does not exist on the host; use a number or create it" % (field, value),
                           field=field) from None


def differences(volume: Volume, properties: dict, uid, gid, mode) -> dict:
    """{"set": {prop: (have, want)}, "creation_only": {...}, "owner": ..., "mode": ...} that differ."""
    have = volume.store.zfs.get(volume.dataset, list(properties)) if properties else {}
    changes = {"set": {}, "creation_only": {}}
    for key, want in properties.items():
        if have.get(key) != want:
            changes["creation_only" if key in CREATION_ONLY else "set"][key] = (have.get(key), want)
    st = os.stat(volume.data)
    if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
        changes["owner"] = ((st.st_uid, st.st_gid), (_pick(uid, st.st_uid), _pick(gid, st.st_gid)))
    if mode is not None and st.st_mode & 0o7777 != int(mode, 8):
        changes["mode"] = ("%04o" % (st.st_mode & 0o7777), mode)
    return changes


def _pick(value, default):
    return default if value is None else value


# --- changes ------------------------------------------------------------------------------------
def create_volume(store: Store, name: str, properties: dict, uid, gid, mode) -> Volume:
    appc.validate_acname(name, "name")
    with store.lock():
        store.ensure()
        store.collect_garbage("volumes", READY)
        existing = find_volume(store, name)
        if existing:
            return existing
        dataset = store.dataset("volumes", name)
        os.makedirs(store.path("volumes", name), mode=0o700, exist_ok=True)
        props = dict(properties, mountpoint=store.path("volumes", name, "data"))
        props.update({KIND: "volume", STATE: "creating"})
        store.zfs.create(dataset, props)
        data = store.path("volumes", name, "data")
        os.chown(data, _pick(uid, 0), _pick(gid, 0))
        os.chmod(data, int(mode or "0755", 8))
        write_json(store.path("volumes", name, "volume.json"), {"name": name})
        store.zfs.set(dataset, {STATE: READY})
    return get_volume(store, name)


def update_volume(volume: Volume, changes: dict) -> None:
    """Apply what can change in place: settable properties, owner, mode. Never recreates."""
    with volume.store.lock():
        settable = {key: want for key, (have, want) in changes["set"].items()}
        if settable:
            volume.store.zfs.set(volume.dataset, settable)
        if "owner" in changes:
            os.chown(volume.data, *changes["owner"][1])
        if "mode" in changes:
            os.chmod(volume.data, int(changes["mode"][1], 8))


def remove_volume(store: Store, volume: Volume) -> None:
    with store.lock():
        users = volume_users(store, volume.name)
        if users:
            raise InUse("volume %s is used by pod %s; remove those pods first"
                        % (volume.name, ", ".join(users)), ["pod " + u for u in users])
        store.zfs.destroy(volume.dataset, recursive=True)
        store.remove_directory(store.path("volumes", volume.name))


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
