# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: jetpack
short_description: Run tasks inside an app of a jetpack pod
version_added: 0.1.0
description:
  - Runs commands in an app of a running pod exactly as the app's own processes run (entered into the pod, chrooted
    into the app's rootfs, the user resolved from the image's C(/etc/passwd) and C(/etc/group), the app's
    environment), through the pod host's C(jetpack exec) command.
  - When O(pod_host) is empty, the pod host is the controller and the plugin runs C(jetpack) there as a process (no
    shell). Otherwise it reaches the pod host with the P(ansible.builtin.ssh#connection) connection plugin and runs
    C(jetpack) there, every argument quoted.
  - Files are copied by C(jetpack put) and C(jetpack get), which stream them through a process already inside the app;
    the pod host never opens a path inside a pod, so a symlink planted in a pod cannot redirect a write to the host.
    No program of the image is needed for this.
  - C(HOME) is the user's home directory in the image's C(/etc/passwd) unless the app sets it (Ansible's remote
    temporary directory lives there).
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - connection_pipelining
notes:
  - Tasks need a shell (C(/bin/sh)) and, for modules, a Python interpreter inside the app's rootfs, as any
    managed host does.
  - The V(su) become method works with busybox's C(su); give its path as the C(become_exe) when the image's C(PATH)
    finds another C(su) first.
seealso:
  - plugin: jetpack.runtime.jetpack
    plugin_type: inventory
options:
  remote_addr:
    description:
      - The pod's name.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_jetpack_pod
  app:
    description:
      - The app of the pod to run in; may be omitted for a pod with one app.
    type: str
    default: ''
    vars:
      - name: ansible_jetpack_app
  remote_user:
    description:
      - The user of the image to run as (name or number). Defaults to the app's own user.
    type: str
    vars:
      - name: ansible_user
      - name: ansible_jetpack_user
    keyword:
      - name: remote_user
  jetpack_command:
    description:
      - The C(jetpack) command on the pod host, as the jetpack core installs it.
    type: str
    default: /var/lib/jetpack/bin/jetpack
    vars:
      - name: ansible_jetpack_command
  store_root:
    description:
      - The store root dataset on the pod host; the host configuration decides when omitted.
    type: str
    vars:
      - name: ansible_jetpack_store_root
  store_mountpoint:
    description:
      - The store mountpoint on the pod host; the host configuration decides when omitted.
    type: str
    vars:
      - name: ansible_jetpack_store_mountpoint
  pod_host:
    description:
      - The host the pod runs on, reached over SSH. Empty for the controller itself.
    type: str
    default: ''
    vars:
      - name: ansible_jetpack_pod_host
  pod_host_user:
    description:
      - The SSH user on the pod host (it must be allowed to run C(jetpack)).
    type: str
    vars:
      - name: ansible_jetpack_pod_host_user
  pod_host_port:
    description:
      - The SSH port of the pod host.
    type: int
    vars:
      - name: ansible_jetpack_pod_host_port
  pod_host_private_key_file:
    description:
      - The SSH private key for the pod host.
    type: path
    vars:
      - name: ansible_jetpack_pod_host_private_key_file
  pod_host_ssh_extra_args:
    description:
      - Extra arguments for C(ssh) to the pod host, for example V(-o StrictHostKeyChecking=accept-new).
    type: str
    default: ''
    vars:
      - name: ansible_jetpack_pod_host_ssh_extra_args
  become_timeout:
    description:
      - Seconds to wait for the become method to ask for its password or to report success.
    type: int
    default: 10
    vars:
      - name: ansible_jetpack_become_timeout
"""

EXAMPLES = r"""
# inventory: pods as hosts
# [pods]
# web ansible_connection=jetpack.runtime.jetpack ansible_jetpack_app=httpd
# db  ansible_connection=jetpack.runtime.jetpack ansible_user=root ansible_jetpack_pod_host=host1.example.com

- name: Configure the web app
  hosts: web
  gather_facts: false
  tasks:
    - name: Install the site's configuration
      ansible.builtin.template:
        src: httpd.conf.j2
        dest: /etc/httpd.conf
        mode: "0644"
"""

import os
import selectors
import shlex
import subprocess
import time

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()


class Connection(ConnectionBase):
    """Commands and files in an app of a jetpack pod, on the controller or on a pod host over SSH."""

    transport = "jetpack.runtime.jetpack"
    has_pipelining = True
    has_tty = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ssh = None

    # --- connecting -------------------------------------------------------------------------
    def _connect(self):
        if not self._connected:
            display.vvv("ESTABLISH JETPACK CONNECTION TO %s AS %s" % (self._target(), self._user() or "the app's user"),
                        host=self.get_option("remote_addr"))
            if self.get_option("pod_host"):
                self._ssh = self._ssh_connection()
            self._connected = True
        return self

    def _ssh_connection(self):
        """The ansible.builtin.ssh connection to the pod host, options given here."""
        from ansible.plugins.loader import connection_loader
        ssh = connection_loader.get("ssh", self._play_context, "/dev/null")
        options = {"host": self.get_option("pod_host"), "ssh_extra_args": self.get_option("pod_host_ssh_extra_args")}
        for name, ssh_name in (("pod_host_user", "remote_user"), ("pod_host_port", "port"),
                               ("pod_host_private_key_file", "private_key_file")):
            if self.get_option(name) is not None:
                options[ssh_name] = self.get_option(name)
        ssh.set_options(direct=options)
        if self.become:
            ssh.set_become_plugin(self.become)
        return ssh._connect()

    def close(self):
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None
        self._connected = False

    def reset(self):
        self.close()

    # --- the jetpack command ----------------------------------------------------------------
    def _target(self):
        app = self.get_option("app")
        return "%s:%s" % (self.get_option("remote_addr"), app) if app else self.get_option("remote_addr")

    def _user(self):
        return self.get_option("remote_user") or None

    def _jetpack(self, verb, *arguments):
        """The argv of `jetpack <verb> [-u USER] ... POD[:APP] ...` on the pod host."""
        argv = [self.get_option("jetpack_command")]
        for option in ("store_root", "store_mountpoint"):
            if self.get_option(option):
                argv += ["--" + option.replace("_", "-"), self.get_option(option)]
        argv.append(verb)
        if self._user():
            argv += ["--user", self._user()]
        return argv + list(arguments)

    # --- commands ---------------------------------------------------------------------------
    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        executable = self._play_context.executable or "/bin/sh"
        argv = self._jetpack("exec", self._target(), "--", executable, "-c", to_text(cmd))
        display.vvv("EXEC %s" % to_text(cmd), host=self.get_option("remote_addr"))
        if self._ssh is not None:
            return self._ssh.exec_command(shlex.join(argv), in_data=in_data, sudoable=sudoable)
        process = subprocess.Popen([to_bytes(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        before_out, before_err = self._await_become(process, sudoable)
        stdout, stderr = process.communicate(in_data)
        return process.returncode, before_out + stdout, before_err + stderr

    def _await_become(self, process, sudoable):
        """Read what the become method prints before the command runs, answering its password prompt once.

        The answer goes to the command's stdin, as busybox's su reads it; (stdout, stderr) read so far are returned.
        """
        if not (sudoable and self.become and self.become.expect_prompt()):
            return b"", b""
        output = {process.stdout: b"", process.stderr: b""}
        deadline = time.monotonic() + self.get_option("become_timeout")
        answered = False
        with selectors.DefaultSelector() as selector:
            for stream in output:
                selector.register(stream, selectors.EVENT_READ)
            while selector.get_map() and not self.become.check_success(output[process.stdout]):
                if not answered and any(self.become.check_password_prompt(o) for o in output.values()):
                    process.stdin.write(to_bytes(self.become.get_option("become_pass") or "") + b"\n")
                    process.stdin.flush()
                    answered = True
                events = selector.select(deadline - time.monotonic())
                if not events:
                    process.kill()
                    raise AnsibleConnectionFailure("timed out waiting for become to succeed in %s; output so far: %s"
                                                   % (self._target(), to_native(b"".join(output.values()))))
                for key, _mask in events:
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if chunk:
                        output[key.fileobj] += chunk
                    else:
                        selector.unregister(key.fileobj)
        stdout = output[process.stdout]
        marker = stdout.find(b"BECOME-SUCCESS-")
        return (stdout[marker:] if marker >= 0 else stdout), output[process.stderr]

    # --- files ------------------------------------------------------------------------------
    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self.get_option("remote_addr"))
        if not os.path.isfile(to_bytes(in_path)):
            raise AnsibleFileNotFound("file or module does not exist: %s" % to_native(in_path))
        argv = self._jetpack("put", self._target(), to_text(out_path))
        with open(to_bytes(in_path), "rb") as source:
            if self._ssh is not None:
                rc, _out, err = self._ssh.exec_command(shlex.join(argv), in_data=source.read(), sudoable=False)
            else:
                done = subprocess.run([to_bytes(a) for a in argv], stdin=source, capture_output=True, check=False)
                rc, err = done.returncode, done.stderr
        if rc != 0:
            raise AnsibleError("failed to transfer %s to %s in %s: %s" % (in_path, out_path, self._target(),
                                                                          to_native(err).strip()))

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self.get_option("remote_addr"))
        argv = self._jetpack("get", self._target(), to_text(in_path))
        with open(to_bytes(out_path), "wb") as target:
            if self._ssh is not None:
                rc, out, err = self._ssh.exec_command(shlex.join(argv), sudoable=False)
                target.write(out if rc == 0 else b"")
            else:
                done = subprocess.run([to_bytes(a) for a in argv], stdout=target, stderr=subprocess.PIPE, check=False)
                rc, err = done.returncode, done.stderr
        if rc != 0:
            os.unlink(to_bytes(out_path))
            raise AnsibleError("failed to fetch %s from %s: %s" % (in_path, self._target(), to_native(err).strip()))
