#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_image_info
short_description: List App Container images in the jetpack store
version_added: 0.1.0
description:
  - Returns the images in the host's jetpack store, all of them or those matching O(name), O(labels) and O(id).
  - Never fails because nothing matches, and never creates the store.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.INFO_MODULE
options:
  name:
    description:
      - Only images of this name.
    type: str
  labels:
    description:
      - Only images that have all these labels (a subset match).
    type: dict
    default: {}
  id:
    description:
      - Only the image with this ID.
    type: str
seealso:
  - module: jetpack.runtime.jetpack_image
"""

EXAMPLES = r"""
- name: List every image
  jetpack.runtime.jetpack_image_info:
  register: all_images

- name: Find the busybox images for linux
  jetpack.runtime.jetpack_image_info:
    name: example.com/busybox
    labels:
      os: linux
  register: busybox

- name: Show their IDs
  ansible.builtin.debug:
    msg: "{{ busybox.images | map(attribute='id') | list }}"
"""

RETURN = r"""
images:
  description:
    - The matching images, oldest import first; empty when none match.
    - Each has the keys that M(jetpack.runtime.jetpack_image) documents in its C(image) return value.
  returned: always
  type: list
  elements: dict
  sample:
    - id: sha512-3f7c2d0e1b9a...
      name: example.com/busybox
      labels: {"version": "1.36", "os": "linux", "arch": "amd64"}
      annotations: {}
      app: {"exec": ["/bin/sh"], "user": "0", "group": "0"}
      dependencies: []
      path_whitelist: []
      dataset: jetpack/jetpack/images/0f8e3c2a9b4d4f0e8a1b2c3d4e5f6a7b
      rootfs: /var/jetpack/images/0f8e3c2a9b4d4f0e8a1b2c3d4e5f6a7b/rootfs
      imported: "2026-11-30T01:17:21+00:00"
      size: 1310720
      source: /srv/images/busybox.aci
      manifest: {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox"}
exists:
  description: Whether any image matched.
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import argument_spec, open_store, run_module
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import appc, images


def work(module):
    params = module.params
    name = appc.validate_identifier(params["name"], "name") if params["name"] else None
    labels = appc.normalize_labels(params["labels"] or {})
    image_id = appc.validate_image_id(params["id"], "id") if params["id"] else None
    found = images.find_images(open_store(module), name, labels, image_id)
    return {"changed": False, "exists": bool(found), "images": [image.info() for image in found]}


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str"),
            labels=dict(type="dict", default={}),
            id=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, work)


if __name__ == "__main__":
    main()
