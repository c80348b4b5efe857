#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_image
short_description: Import, export and remove App Container images in the jetpack store
version_added: 0.1.0
description:
  - Makes sure an App Container (appc) image is present in the host's jetpack store, or absent.
  - An image is a sealed, read-only ZFS dataset. An image that depends on one parent image is a ZFS clone
    of the parent's C(@seal) snapshot; one with several dependencies is rendered in the manifest's order.
  - Importing reads the archive once, computing the image ID (C(sha512-) of the uncompressed tar) while
    extracting with hardened rules; anything refused leaves nothing behind.
  - Re-running a task whose image is present changes nothing. A local source file that has not changed
    since it was imported (same path, size, modification time and inode) is not read again.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.ATTRIBUTES
options:
  name:
    description:
      - The image name, an AC identifier such as V(example.com/busybox).
      - With O(source), the archive must hold an image of this name.
      - Without O(source) and O(id), selects the images to keep or remove.
    type: str
  labels:
    description:
      - Labels the image must have, such as C(version), C(os) and C(arch). A subset match.
    type: dict
    default: {}
  id:
    description:
      - The image ID, V(sha512-) followed by 128 hex digits.
      - With O(source), pins the archive's content; an archive with another ID is refused.
    type: str
  state:
    description:
      - V(present) imports the image from O(source) unless it is already in the store.
      - V(absent) removes every matching image, refusing while a pod or a child image uses one.
    type: str
    choices: [present, absent]
    default: present
  source:
    description:
      - The ACI archive to import, an absolute path or an C(https://) URL (C(http://) only with O(allow_http)).
      - Plain, gzip, bzip2 and xz archives are accepted.
      - Dependencies named in the image manifest must already be in the store.
    type: str
  allow_http:
    description:
      - Allow an C(http://) O(source). Anyone on the network path could replace the image, so only use it on
        networks you trust.
    type: bool
    default: false
  validate_certs:
    description:
      - Verify the server certificate of an C(https://) O(source).
    type: bool
    default: true
  allow_setuid:
    description:
      - Keep setuid and setgid bits of files in the archive. They are cleared by default.
    type: bool
    default: false
  export_path:
    description:
      - Also write the image as an ACI archive to this absolute path.
      - Nothing is written when the file already holds the same image (same ID).
    type: path
  export_flat:
    description:
      - Export the rendered tree with dependencies and C(pathWhitelist) dropped, instead of the
        archive as imported.
    type: bool
    default: false
  export_compression:
    description:
      - Compression of a flat export.
    type: str
    choices: [gzip, bzip2, xz, none]
    default: gzip
notes:
  - Images are immutable; importing a different archive under the same name and labels adds a second image.
    Remove the old one with O(state=absent) and O(id).
seealso:
  - module: jetpack.runtime.jetpack_image_info
"""

EXAMPLES = r"""
- name: Import an image from a file on the host
  jetpack.runtime.jetpack_image:
    name: example.com/busybox
    labels:
      version: "1.36"
      os: linux
      arch: amd64
    source: /srv/images/busybox-1.36-linux-amd64.aci

- name: Import a pinned image over https
  jetpack.runtime.jetpack_image:
    name: example.com/nginx
    id: sha512-6f2a0e8c0f0e4a6b6d5d3b1e7f8a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d
    source: https://images.example.com/nginx-1.26-linux-amd64.aci

- name: Export an image as a flat archive
  jetpack.runtime.jetpack_image:
    name: example.com/busybox
    labels:
      version: "1.36"
    export_path: /srv/export/busybox.aci
    export_flat: true

- name: Remove every version of an image
  jetpack.runtime.jetpack_image:
    name: example.com/busybox
    state: absent
"""

RETURN = r"""
image:
  description:
    - The image as M(jetpack.runtime.jetpack_image_info) returns it; V(null) after removal or when
      check mode would import it.
  returned: always
  type: dict
  contains:
    id:
      description: The image ID.
      type: str
      sample: sha512-3f7c2d0e1b9a...
    name:
      description: The image name.
      type: str
      sample: example.com/busybox
    labels:
      description: The image labels.
      type: dict
      sample: {"version": "1.36", "os": "linux", "arch": "amd64"}
    annotations:
      description: The image annotations.
      type: dict
      sample: {"authors": "ops@example.com"}
    app:
      description: The manifest's C(app) section, or V(null).
      type: dict
      sample: {"exec": ["/bin/httpd", "-f"], "user": "0", "group": "0"}
    dependencies:
      description: IDs of the images this one was rendered from, in the manifest's order.
      type: list
      elements: str
      sample: []
    path_whitelist:
      description: The manifest's C(pathWhitelist).
      type: list
      elements: str
      sample: []
    dataset:
      description: The image's ZFS dataset.
      type: str
      sample: zroot/jetpack/images/0f8e3c2a9b4d4f0e8a1b2c3d4e5f6a7b
    rootfs:
      description: Where the image's root filesystem is mounted (read-only).
      type: str
      sample: /var/jetpack/images/0f8e3c2a9b4d4f0e8a1b2c3d4e5f6a7b/rootfs
    imported:
      description: When the image was imported (UTC, ISO 8601).
      type: str
      sample: "2026-11-30T01:17:21+00:00"
    size:
      description: Bytes the image's dataset uses.
      type: int
      sample: 1310720
    source:
      description: Where the image was imported from.
      type: str
      sample: /srv/images/busybox-1.36-linux-amd64.aci
    manifest:
      description: The full image manifest.
      type: dict
      sample: {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox"}
removed:
  description: IDs of the images removed (or that check mode would remove).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["sha512-3f7c2d0e1b9a..."]
export:
  description: The export written, or that would be written.
  returned: when O(export_path) is set
  type: dict
  contains:
    path:
      description: The archive's path.
      type: str
      sample: /srv/export/busybox.aci
    id:
      description: The ID of the exported archive; for a flat export it differs from the image's.
      type: str
      sample: sha512-9a8b7c...
actions:
  description: What was done, or would be done in check mode, in words.
  returned: always
  type: list
  elements: str
  sample: ["imported example.com/busybox (sha512-3f7c2d0e1b9a...) from /srv/images/busybox.aci"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import (
    Changes, argument_spec, open_store, run_module)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import appc, images
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import NotFound


def summary(image):
    if image is None:
        return {"exists": False}
    return {"exists": True, "id": image.id, "name": image.name, "labels": image.labels}


def wanted(module):
    params = module.params
    name = appc.validate_identifier(params["name"], "name") if params["name"] else None
    labels = appc.normalize_labels(params["labels"] or {})
    image_id = appc.validate_image_id(params["id"], "id") if params["id"] else None
    return name, labels, image_id


def ensure_present(module, store, changes):
    params = module.params
    name, labels, image_id = wanted(module)
    if params["source"]:
        request = images.ImportRequest(
            source=params["source"], image_id=image_id, name=name, labels=labels,
            allow_http=params["allow_http"], validate_certs=params["validate_certs"],
            allow_setuid=params["allow_setuid"])
        if module.check_mode:
            image, manifest, new_id = images.plan_import(store, request)
            if image is None:
                changes.record("would import %s (%s) from %s" % (manifest["name"], new_id, params["source"]),
                               exists=True, id=new_id, name=manifest["name"],
                               labels=appc.normalize_labels(manifest.get("labels", [])))
                return None
        else:
            image, imported = images.import_image(store, request)
            if imported:
                changes.record("imported %s (%s) from %s" % (image.name, image.id, params["source"]),
                               **summary(image))
        return image
    found = images.find_images(store, name, labels, image_id)
    if not found:
        raise NotFound("no image matches name=%s labels=%s id=%s in the store; give source to import it"
                       % (name, labels, image_id))
    return found[-1]


def export(module, store, image, changes):
    params = module.params
    if image is None:
        return {"path": params["export_path"], "id": None}
    changed, exported_id = images.export_image(
        store, image, params["export_path"], flat=params["export_flat"],
        compression=params["export_compression"], check_only=module.check_mode)
    if changed:
        changes.record("exported %s to %s" % (image.id, params["export_path"]))
    return {"path": params["export_path"], "id": exported_id}


def ensure_absent(module, store, changes):
    name, labels, image_id = wanted(module)
    targets = images.find_images(store, name, labels, image_id)
    changes.before = {"exists": bool(targets), "ids": [t.id for t in targets]}
    changes.after = {"exists": False, "ids": []}
    if not targets:
        return []
    if module.check_mode:
        images.check_removable(store, targets)
        removed = [t.id for t in targets]
    else:
        removed = images.remove_images(store, targets)
    for image_id in removed:
        changes.actions.append("removed %s" % image_id)
    return removed


def work(module):
    store = open_store(module)
    params = module.params
    if params["state"] == "absent":
        changes = Changes({"exists": False})
        removed = ensure_absent(module, store, changes)
        return changes.result(image=None, removed=removed)
    changes = Changes({"exists": False})
    image = ensure_present(module, store, changes)
    if not changes.changed:
        changes.before = changes.after = summary(image)
    result = {"image": image.info() if image else None}
    if params["export_path"]:
        result["export"] = export(module, store, image, changes)
    return changes.result(**result)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str"),
            labels=dict(type="dict", default={}),
            id=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            source=dict(type="str"),
            allow_http=dict(type="bool", default=False),
            validate_certs=dict(type="bool", default=True),
            allow_setuid=dict(type="bool", default=False),
            export_path=dict(type="path"),
            export_flat=dict(type="bool", default=False),
            export_compression=dict(type="str", default="gzip", choices=["gzip", "bzip2", "xz", "none"]),
        ),
        required_one_of=[("name", "id")],
        supports_check_mode=True,
    )
    run_module(module, work)


if __name__ == "__main__":
    main()
