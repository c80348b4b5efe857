# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: jetpack
short_description: Pods of jetpack hosts as inventory hosts
version_added: 0.1.0
description:
  - Lists the pods of one or more pod hosts (and, when asked, each of their apps) as inventory hosts reached with the
    P(jetpack.runtime.jetpack#connection) connection plugin, from C(jetpack list --json) run on each pod host (on
    the controller for V(localhost), over C(ssh) otherwise).
  - "Groups: C(jetpack_pods) (every pod), C(jetpack_apps) (every app host), C(jetpack_state_<state>),
    C(jetpack_image_<image name>) and C(jetpack_label_<label>_<value>) for the labels of the apps' images, and
    C(jetpack_host_<pod host>)."
  - "Variables: C(jetpack_pod) (the pod as M(jetpack.runtime.jetpack_pod_info) returns it), C(jetpack_state),
    C(jetpack_uuid), C(jetpack_pod_host), C(jetpack_images), C(jetpack_labels), C(jetpack_annotations), and for an
    app host C(jetpack_app). They come from the pod host and are marked unsafe: they are never templated."
  - The configuration file's name must end with C(jetpack.yml) or C(jetpack.yaml).
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description:
      - The name of this plugin; it makes the configuration file one of this plugin's.
    type: str
    required: true
    choices: [jetpack.runtime.jetpack]
  hosts:
    description:
      - The pod hosts to list. V(localhost) is the controller itself; any other name is reached with C(ssh).
      - A pod is named C(<pod>) on V(localhost) and C(<pod>@<pod host>) on other hosts; an app host adds C(.<app>)
        to the pod's name.
    type: list
    elements: str
    default: [localhost]
  include_apps:
    description:
      - Also add one host per app of each pod, which runs tasks in that app.
    type: bool
    default: false
  states:
    description:
      - Only pods in these states.
    type: list
    elements: str
    choices: [running, stopped]
    default: [running, stopped]
  jetpack_command:
    description:
      - The C(jetpack) command on the pod hosts.
    type: str
    default: /var/lib/jetpack/bin/jetpack
  store_root:
    description:
      - The store root dataset on the pod hosts; their host configuration decides when omitted.
    type: str
  store_mountpoint:
    description:
      - The store mountpoint on the pod hosts; their host configuration decides when omitted.
    type: str
  ssh_user:
    description:
      - The SSH user for the pod hosts other than V(localhost).
    type: str
  ssh_port:
    description:
      - The SSH port of the pod hosts other than V(localhost).
    type: int
  ssh_private_key_file:
    description:
      - The SSH private key for the pod hosts other than V(localhost).
    type: path
  ssh_extra_args:
    description:
      - Extra C(ssh) arguments for the pod hosts other than V(localhost), split like a shell would.
    type: str
    default: ''
"""

EXAMPLES = r"""
# pods.jetpack.yml
plugin: jetpack.runtime.jetpack
hosts:
  - localhost
  - host1.example.com
ssh_user: root
include_apps: true
states: [running]
keyed_groups:
  - key: jetpack_annotations.tier | default('none')
    prefix: tier
compose:
  ansible_user: "'root'"
"""

import json
import shlex
import subprocess

from ansible.errors import AnsibleParserError
from ansible.inventory.group import to_safe_group_name
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.utils.unsafe_proxy import wrap_var

LOCAL = "localhost"


class InventoryModule(BaseInventoryPlugin, Constructable):
    """Pods of jetpack pod hosts, from `jetpack list --json`."""

    NAME = "jetpack.runtime.jetpack"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("jetpack.yml", "jetpack.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        for pod_host in self.get_option("hosts"):
            for pod in self._list(pod_host):
                if pod.get("state") in self.get_option("states"):
                    self._add_pod(pod_host, pod)

    # --- reading the pod hosts --------------------------------------------------------------
    def _jetpack_list(self):
        argv = [self.get_option("jetpack_command")]
        for option in ("store_root", "store_mountpoint"):
            if self.get_option(option):
                argv += ["--" + option.replace("_", "-"), self.get_option(option)]
        return argv + ["list", "--json"]

    def _ssh_argv(self, pod_host):
        argv = ["ssh", "-o", "BatchMode=yes"] + shlex.split(self.get_option("ssh_extra_args"))
        if self.get_option("ssh_user"):
            argv += ["-l", self.get_option("ssh_user")]
        if self.get_option("ssh_port"):
            argv += ["-p", str(self.get_option("ssh_port"))]
        if self.get_option("ssh_private_key_file"):
            argv += ["-i", self.get_option("ssh_private_key_file")]
        # ssh hands the command to the remote user's shell: every argument quoted.
        return argv + ["--", pod_host, shlex.join(self._jetpack_list())]

    def _list(self, pod_host):
        argv = self._jetpack_list() if pod_host == LOCAL else self._ssh_argv(pod_host)
        try:
            done = subprocess.run(argv, capture_output=True, check=False, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise AnsibleParserError("cannot list the pods of %s with %s: %s" % (pod_host, argv[0], to_native(error)))
        if done.returncode != 0:
            raise AnsibleParserError("listing the pods of %s failed (rc %d): %s; check that jetpack is installed there "
                                     "(jetpack_command) and reachable"
                                     % (pod_host, done.returncode, to_native(done.stderr).strip()))
        try:
            pods = json.loads(to_text(done.stdout))
        except ValueError as error:
            raise AnsibleParserError("`jetpack list --json` on %s printed no JSON: %s" % (pod_host, to_native(error)))
        if not isinstance(pods, list):
            raise AnsibleParserError("`jetpack list --json` on %s printed no list of pods" % pod_host)
        return pods

    # --- hosts, variables and groups --------------------------------------------------------
    def _add_pod(self, pod_host, pod):
        name = pod["name"] if pod_host == LOCAL else "%s@%s" % (pod["name"], pod_host)
        self._add_host(name, pod_host, pod, None, "jetpack_pods")
        if self.get_option("include_apps"):
            for app in pod.get("apps") or []:
                self._add_host("%s.%s" % (name, app["name"]), pod_host, pod, app, "jetpack_apps")

    def _add_host(self, name, pod_host, pod, app, group):
        self.inventory.add_group(group)
        self.inventory.add_host(name, group=group)
        apps = [app] if app is not None else pod.get("apps") or []
        variables = self._connection_vars(pod_host, pod, app)
        variables.update(wrap_var({
            "jetpack_pod": pod, "jetpack_state": pod.get("state"), "jetpack_uuid": pod.get("uuid"),
            "jetpack_pod_host": pod_host, "jetpack_annotations": pod.get("annotations") or {},
            "jetpack_images": sorted({a.get("image_name") for a in apps}),
            "jetpack_labels": _merged_labels(apps),
        }))
        if app is not None:
            variables["jetpack_app"] = wrap_var(app)
        for key, value in variables.items():
            self.inventory.set_variable(name, key, value)
        for group_name in self._groups(pod_host, variables):
            self.inventory.add_group(group_name)
            self.inventory.add_child(group_name, name)
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict=strict)

    def _connection_vars(self, pod_host, pod, app):
        variables = {"ansible_connection": "jetpack.runtime.jetpack", "ansible_host": wrap_var(pod["name"]),
                     "ansible_jetpack_command": self.get_option("jetpack_command")}
        if app is not None:
            variables["ansible_jetpack_app"] = wrap_var(app["name"])
        for option in ("store_root", "store_mountpoint"):
            if self.get_option(option):
                variables["ansible_jetpack_" + option] = self.get_option(option)
        if pod_host != LOCAL:
            variables["ansible_jetpack_pod_host"] = pod_host
            for option, variable in (("ssh_user", "user"), ("ssh_port", "port"),
                                     ("ssh_private_key_file", "private_key_file"), ("ssh_extra_args", "ssh_extra_args")):
                if self.get_option(option):
                    variables["ansible_jetpack_pod_host_" + variable] = self.get_option(option)
        return variables

    @staticmethod
    def _groups(pod_host, variables):
        names = ["jetpack_state_%s" % variables["jetpack_state"], "jetpack_host_%s" % pod_host]
        names += ["jetpack_image_%s" % image for image in variables["jetpack_images"]]
        for label, values in sorted(variables["jetpack_labels"].items()):
            names += ["jetpack_label_%s_%s" % (label, value) for value in values]
        return [to_safe_group_name(name, force=True, silent=True) for name in names]


def _merged_labels(apps):
    """{label: [values]} over the images of these apps."""
    labels = {}
    for app in apps:
        for label, value in sorted((app.get("image_labels") or {}).items()):
            labels.setdefault(label, [])
            if value not in labels[label]:
                labels[label].append(value)
    return labels
