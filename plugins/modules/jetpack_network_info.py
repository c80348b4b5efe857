#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_network_info
short_description: List the networks of jetpack pods
version_added: 0.1.0
description:
  - Returns the networks of the host's jetpack store (V(default) included), all of them or the one named O(name),
    with the addresses their pods hold.
  - Never fails because a network is missing.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.INFO_MODULE
options:
  name:
    description:
      - Only the network of this name.
    type: str
seealso:
  - module: jetpack.runtime.jetpack_network
"""

EXAMPLES = r"""
- name: Which addresses are leased on the default network?
  jetpack.runtime.jetpack_network_info:
    name: default
  register: default_network
"""

RETURN = r"""
exists:
  description: Whether any network matched.
  returned: always
  type: bool
  sample: true
networks:
  description: The matching networks, each as M(jetpack.runtime.jetpack_network) returns it, plus C(leases).
  returned: always
  type: list
  elements: dict
  sample:
    - name: default
      subnet: 172.23.0.0/16
      gateway: 172.23.0.1
      subnet6: null
      nat: true
      bridge: jp-default
      mode: shared
      egress_if: null
      leases: {"172.23.0.2": "3c1f6a528c1e4f539a551d9f7f1c2b11"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import argument_spec, open_store, run_module
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import network


def work(module):
    store = open_store(module)
    found = [dict(net, leases=network.leases(store, net["name"])) for net in network.list_networks(store)
             if module.params["name"] in (None, net["name"])]
    return {"changed": False, "exists": bool(found), "networks": found}


def main():
    module = AnsibleModule(argument_spec=argument_spec(name=dict(type="str")), supports_check_mode=True)
    run_module(module, work)


if __name__ == "__main__":
    main()
