#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_pod
short_description: Run App Container pods, as FreeBSD jails or Linux namespace sets over ZFS clones
version_added: 0.1.0
description:
  - Declares a pod, one or more apps from images in the store with the volumes they mount, and makes the host
    run it. On FreeBSD a pod is a jail; on Linux a set of namespaces whose PID 1 is a small holder process.
    Each app runs chrooted in its own root filesystem, a ZFS clone of its image.
  - The pod's manifest is reified first, every app pinned to an image ID and every mount point of the images
    satisfied by a volume, app settings defaulting to the image manifest's C(app) section.
  - Pods are immutable. When the reified pod differs from the running one (an option, or a newer image matching
    the same name and labels), the pod is replaced. Data in named and host volumes survives; C(empty) volumes
    live and die with the pod.
  - A supervisor on the host, outside the pod, starts the apps, logs their output, records exit codes and applies
    the restart policy. Pod processes outlive the Ansible run.
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.ATTRIBUTES
options:
  name:
    description:
      - The pod name, unique on the host; an AC name such as V(web).
    type: str
    required: true
  state:
    description:
      - V(present) creates the pod without starting it, or leaves an existing one as it is running or not.
      - V(started) makes sure it runs; V(stopped) that it does not; V(restarted) stops and starts it.
      - V(absent) stops and removes it. Named volumes and host paths are never touched.
    type: str
    choices: [present, started, stopped, restarted, absent]
    default: started
  apps:
    description:
      - The apps of the pod. Required to create a pod.
    type: list
    elements: dict
    suboptions:
      name:
        description: The app name, an AC name. Defaults to the last part of the image name.
        type: str
      image:
        description: The image, by name (with O(apps[].labels)) or by ID (V(sha512-...)).
        type: str
        required: true
      labels:
        description: Labels the image must have (a subset match); the newest matching import is used.
        type: dict
        default: {}
      exec:
        description: The command and its arguments. Defaults to the image's.
        type: list
        elements: str
      user:
        description: User to run as, a name or number from the image's own C(/etc/passwd), or a path whose owner to use.
        type: str
      group:
        description: Group to run as, like O(apps[].user) but from C(/etc/group).
        type: str
      supplementary_gids:
        description: Supplementary group IDs.
        type: list
        elements: int
      environment:
        description: Environment variables, added to the image's.
        type: dict
        default: {}
      working_directory:
        description: Working directory inside the app; it must exist.
        type: str
      read_only_rootfs:
        description: Mount the app's root filesystem read-only.
        type: bool
        default: false
      mounts:
        description: Volumes to mount into the app.
        type: list
        elements: dict
        suboptions:
          volume:
            description: A name from O(volumes).
            type: str
            required: true
          path:
            description: Absolute path inside the app.
            type: str
            required: true
          read_only:
            description: Mount read-only (enforced by the kernel).
            type: bool
            default: false
      pre_start:
        description: A command run as root in the app before it starts; the app starts only when it succeeds.
        type: list
        elements: str
      post_stop:
        description: A command run as root in the app after it stops.
        type: list
        elements: str
      annotations:
        description: Annotations of the app.
        type: dict
        default: {}
      isolators:
        description:
          - The app's appc isolators, each a dict with C(name) and C(value), as in the image manifest's C(app.isolators),
            which they replace.
          - V(resource/memory) and V(resource/cpu) give the app its own, lower limits within the pod's
            (on Linux, a cgroup of its own); a limit is required, a request defaults to it.
          - V(os/linux/capabilities-retain-set) or V(os/linux/capabilities-remove-set) narrow appc's default set of
            14 capabilities, which every process of the app gets (C(jetpack exec) included). An app running as
            another user than root keeps only a retain set, as ambient capabilities.
          - V(os/linux/no-new-privileges) with V(true) stops setuid programs and file capabilities from raising
            privileges.
          - Defaults to the isolators of the image's app.
        type: list
        elements: dict
  volumes:
    description:
      - The volumes the apps mount.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The volume name within the pod, an AC name.
        type: str
        required: true
      kind:
        description:
          - V(host) mounts an existing host directory (O(volumes[].source)); symlinks in the path are refused.
          - V(empty) is a new dataset that lives and dies with the pod.
          - V(jetpack) mounts a named volume managed by M(jetpack.runtime.jetpack_volume).
          - Defaults to V(host) when O(volumes[].source) is set, else V(empty).
        type: str
        choices: [host, empty, jetpack]
      source:
        description: The host directory of a V(host) volume.
        type: path
      volume:
        description: The named volume of a V(jetpack) volume; defaults to O(volumes[].name).
        type: str
      read_only:
        description: Mount read-only in every app.
        type: bool
        default: false
      mode:
        description: Mode of an V(empty) volume.
        type: str
        default: "0755"
      uid:
        description: Owner of an V(empty) volume.
        type: int
        default: 0
      gid:
        description: Group of an V(empty) volume.
        type: int
        default: 0
  networks:
    description:
      - The networks the pod joins, by name (see M(jetpack.runtime.jetpack_network)), each a name or a dict with
        C(name) and a fixed C(address); the network V(default) (172.23.0.0/16, NAT) exists without being declared.
        The pod gets an address on each (its first network routes), leased until the pod is removed; a fixed
        C(address) that is taken is refused and nothing is made.
      - Every pod on a network resolves every other pod on it, and itself, by its pod name (C(/etc/hosts)).
      - V(none) alone, the default when O(networks) is omitted, gives the pod its own loopback only. It is the
        default because a pod then gets no network access it was not given, and creating it changes nothing on
        the host's network (no bridge, rule or forwarding). Give V(default) to join the default network.
      - V(host) alone shares the host's network stack (Linux only, without O(ports)). The pod's apps listen on the
        host's addresses and ports and reach everything the host reaches, abstract unix sockets included, and as
        root in the pod they can change the host's network settings. Its C(/etc/hosts) names only the pod itself
        (127.0.1.1). Use it for trusted pods only.
      - FreeBSD pods refuse O(networks) other than V(none) in this release.
    type: list
    elements: raw
  ports:
    description:
      - Ports published on the host, forwarded to the pod's address on its first network; refused for a pod on
        V(none) or V(host).
      - On Linux they answer from other hosts and from the host itself (its addresses and 127.0.0.1, not
        C([::1])).
    type: list
    elements: dict
    default: []
    suboptions:
      host_port:
        description: The port on the host; refused when already published or in use.
        type: int
        required: true
      name:
        description:
          - The name of a port an app's image declares (its manifest's C(app.ports)), as appc pod manifests name
            them; O(ports[].pod_port) and O(ports[].protocol) then come from the image.
        type: str
      pod_port:
        description: The port in the pod. Defaults to the named image port, else to O(ports[].host_port).
        type: int
      protocol:
        description: The protocol. Defaults to the named image port's, else to V(tcp).
        type: str
        choices: [tcp, udp]
      host_ip:
        description: Only this host address; all of them when omitted.
        type: str
  dns:
    description:
      - The apps' C(/etc/resolv.conf) for a pod on networks or on V(host); the host's when omitted. A pod on
        V(none) keeps its images' own.
    type: dict
    suboptions:
      nameservers:
        description: Name server addresses.
        type: list
        elements: str
      search:
        description: Search domains.
        type: list
        elements: str
  annotations:
    description: Annotations of the pod.
    type: dict
    default: {}
  hostname:
    description: The pod's hostname. Defaults to O(name).
    type: str
  restart:
    description:
      - When the supervisor restarts an app that exited. V(on-failure) restarts after a non-zero exit or a signal,
        up to O(restart_retries) times; back-off doubles from 1 to 30 seconds.
    type: str
    choices: ["no", on-failure, always]
    default: "no"
  restart_retries:
    description: How often V(on-failure) restarts an app.
    type: int
    default: 3
  stop_timeout:
    description: Seconds between SIGTERM and SIGKILL when the pod stops.
    type: int
    default: 10
  jail:
    description:
      - FreeBSD only. jail(8) parameters overriding the secure defaults, for example C(securelevel) or
        C(allow.raw_sockets). Ignored on Linux.
    type: dict
    default: {}
  limits:
    description:
      - Resource limits of the whole pod, the friendly form of the appc isolators V(resource/memory) and
        V(resource/cpu). They bound every app's own limits.
      - On Linux they are one cgroup per pod (v1 or v2); going past O(limits.memory) gets a process killed (swap is
        capped too). On FreeBSD they are rctl(8) rules on the jail, which need C(kern.racct.enable=1) in
        C(/boot/loader.conf); a pod with limits on a host without it is refused at start, saying so.
    type: dict
    suboptions:
      memory:
        description: Memory, in bytes or with a suffix, V(512M) (10^6) or V(512Mi) (2^20).
        type: str
      cpu:
        description: CPU, in cores, V(500m) being half a core and V(2) two cores.
        type: str
      processes:
        description: The most processes (and threads) the pod may have at once.
        type: int
      open_files:
        description: The most open files of each process (RLIMIT_NOFILE on Linux, the jail's total on FreeBSD).
        type: int
  isolators:
    description:
      - appc isolators of the whole pod, each a dict with C(name) and C(value), such as V(resource/memory)
        (not also in O(limits)) or V(os/unix/sysctl). They bound the apps' (O(apps[].isolators)).
      - An isolator this host cannot enforce is reported in the C(isolators) result and as a warning, as appc
        requires; O(strict) refuses the pod instead.
    type: list
    elements: dict
  strict:
    description:
      - Refuse the pod, creating nothing, when this host cannot enforce one of its isolators or limits (for
        example V(os/unix/sysctl), or memory limits without the cgroup memory controller).
      - Only checked when the pod is made; changing it alone does not replace a pod.
    type: bool
    default: false
  recreate:
    description: Replace the pod even when nothing differs.
    type: bool
    default: false
  comparisons:
    description:
      - Per option, how a difference is judged. V(strict) replaces the pod on a difference, V(ignore) never does.
        Keys are V(apps), V(volumes), V(annotations), V(hostname), V(restart), V(stop_timeout), V(jail),
        V(networks), V(ports), V(dns), V(isolators) (O(limits) and O(isolators)) or V(*).
      - Needing V(ignore) to avoid unwanted replacements is a bug; please report it.
    type: dict
    default: {}
notes:
  - The store must hold every image the apps name; import them first with M(jetpack.runtime.jetpack_image).
seealso:
  - module: jetpack.runtime.jetpack_pod_info
  - module: jetpack.runtime.jetpack_image
  - module: jetpack.runtime.jetpack_volume
"""

EXAMPLES = r"""
- name: A web server whose content lives in a named volume
  jetpack.runtime.jetpack_pod:
    name: web
    apps:
      - name: httpd
        image: example.com/busybox
        labels: {version: "1.36"}
        exec: [/bin/httpd, -f, -p, "8080", -h, /var/www]
        user: www
        group: www
        mounts:
          - {volume: content, path: /var/www, read_only: true}
    volumes:
      - {name: content, kind: jetpack, volume: web-content}
    restart: on-failure

- name: Two apps sharing scratch space
  jetpack.runtime.jetpack_pod:
    name: worker
    apps:
      - {name: producer, image: example.com/busybox, exec: [/bin/sh, -c, "while :; do date >> /work/log; sleep 1; done"],
         mounts: [{volume: work, path: /work}]}
      - {name: consumer, image: example.com/busybox, exec: [/bin/sh, -c, "tail -f /work/log"],
         mounts: [{volume: work, path: /work}]}
    volumes:
      - {name: work, kind: empty, mode: "1777"}

- name: A pod held to half a core and 256 MiB, whose app drops raw sockets and cannot gain privileges
  jetpack.runtime.jetpack_pod:
    name: limited
    limits: {memory: 256Mi, cpu: 500m, processes: 200, open_files: 4096}
    strict: true    # refuse the pod on a host that cannot enforce all of it
    apps:
      - name: httpd
        image: example.com/busybox
        exec: [/bin/httpd, -f, -p, "8080"]
        isolators:
          - {name: os/linux/capabilities-remove-set, value: {set: [CAP_NET_RAW]}}
          - {name: os/linux/no-new-privileges, value: true}
    networks: [default]
    ports:
      - {name: http, host_port: 8080}    # a port the image's manifest names; its number and protocol come from it

- name: Stop a pod, keeping it
  jetpack.runtime.jetpack_pod:
    name: worker
    state: stopped

- name: Remove it
  jetpack.runtime.jetpack_pod:
    name: worker
    state: absent
"""

RETURN = r"""
pod:
  description: The pod as M(jetpack.runtime.jetpack_pod_info) returns it; V(null) when absent or only planned in check mode.
  returned: always
  type: dict
  contains:
    name:
      description: The pod name.
      type: str
      sample: web
    uuid:
      description: The pod UUID.
      type: str
      sample: 3c1f6a52-8c1e-4f53-9a55-1d9f7f1c2b11
    state:
      description: V(running) or V(stopped).
      type: str
      sample: running
    hostname:
      description: The pod's hostname.
      type: str
      sample: web
    engine:
      description: V(linux) or V(freebsd).
      type: str
      sample: linux
    dataset:
      description: The pod's ZFS dataset.
      type: str
      sample: zroot/jetpack/pods/3c1f6a528c1e4f539a551d9f7f1c2b11
    root:
      description: The pod root on the host.
      type: str
      sample: /var/jetpack/pods/3c1f6a528c1e4f539a551d9f7f1c2b11/rootfs
    apps:
      description: The apps with their status.
      type: list
      elements: dict
      sample:
        - {name: httpd, image_id: "sha512-...", image_name: example.com/busybox, exec: [/bin/httpd, -f],
           user: www, group: www, state: running, pid: 4242, exit_code: null, signal: null, restarts: 0,
           started: "2026-11-30T02:00:00+00:00", finished: null}
    volumes:
      description: The pod's volumes, reified.
      type: list
      elements: dict
      sample: [{name: content, kind: jetpack, volume: web-content, read_only: false}]
    annotations:
      description: The pod annotations.
      type: dict
      sample: {}
    restart:
      description: The restart policy.
      type: dict
      sample: {policy: on-failure, max_retries: 3}
    stop_timeout:
      description: Seconds between SIGTERM and SIGKILL.
      type: int
      sample: 10
    logs:
      description: The directory holding each app's log file.
      type: str
      sample: /var/jetpack/pods/3c1f6a528c1e4f539a551d9f7f1c2b11/logs
    networks:
      description: The networks the pod joined, with its addresses there (V([]) for V(none); V(host) has none).
      type: list
      elements: dict
      sample: [{name: default, address: 172.23.0.2, address6: null}]
    ports:
      description: The ports the host publishes for the pod.
      type: list
      elements: dict
      sample: [{host_port: 8080, pod_port: 80, protocol: tcp, host_ip: null}]
    isolators:
      description: What the host enforces of the pod's isolators and limits, as the C(isolators) result says.
      type: dict
      sample: {pod: {enforced: [resource/memory], unenforceable: []}, apps: {}}

isolators:
  description:
    - What the host enforces of the pod's limits and isolators and of each app's own, by appc name (V(limits.processes)
      and V(limits.open_files) for the limits appc has no isolator for). Anything unenforceable is also a warning.
  returned: always
  type: dict
  sample:
    pod: {enforced: [resource/memory], unenforceable: [os/unix/sysctl]}
    apps: {httpd: {enforced: [os/linux/capabilities-remove-set], unenforceable: []}}
differences:
  description: The options that differed and made the pod be replaced.

  returned: always
  type: list
  elements: str
  sample: [apps]
actions:
  description: What was done, or would be done in check mode, in words.
  returned: always
  type: list
  elements: str
  sample: ["created pod web", "started pod web"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import (
    Changes, argument_spec, open_store, run_module)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import appc, engines, isolators, pods

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput, NotFound

COMPARED = ("apps", "volumes", "annotations", "hostname", "restart", "stop_timeout", "jail", "networks", "ports",
            "dns", "isolators")
SPEC_OPTIONS = ("name", "apps", "volumes", "annotations", "hostname", "restart", "restart_retries",
                "stop_timeout", "jail", "networks", "ports", "dns", "limits", "isolators", "strict")
NO_ISOLATORS = {"pod": {"enforced": [], "unenforceable": []}, "apps": {}}


def summary(pod):
    if pod is None:
        return {"exists": False}
    return {"exists": True, "state": "running" if pod.running() else "stopped",
            "apps": [{"name": a["name"], "image_id": a["image_id"]} for a in pod.record["apps"]]}


def ignored_options(comparisons):
    """The compared options whose rule (their own, else the one for *) is ignore."""
    for key, rule in comparisons.items():
        if key != "*" and key not in COMPARED:
            raise InvalidInput("comparisons: unknown option %s; use one of %s or *" % (key, ", ".join(COMPARED)),
                               field="comparisons")
        if rule not in ("strict", "ignore"):
            raise InvalidInput("comparisons.%s must be strict or ignore" % key, field="comparisons")
    return {key for key in COMPARED if comparisons.get(key, comparisons.get("*", "strict")) == "ignore"}


def isolators_result(module, record):
    """The `isolators` result of a pod's record; a warning names what the host does not enforce."""
    report = (record or {}).get("isolators_report") or NO_ISOLATORS
    missing = isolators.unenforced_names(report)
    if missing:
        module.warn("this host does not enforce %s; the pod runs without them (set strict to refuse it)"
                    % "; ".join(missing))
    return report


def work(module):
    params = module.params
    store = open_store(module)
    engine = engines.for_host()
    name = appc.validate_acname(params["name"], "name")
    pod = pods.find_pod(store, name)
    changes = Changes(summary(pod))
    differences = []
    if params["state"] == "absent":
        if pod is not None:
            changes.record("removed pod %s" % name, exists=False)
            changes.after = {"exists": False}
            if not module.check_mode:
                pods.destroy(pod, engine)
        return changes.result(pod=None, differences=[], isolators=NO_ISOLATORS)

    wanted = None
    if params["apps"]:
        wanted = pods.reify(store, {k: params[k] for k in SPEC_OPTIONS}, engine.name)
    elif pod is None:
        raise NotFound("pod %s does not exist; give apps to create it" % name)
    report = isolators_result(module, wanted if wanted is not None else pod.record)
    if pod is not None and wanted is not None:
        differences = pods.spec_differences(pod.record, wanted, ignored_options(params["comparisons"]))
        if differences or params["recreate"]:
            changes.record("replaced pod %s (%s)" % (name, ", ".join(differences) or "recreate"),
                           exists=True, state="stopped",
                           apps=[{"name": a["name"], "image_id": a["image_id"]} for a in wanted["apps"]])
            if module.check_mode:
                return changes.result(pod=None, differences=differences, isolators=report)
            pods.destroy(pod, engine)
            pod = None
    if pod is None:
        if not changes.changed:
            changes.record("created pod %s" % name, exists=True, state="stopped",
                           apps=[{"name": a["name"], "image_id": a["image_id"]} for a in wanted["apps"]])
        if module.check_mode:
            if params["state"] in ("started", "restarted"):
                changes.record("started pod %s" % name, state="running")
            return changes.result(pod=None, differences=differences, isolators=report)
        pod = pods.create(store, wanted, engine)
    apply_run_state(module, store, engine, pod, changes)
    return changes.result(pod=pod.info(), differences=differences, isolators=report)


def apply_run_state(module, store, engine, pod, changes):
    state, running = module.params["state"], pod.running()
    if state == "restarted" or (state == "started" and not running):
        changes.record("%s pod %s" % ("restarted" if state == "restarted" and running else "started", pod.name),
                       state="running")
        if not module.check_mode:
            if running:
                pods.stop(pod, engine)
            pods.start_supervised(store, pod)
    elif state == "stopped" and running:
        changes.record("stopped pod %s" % pod.name, state="stopped")
        if not module.check_mode:
            pods.stop(pod, engine)


def main():
    mount = dict(volume=dict(type="str", required=True), path=dict(type="str", required=True),
                 read_only=dict(type="bool", default=False))
    app = dict(
        name=dict(type="str"), image=dict(type="str", required=True), labels=dict(type="dict", default={}),
        exec=dict(type="list", elements="str"), user=dict(type="str"), group=dict(type="str"),
        supplementary_gids=dict(type="list", elements="int"), environment=dict(type="dict", default={}),
        working_directory=dict(type="str"), read_only_rootfs=dict(type="bool", default=False),
        mounts=dict(type="list", elements="dict", options=mount),
        pre_start=dict(type="list", elements="str"), post_stop=dict(type="list", elements="str"),
        annotations=dict(type="dict", default={}), isolators=dict(type="list", elements="dict"),
    )
    volume = dict(
        name=dict(type="str", required=True), kind=dict(type="str", choices=["host", "empty", "jetpack"]),
        source=dict(type="path"), volume=dict(type="str"), read_only=dict(type="bool", default=False),
        mode=dict(type="str", default="0755"), uid=dict(type="int", default=0), gid=dict(type="int", default=0),
    )
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            state=dict(type="str", default="started",
                       choices=["present", "started", "stopped", "restarted", "absent"]),
            apps=dict(type="list", elements="dict", options=app),
            volumes=dict(type="list", elements="dict", default=[], options=volume),
            networks=dict(type="list", elements="raw"),
            ports=dict(type="list", elements="dict", default=[], options=dict(
                host_port=dict(type="int", required=True), name=dict(type="str"), pod_port=dict(type="int"),
                protocol=dict(type="str", choices=["tcp", "udp"]), host_ip=dict(type="str"))),
            dns=dict(type="dict", options=dict(nameservers=dict(type="list", elements="str"),
                                               search=dict(type="list", elements="str"))),
            annotations=dict(type="dict", default={}),
            hostname=dict(type="str"),
            restart=dict(type="str", default="no", choices=["no", "on-failure", "always"]),
            restart_retries=dict(type="int", default=3),
            stop_timeout=dict(type="int", default=10),
            jail=dict(type="dict", default={}),
            limits=dict(type="dict", options=dict(memory=dict(type="str"), cpu=dict(type="str"),
                                                  processes=dict(type="int"), open_files=dict(type="int"))),
            isolators=dict(type="list", elements="dict"),
            strict=dict(type="bool", default=False),
            recreate=dict(type="bool", default=False),
            comparisons=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    run_module(module, work)


if __name__ == "__main__":
    main()
