#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_volume_info
short_description: List named jetpack volumes
version_added: 0.1.0
description:
  - Returns the named volumes of the host's jetpack store, all of them or the one named O(name).
  - Never fails because a volume is missing, and never creates the store.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.INFO_MODULE
options:
  name:
    description:
      - Only the volume of this name.
    type: str
seealso:
  - module: jetpack.runtime.jetpack_volume
"""

EXAMPLES = r"""
- name: Does the database volume exist, and who uses it?
  jetpack.runtime.jetpack_volume_info:
    name: pgdata
  register: pgdata

- name: Show its users
  ansible.builtin.debug:
    msg: "{{ pgdata.volumes[0].users if pgdata.exists else 'no such volume' }}"
"""

RETURN = r"""
exists:
  description: Whether any volume matched.
  returned: always
  type: bool
  sample: true
volumes:
  description:
    - The matching volumes, each as M(jetpack.runtime.jetpack_volume) documents its C(volume) return value.
  returned: always
  type: list
  elements: dict
  sample:
    - name: pgdata
      dataset: zroot/jetpack/volumes/pgdata
      path: /var/jetpack/volumes/pgdata/data
      owner: 70
      group: 70
      mode: "0700"
      used: 98304
      users: [db]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import argument_spec, open_store, run_module
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import volumes


def work(module):
    store = open_store(module)
    found = [v for v in volumes.list_volumes(store) if module.params["name"] in (None, v.name)]
    return {"changed": False, "exists": bool(found),
            "volumes": [v.info(volumes.volume_users(store, v.name)) for v in found]}


def main():
    module = AnsibleModule(argument_spec=argument_spec(name=dict(type="str")), supports_check_mode=True)
    run_module(module, work)


if __name__ == "__main__":
    main()
