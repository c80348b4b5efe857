#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_volume
short_description: Manage named jetpack volumes, ZFS datasets that outlive pods
version_added: 0.1.0
description:
  - A named volume is a ZFS dataset under the store's C(volumes/) that pods mount with
    C(kind=jetpack) in M(jetpack.runtime.jetpack_pod). It outlives every pod and can be shared by several.
  - B(A volume is never destroyed or recreated because an option differs.) ZFS properties are changed in place
    where ZFS allows it; creation-only properties (such as C(casesensitivity) or C(encryption)) that differ are
    reported in RV(creation_only_differences) and left alone.
  - O(state=absent) refuses while a pod uses the volume, and names the pods.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.ATTRIBUTES
options:
  name:
    description:
      - The volume name, an AC name such as V(web-data).
    type: str
    required: true
  state:
    description:
      - V(present) creates the volume when missing and applies changeable settings.
      - V(absent) destroys the volume and B(its data), unless a pod uses it.
    type: str
    choices: [present, absent]
    default: present
  properties:
    description:
      - ZFS properties of the dataset, for example C(quota), C(compression), C(recordsize).
      - Sizes may be written as V(10G) or in bytes; they are compared in bytes.
    type: dict
    default: {}
  owner:
    description:
      - Owner of the volume's root directory, a user name on the host or a number.
    type: str
  group:
    description:
      - Group of the volume's root directory, a group name on the host or a number.
    type: str
  mode:
    description:
      - Mode of the volume's root directory, an octal string such as V("0750").
    type: str
seealso:
  - module: jetpack.runtime.jetpack_volume_info
  - module: jetpack.runtime.jetpack_pod
"""

EXAMPLES = r"""
- name: A volume for a database, compressed, with a quota
  jetpack.runtime.jetpack_volume:
    name: pgdata
    properties:
      compression: lz4
      quota: 20G
      recordsize: 16K
    owner: "70"
    group: "70"
    mode: "0700"

- name: Remove a volume no pod uses any more
  jetpack.runtime.jetpack_volume:
    name: scratch
    state: absent
"""

RETURN = r"""
volume:
  description: The volume as M(jetpack.runtime.jetpack_volume_info) returns it; V(null) when absent.
  returned: always
  type: dict
  contains:
    name:
      description: The volume name.
      type: str
      sample: pgdata
    dataset:
      description: The ZFS dataset.
      type: str
      sample: zroot/jetpack/volumes/pgdata
    path:
      description: Where the volume's data is mounted on the host.
      type: str
      sample: /var/jetpack/volumes/pgdata/data
    owner:
      description: UID owning the volume's root directory.
      type: int
      sample: 70
    group:
      description: GID of the volume's root directory.
      type: int
      sample: 70
    mode:
      description: Mode of the volume's root directory.
      type: str
      sample: "0700"
    used:
      description: Bytes the dataset uses.
      type: int
      sample: 98304
    users:
      description: Names of the pods that mount the volume.
      type: list
      elements: str
      sample: [db]
creation_only_differences:
  description: Creation-only properties whose wanted value differs from the dataset's; not applied.
  returned: always
  type: dict
  sample: {"casesensitivity": {"have": "sensitive", "want": "insensitive"}}
actions:
  description: What was done, or would be done in check mode, in words.
  returned: always
  type: list
  elements: str
  sample: ["created volume pgdata"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import (
    Changes, argument_spec, open_store, run_module)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import appc, volumes
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InUse, InvalidInput


def wanted(module):
    params = module.params
    name = appc.validate_acname(params["name"], "name")
    properties = volumes.normalize_properties(params["properties"])
    uid, gid = volumes.resolve_owner(params["owner"], params["group"])
    mode = params["mode"]
    if mode is not None:
        try:
            mode = "%04o" % int(mode, 8)
        except ValueError:
            raise InvalidInput("mode %r must be an octal string such as 0750" % mode, field="mode") from None
    return name, properties, uid, gid, mode


def summary(volume, properties=None):
    if volume is None:
        return {"exists": False}
    info = volume.info()
    return {"exists": True, "owner": info["owner"], "group": info["group"], "mode": info["mode"],
            "properties": volume.store.zfs.get(volume.dataset, list(properties)) if properties else {}}


def ensure_present(module, store, changes):
    name, properties, uid, gid, mode = wanted(module)
    volume = volumes.find_volume(store, name)
    if volume is None:
        changes.record("created volume %s" % name, exists=True, properties=properties,
                       owner=uid if uid is not None else 0, group=gid if gid is not None else 0,
                       mode=mode or "0755")
        if not module.check_mode:
            volume = volumes.create_volume(store, name, properties, uid, gid, mode)
        return volume, {}
    changes.before = changes.after = summary(volume, properties)
    diff = volumes.differences(volume, properties, uid, gid, mode)
    after = dict(changes.before, properties=dict(changes.before["properties"]))
    for key, (have, want) in diff["set"].items():
        changes.actions.append("set %s=%s (was %s)" % (key, want, have))
        after["properties"][key] = want
    if "owner" in diff:
        changes.actions.append("changed owner to %s:%s" % diff["owner"][1])
        after["owner"], after["group"] = diff["owner"][1]
    if "mode" in diff:
        changes.actions.append("changed mode to %s" % diff["mode"][1])
        after["mode"] = diff["mode"][1]
    changes.after = after
    if changes.changed and not module.check_mode:
        volumes.update_volume(volume, diff)
    creation_only = {k: {"have": have, "want": want} for k, (have, want) in diff["creation_only"].items()}
    if creation_only:
        module.warn("volume %s: creation-only properties differ and were not applied: %s; "
                    "create a new volume to change them" % (name, ", ".join(sorted(creation_only))))
    return volume, creation_only


def work(module):
    store = open_store(module)
    changes = Changes({"exists": False})
    creation_only = {}
    if module.params["state"] == "absent":
        name = appc.validate_acname(module.params["name"], "name")
        volume = volumes.find_volume(store, name)
        if volume is not None:
            users = volumes.volume_users(store, name)
            if users:
                raise InUse("volume %s is used by pod %s; remove those pods first" % (name, ", ".join(users)),
                            ["pod " + u for u in users])
            changes.before = {"exists": True}
            changes.record("removed volume %s" % name, exists=False)
            if not module.check_mode:
                volumes.remove_volume(store, volume)
        volume = None
    else:
        volume, creation_only = ensure_present(module, store, changes)
    info = None
    if volume is not None and not (module.check_mode and not store.zfs.exists(volume.dataset)):
        info = volume.info(volumes.volume_users(store, volume.name))
    return changes.result(volume=info, creation_only_differences=creation_only)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            properties=dict(type="dict", default={}),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, work)


if __name__ == "__main__":
    main()
