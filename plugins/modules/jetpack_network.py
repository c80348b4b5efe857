#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_network
short_description: Declare the networks jetpack pods join
version_added: 0.1.0
description:
  - Declares a network of the host's jetpack store, an IPv4 subnet with an optional IPv6 prefix, with or without
    NAT to the outside. Pods join networks with the C(networks) option of M(jetpack.runtime.jetpack_pod).
  - The network V(default) (V(172.23.0.0/16) with NAT) exists without being declared; declaring it changes it.
  - The host side (a bridge on Linux, a cloned loopback or a bridge on FreeBSD, and the NAT rules) is made when
    the first pod joins and removed when the last one leaves.
  - A network is changed or removed only while no pod has an address on it.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.ATTRIBUTES
options:
  name:
    description:
      - The network name, an AC name of at most 12 characters (the bridge is C(jp-) followed by it).
    type: str
    required: true
  state:
    description:
      - V(present) declares the network or changes it; V(absent) removes its declaration.
    type: str
    choices: [present, absent]
    default: present
  subnet:
    description:
      - The IPv4 subnet, such as V(10.88.0.0/16). Its first address is the host's (the gateway). Required to
        declare a network other than V(default).
    type: str
  subnet6:
    description:
      - An IPv6 prefix, such as V(fd00:88::/64).
    type: str
  nat:
    description:
      - Masquerade traffic from the network to the outside.
    type: bool
    default: true
  mode:
    description:
      - FreeBSD only. V(shared) gives each pod an address on the host's own stack (an alias on the network's
        cloned loopback, jail C(ip4.addr)); V(vnet) gives each pod a network stack of its own (C(vnet) jail,
        an C(epair) per pod on the network's C(if_bridge)). A pod's networks must all have the same mode.
      - The Linux engine always gives pods their own stack on a bridge and ignores this.
    type: str
    choices: [shared, vnet]
    default: shared
  egress_if:
    description:
      - FreeBSD only. The host interface (such as V(em0)) that pf translates the network's outgoing traffic on
        (O(nat)) and receives its published ports on. Required on FreeBSD for a network with O(nat) or published
        ports; pf's rules go in the C(jetpack/*) anchors, so C(/etc/pf.conf) needs the anchor hooks the
        C(host) role adds.
    type: str
seealso:
  - module: jetpack.runtime.jetpack_network_info
  - module: jetpack.runtime.jetpack_pod
"""

EXAMPLES = r"""
- name: A private back-end network without NAT
  jetpack.runtime.jetpack_network:
    name: backend
    subnet: 10.88.0.0/24
    subnet6: fd00:88::/64
    nat: false

- name: On FreeBSD, NAT the default network out through em0
  jetpack.runtime.jetpack_network:
    name: default
    subnet: 172.23.0.0/16
    egress_if: em0

- name: On FreeBSD, a network whose pods get their own network stack
  jetpack.runtime.jetpack_network:
    name: isolated
    subnet: 10.89.0.0/24
    mode: vnet
    egress_if: em0
"""

RETURN = r"""
network:
  description: The network; V(null) when absent.
  returned: always
  type: dict
  contains:
    name:
      description: The network name.
      type: str
      sample: backend
    subnet:
      description: The IPv4 subnet.
      type: str
      sample: 10.88.0.0/24
    gateway:
      description: The host's address on the network.
      type: str
      sample: 10.88.0.1
    subnet6:
      description: The IPv6 prefix, or V(null).
      type: str
      sample: fd00:88::/64
    nat:
      description: Whether traffic to the outside is masqueraded.
      type: bool
      sample: false
    bridge:
      description: The host interface of the network.
      type: str
      sample: jp-backend
    mode:
      description: V(shared) or V(vnet) (FreeBSD).
      type: str
      sample: shared
    egress_if:
      description: The host interface NAT and published ports use on FreeBSD, or V(null).
      type: str
      sample: em0
actions:
  description: What was done, or would be done in check mode, in words.
  returned: always
  type: list
  elements: str
  sample: ["declared network backend"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import (
    Changes, argument_spec, open_store, run_module)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import network
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InUse, InvalidInput, NotFound


def current(store, name):
    try:
        return network.get_network(store, name)
    except NotFound:
        return None


def work(module):
    params = module.params
    store = open_store(module)
    have = current(store, params["name"])
    changes = Changes(dict(have, exists=True) if have else {"exists": False})
    if params["state"] == "absent":
        if have is not None and params["name"] != "default":
            changes.record("removed network %s" % params["name"], exists=False)
            changes.after = {"exists": False}
            if not module.check_mode:
                with store.lock():
                    network.remove(store, params["name"])
        return changes.result(network=None)
    subnet = params["subnet"] or (have or {}).get("subnet")
    if not subnet:
        raise InvalidInput("give subnet to declare network %s" % params["name"], field="subnet")
    want = network.normalize(params["name"], subnet, params["subnet6"], params["nat"], params["mode"],
                             params["egress_if"])
    if have != want:
        if have is not None and network.leases(store, params["name"]):
            raise InUse("network %s has pods; remove them before changing it" % params["name"])
        changes.record("%s network %s" % ("changed" if have else "declared", params["name"]), exists=True, **want)
        if not module.check_mode:
            with store.lock():
                store.ensure()
                network.declare(store, want)
    return changes.result(network=want)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            subnet=dict(type="str"),
            subnet6=dict(type="str"),
            nat=dict(type="bool", default=True),
            mode=dict(type="str", default="shared", choices=["shared", "vnet"]),
            egress_if=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    run_module(module, work)


if __name__ == "__main__":
    main()
