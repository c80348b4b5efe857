#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_trust_info
short_description: List the keys trusted to sign App Container images
version_added: 0.1.0
description:
  - Returns the keys of the store's trust directory, all of them, those of one prefix, the root keys, or
    every key trusted for an image name (root keys and those of each prefix covering it).
  - Never fails because nothing is trusted, and never creates the store.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.INFO_MODULE
options:
  prefix:
    description:
      - Only the keys trusted for exactly this prefix.
      - At most one of O(prefix), O(root) and O(name) can be given.
    type: str
  root:
    description:
      - Only the root keys.
    type: bool
    default: false
  name:
    description:
      - Only the keys that would verify an image of this name.
    type: str
seealso:
  - module: jetpack.runtime.jetpack_trust
"""

EXAMPLES = r"""
- name: Which keys may sign example.com/app?
  jetpack.runtime.jetpack_trust_info:
    name: example.com/app
  register: signers

- name: Show their fingerprints
  ansible.builtin.debug:
    msg: "{{ signers.trusted_keys | map(attribute='fingerprint') | list }}"
"""

RETURN = r"""
exists:
  description: Whether any key matched.
  returned: always
  type: bool
  sample: true
trusted_keys:
  description:
    - The matching keys, sorted by scope (root keys first) and fingerprint, each as
      M(jetpack.runtime.jetpack_trust) documents its C(key) return value.
  returned: always
  type: list
  elements: dict
  sample:
    - fingerprint: 21AFCDCF57C33FF84BEBC9BF1F2877D49572A028
      prefix: example.com
      root: false
      uids: ["Example Releases <releases@example.com>"]
      path: /var/jetpack/trust/prefix.d/example.com/21AFCDCF57C33FF84BEBC9BF1F2877D49572A028.asc
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import argument_spec, open_store, run_module
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import appc, trust
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput


def selected_keys(trusted, params):
    if sum(bool(params[option]) for option in ("prefix", "root", "name")) > 1:
        raise InvalidInput("give at most one of prefix, root and name", field="prefix")
    if params["name"]:
        return trusted.keys_for(appc.validate_identifier(params["name"], "name"))
    if params["prefix"]:
        return trusted.keys(appc.validate_identifier(params["prefix"], "prefix"))
    return trusted.keys(root=params["root"])


def work(module):
    trusted = trust.trust_store(open_store(module))
    keys = trusted.describe(selected_keys(trusted, module.params))
    return {"changed": False, "exists": bool(keys), "trusted_keys": [k.info() for k in keys]}


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            prefix=dict(type="str"),
            root=dict(type="bool", default=False),
            name=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, work)


if __name__ == "__main__":
    main()
