#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_pod_info
short_description: Show jetpack pods and the state of their apps
version_added: 0.1.0
description:
  - Returns the pods of the host's jetpack store, all of them or the one named O(name), with each app's state,
    process ID, exit code and restart count as the pod's supervisor recorded them.
  - Never fails because a pod is missing, and never creates the store.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.INFO_MODULE
options:
  name:
    description:
      - Only the pod of this name.
    type: str
seealso:
  - module: jetpack.runtime.jetpack_pod
"""

EXAMPLES = r"""
- name: Is the web pod running?
  jetpack.runtime.jetpack_pod_info:
    name: web
  register: web

- name: Show the exit code of each app
  ansible.builtin.debug:
    msg: "{{ web.pods[0].apps | items2dict(key_name='name', value_name='exit_code') }}"
  when: web.exists
"""

RETURN = r"""
exists:
  description: Whether any pod matched.
  returned: always
  type: bool
  sample: true
pods:
  description:
    - The matching pods, each as M(jetpack.runtime.jetpack_pod) documents its C(pod) return value.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web
      uuid: 3c1f6a52-8c1e-4f53-9a55-1d9f7f1c2b11
      state: running
      hostname: web
      engine: linux
      dataset: jetpack/jetpack/pods/3c1f6a528c1e4f539a551d9f7f1c2b11
      root: /var/jetpack/pods/3c1f6a528c1e4f539a551d9f7f1c2b11/rootfs
      apps: [{name: httpd, image_id: "sha512-...", state: running, pid: 4242, exit_code: null, restarts: 0}]
      volumes: []
      annotations: {}
      restart: {policy: "no", max_retries: 3}
      stop_timeout: 10
      logs: /var/jetpack/pods/3c1f6a528c1e4f539a551d9f7f1c2b11/logs
      networks: [{name: default, address: 172.23.0.2, address6: null}]
      ports: [{host_port: 8080, pod_port: 80, protocol: tcp, host_ip: null}]
      isolators: {pod: {enforced: [resource/memory], unenforceable: []}, apps: {httpd: {enforced: [], unenforceable: []}}}
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import argument_spec, open_store, run_module
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import pods


def work(module):
    found = [pod for pod in pods.list_pods(open_store(module)) if module.params["name"] in (None, pod.name)]
    return {"changed": False, "exists": bool(found), "pods": [pod.info() for pod in found]}


def main():
    module = AnsibleModule(argument_spec=argument_spec(name=dict(type="str")), supports_check_mode=True)
    run_module(module, work)


if __name__ == "__main__":
    main()
