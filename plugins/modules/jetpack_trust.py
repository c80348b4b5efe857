#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_trust
short_description: Trust or distrust the OpenPGP keys that sign App Container images
version_added: 0.1.0
description:
  - Images fetched by name (appc discovery) must carry a detached signature made by a key trusted for their
    name. This module manages those keys in the store's trust directory (C(<store mountpoint>/trust)).
  - A key is trusted for an image name prefix, such as V(example.com) or V(example.com/app), which covers the
    prefix itself and the names below it (V(example.com) covers V(example.com/app), not V(example.com.evil.net)).
    A root key (O(root=true)) is trusted for every name.
  - The key comes from O(key), a file or URL, or from the publisher's C(ac-discovery-pubkeys) page for
    O(prefix). A key found by discovery is trusted only when its fingerprint is the pinned O(fingerprint).
  - Signatures are checked with gpg, which must be installed on the host.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.ATTRIBUTES
options:
  prefix:
    description:
      - The image name prefix the key is trusted for, an AC identifier such as V(example.com/app).
      - Exactly one of O(prefix) and O(root) is needed.
    type: str
  root:
    description:
      - Trust the key for every image name.
    type: bool
    default: false
  key:
    description:
      - The public key, an absolute path or an C(https://) URL (C(http://) only with O(allow_http)).
        ASCII-armoured or binary, as C(gpg --export) writes it.
      - When the data holds several keys, O(fingerprint) chooses one.
      - Without O(key), O(state=present) discovers the key from the C(ac-discovery-pubkeys) of O(prefix), and
        then O(fingerprint) is required.
    type: str
  fingerprint:
    description:
      - The full fingerprint of the key (40 hex digits; spaces allowed), a pin. A key whose fingerprint differs
        is refused.
      - With O(state=absent), the key to stop trusting; without it and without O(key), every key of the prefix.
    type: str
  state:
    description:
      - V(present) trusts the key; a key trusted already is replaced only when the given copy differs.
      - V(absent) stops trusting it.
    type: str
    choices: [present, absent]
    default: present
  allow_http:
    description:
      - Allow C(http://) for O(key) and discovery. Anyone on the network path could replace the key, so only
        use it on networks you trust.
    type: bool
    default: false
  validate_certs:
    description:
      - Verify server certificates when fetching the key over https.
    type: bool
    default: true
seealso:
  - module: jetpack.runtime.jetpack_trust_info
  - module: jetpack.runtime.jetpack_image
"""

EXAMPLES = r"""
- name: Trust a publisher's key from a file for its images
  jetpack.runtime.jetpack_trust:
    prefix: example.com
    key: /srv/keys/example.com.asc

- name: Trust the key the publisher lists for its images, pinned by fingerprint
  jetpack.runtime.jetpack_trust:
    prefix: example.com/app
    fingerprint: 21AF CDCF 57C3 3FF8 4BEB  C9BF 1F28 77D4 9572 A028

- name: Trust a key for every image name
  jetpack.runtime.jetpack_trust:
    root: true
    key: https://keys.example.org/release.asc
    fingerprint: 21AFCDCF57C33FF84BEBC9BF1F2877D49572A028

- name: Stop trusting every key of a prefix
  jetpack.runtime.jetpack_trust:
    prefix: example.com
    state: absent
"""

RETURN = r"""
key:
  description: The key trusted, as M(jetpack.runtime.jetpack_trust_info) returns it; V(null) with O(state=absent).
  returned: always
  type: dict
  contains:
    fingerprint:
      description: The key's fingerprint.
      type: str
      sample: 21AFCDCF57C33FF84BEBC9BF1F2877D49572A028
    prefix:
      description: The image name prefix the key is trusted for; V(null) for a root key.
      type: str
      sample: example.com
    root:
      description: Whether the key is trusted for every name.
      type: bool
      sample: false
    uids:
      description: The key's user IDs.
      type: list
      elements: str
      sample: ["Example Releases <releases@example.com>"]
    path:
      description: The key's file in the trust directory.
      type: str
      sample: /var/jetpack/trust/prefix.d/example.com/21AFCDCF57C33FF84BEBC9BF1F2877D49572A028.asc
removed:
  description: Fingerprints of the keys no longer trusted (or that check mode would remove).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["21AFCDCF57C33FF84BEBC9BF1F2877D49572A028"]
actions:
  description: What was done, or would be done in check mode, in words.
  returned: always
  type: list
  elements: str
  sample: ["trusted key 21AFCDCF57C33FF84BEBC9BF1F2877D49572A028 for example.com"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import (
    Changes, argument_spec, open_store, run_module)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import discovery, fetch, trust
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput


def scope_summary(trusted, scope):
    fingerprints = [k.fingerprint for k in trusted.keys(scope, root=scope is None)]
    return {"exists": bool(fingerprints), "fingerprints": fingerprints}


def scope_name(scope):
    return "every image name" if scope is None else scope


def key_data(module, trusted, scope, fingerprint):
    params = module.params
    client = fetch.Client(allow_http=params["allow_http"], validate_certs=params["validate_certs"])
    if params["key"]:
        return trust.load_key(params["key"], client)
    if scope is None or not fingerprint:
        raise InvalidInput("give key (a file or URL), or prefix and fingerprint to discover the publisher's key",
                           field="key")
    return discovery.discover_key(trusted, scope, fingerprint, client)


def ensure_present(module, trusted, scope, fingerprint, changes):
    pinned = trusted.find(fingerprint, scope) if fingerprint else None
    if pinned is not None and not module.params["key"]:
        return pinned  # the pin names a key trusted already: nothing to fetch
    data = key_data(module, trusted, scope, fingerprint)
    key, action = trusted.add(data, scope, scope is None, fingerprint, check_only=module.check_mode)
    if action:
        fingerprints = sorted(set(changes.before["fingerprints"]) | {key.fingerprint})
        changes.record("%s key %s for %s" % ("trusted" if action == "added" else "updated", key.fingerprint,
                                             scope_name(scope)), exists=True, fingerprints=fingerprints)
    return key


def ensure_absent(module, trusted, scope, fingerprint, changes):
    if module.params["key"]:
        client = fetch.Client(allow_http=module.params["allow_http"], validate_certs=module.params["validate_certs"])
        fingerprint = trusted.read_key(trust.load_key(module.params["key"], client), fingerprint)[0]
    removed = trusted.remove(scope, scope is None, fingerprint, check_only=module.check_mode)
    for key in removed:
        changes.actions.append("stopped trusting key %s for %s" % (key.fingerprint, scope_name(scope)))
    fingerprints = [f for f in changes.before["fingerprints"] if f not in {k.fingerprint for k in removed}]
    changes.after = {"exists": bool(fingerprints), "fingerprints": fingerprints}
    return [key.fingerprint for key in removed]


def work(module):
    params = module.params
    scope = trust.check_scope(params["prefix"], params["root"])
    fingerprint = trust.normalize_fingerprint(params["fingerprint"]) if params["fingerprint"] else None
    trusted = trust.trust_store(open_store(module))
    changes = Changes(scope_summary(trusted, scope))
    if params["state"] == "absent":
        removed = ensure_absent(module, trusted, scope, fingerprint, changes)
        return changes.result(key=None, removed=removed)
    key = ensure_present(module, trusted, scope, fingerprint, changes)
    return changes.result(key=trusted.describe([key])[0].info() if key.uids is None else key.info())


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            prefix=dict(type="str"),
            root=dict(type="bool", default=False),
            key=dict(type="str", no_log=False),
            fingerprint=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            allow_http=dict(type="bool", default=False),
            validate_certs=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    run_module(module, work)


if __name__ == "__main__":
    main()
