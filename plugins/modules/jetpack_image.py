#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# Licensed under the BSD 2-Clause License (see LICENSE) or, at your option, under the
# GNU General Public License version 3 or later (https://www.gnu.org/licenses/gpl-3.0.txt).
# SPDX-License-Identifier: BSD-2-Clause OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: jetpack_image
short_description: Import, build, export and remove App Container images in the jetpack store
version_added: 0.1.0
description:
  - Makes sure an App Container (appc) image is present in the host's jetpack store, or absent.
  - An image is a sealed, read-only ZFS dataset. An image that depends on one parent image is a ZFS clone
    of the parent's C(@seal) snapshot; one with several dependencies is rendered in the manifest's order.
  - Importing reads the archive once, computing the image ID (C(sha512-) of the uncompressed tar) while
    extracting with hardened rules; anything refused leaves nothing behind.
  - Re-running a task whose image is present changes nothing. A local source file that has not changed
    since it was imported (same path, size, modification time and inode) is not read again.
  - With O(source=build), builds a child image from a parent image in a temporary pod (O(build)); with
    O(source=base), makes an image without a parent (O(base)). Both are cached by a key over all their inputs,
    so a re-run with the same inputs reports no change and runs nothing. See C(docs/builds.md).
author:
  - jetpack.runtime contributors (@jetpack-runtime)
extends_documentation_fragment:
  - jetpack.runtime.store
  - jetpack.runtime.store.ATTRIBUTES
options:
  name:
    description:
      - The image name, an AC identifier such as V(example.com/busybox).
      - With O(source), the archive must hold an image of this name.
      - Without O(source) and O(id), selects the images to keep or remove.
    type: str
  labels:
    description:
      - Labels the image must have, such as C(version), C(os) and C(arch). A subset match.
    type: dict
    default: {}
  id:
    description:
      - The image ID, V(sha512-) followed by 128 hex digits.
      - With O(source), pins the archive's content; an archive with another ID is refused.
    type: str
  state:
    description:
      - V(present) imports the image from O(source) unless it is already in the store.
      - V(absent) removes every matching image, refusing while a pod or a child image uses one.
    type: str
    choices: [present, absent]
    default: present
  source:
    description:
      - The ACI archive to import, an absolute path or an C(https://) URL (C(http://) only with O(allow_http)).
      - Plain, gzip, bzip2 and xz archives are accepted.
      - Dependencies named in the image manifest must already be in the store.
      - V(build) builds the image described by O(build); V(base) makes the image described by O(base).
      - V(discover) fetches the image by O(name) and O(labels) with appc discovery (C(https://<name>?ac-discovery=1))
        when the store has no matching image; O(allow_http), O(validate_certs) and O(verify_signature) apply.
    type: str
  build:
    description:
      - With O(source=build), how to build the image (O(name) and O(labels) name it) from its parent.
      - The steps run in order in a temporary pod over a ZFS clone of the parent; the image holds only what
        they changed and depends on the parent by ID. A failing step leaves nothing behind and fails the task
        with its output.
    type: dict
    suboptions:
      parent:
        description:
          - The parent image, by O(build.parent.id) or by O(build.parent.name) and O(build.parent.labels)
            (the newest match).
        type: dict
        required: true
        suboptions:
          id:
            description: The parent's image ID.
            type: str
          name:
            description: The parent's name.
            type: str
          labels:
            description: Labels the parent must have.
            type: dict
      steps:
        description:
          - The build steps, each with exactly one of O(build.steps[].copy) and O(build.steps[].run).
          - Templates are rendered by Ansible before the task runs; give one as O(build.steps[].copy.content)
            set to the result of the C(template) lookup (see the examples).
        type: list
        elements: dict
        default: []
        suboptions:
          copy:
            description:
              - Write a file into the image, replacing what is at O(build.steps[].copy.dest) (a symlink there is
                replaced, never followed). Missing parent directories are created (0755, root).
            type: dict
            suboptions:
              content:
                description: The file's content.
                type: str
              src:
                description: A file on the managed host to copy (absolute path).
                type: path
              dest:
                description: The absolute path in the image.
                type: str
                required: true
              mode:
                description: The file's mode, such as V('0644') (the default).
                type: raw
              owner:
                description: The owner, a user of the image's own C(/etc/passwd) or a number. Default V(0).
                type: str
              group:
                description: The group, a group of the image's C(/etc/group) or a number. Default the owner's.
                type: str
          run:
            description:
              - A command to run as root in the build pod, a list (argv, no shell) or a string run by the image's
                own C(/bin/sh -c). A non-zero exit status fails the build.
            type: raw
          environment:
            description: Environment variables of a O(build.steps[].run) step.
            type: dict
      network:
        description:
          - V(host) gives run steps the host's network (to download packages); V(none) loopback only.
        type: str
        choices: [host, none]
        default: host
  base:
    description:
      - With O(source=base), where the image's root filesystem comes from; give exactly one suboption.
    type: dict
    suboptions:
      rootfs:
        description: A root filesystem directory or tarball (plain, gzip, bzip2 or xz) on the managed host.
        type: path
      debootstrap:
        description:
          - Run C(debootstrap) on the managed host. The archive is the one the host's own apt sources use for
            the suite unless O(base.debootstrap.mirror) is given.
        type: dict
        suboptions:
          suite:
            description: The Debian suite, such as V(bookworm).
            type: str
            required: true
          variant:
            description: The debootstrap variant.
            type: str
            choices: [minbase, buildd, fakechroot]
            default: minbase
          include:
            description: Extra packages to install.
            type: list
            elements: str
            default: []
          mirror:
            description: The Debian archive URL to use instead of the host's.
            type: str
      freebsd_base:
        description:
          - A FreeBSD release's C(base.txz), refused unless its SHA-256 is the one the release's C(MANIFEST) lists.
        type: dict
        suboptions:
          path:
            description: base.txz on the managed host.
            type: path
          url:
            description: base.txz as an C(https://) URL.
            type: str
          manifest:
            description: The release's C(MANIFEST), an absolute path or an C(https://) URL.
            type: str
            required: true
  app:
    description:
      - With O(source=build) or O(source=base), the image's app section; a build starts from its parent's and
        replaces each field given here.
    type: dict
    suboptions:
      exec:
        description: The command the app runs.
        type: list
        elements: str
      user:
        description: The user it runs as.
        type: str
      group:
        description: The group it runs as.
        type: str
      environment:
        description: Its environment variables.
        type: dict
      working_directory:
        description: Its working directory.
        type: str
      ports:
        description: The ports it listens on.
        type: list
        elements: dict
        suboptions:
          name:
            description: The port's name.
            type: str
            required: true
          port:
            description: The port number.
            type: int
            required: true
          protocol:
            description: V(tcp) or V(udp); V(tcp) when omitted.
            type: str
          count:
            description: How many consecutive ports.
            type: int
          socket_activated:
            description: Whether the app expects socket activation.
            type: bool
      mount_points:
        description: Where it expects volumes.
        type: list
        elements: dict
        suboptions:
          name:
            description: The mount point's name.
            type: str
            required: true
          path:
            description: The absolute path in the app.
            type: str
            required: true
          read_only:
            description: Whether the volume is mounted read-only.
            type: bool
            default: false
  annotations:
    description:
      - With O(source=build) or O(source=base), the image's annotations.
    type: dict
    default: {}
  allow_http:
    description:
      - Allow an C(http://) O(source). Anyone on the network path could replace the image, so only use it on
        networks you trust.
    type: bool
    default: false
  validate_certs:
    description:
      - Verify the server certificate of an C(https://) O(source).
    type: bool
    default: true
  verify_signature:
    description:
      - With O(source=discover), the image's detached signature (C(.aci.asc)) must be made by a key trusted
        for its name (M(jetpack.runtime.jetpack_trust)). Set V(false) only for images trusted by other means.
    type: bool
    default: true
  allow_setuid:
    description:
      - Keep setuid and setgid bits of files in the archive. They are cleared by default.
    type: bool
    default: false
  export_path:
    description:
      - Also write the image as an ACI archive to this absolute path.
      - Nothing is written when the file already holds the same image (same ID).
    type: path
  export_flat:
    description:
      - Export the rendered tree with dependencies and C(pathWhitelist) dropped, instead of the
        archive as imported.
    type: bool
    default: false
  export_compression:
    description:
      - Compression of a flat export.
    type: str
    choices: [gzip, bzip2, xz, none]
    default: gzip
notes:
  - Images are immutable; importing a different archive under the same name and labels adds a second image.
    Remove the old one with O(state=absent) and O(id).
seealso:
  - module: jetpack.runtime.jetpack_image_info
"""

EXAMPLES = r"""
- name: Import an image from a file on the host
  jetpack.runtime.jetpack_image:
    name: example.com/busybox
    labels:
      version: "1.36"
      os: linux
      arch: amd64
    source: /srv/images/busybox-1.36-linux-amd64.aci

- name: Import a pinned image over https
  jetpack.runtime.jetpack_image:
    name: example.com/nginx
    id: sha512-6f2a0e8c0f0e4a6b6d5d3b1e7f8a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d
    source: https://images.example.com/nginx-1.26-linux-amd64.aci

- name: Fetch a signed image by name with appc discovery
  jetpack.runtime.jetpack_image:
    name: example.com/redis
    labels:
      version: "7.2"
    source: discover

- name: Export an image as a flat archive
  jetpack.runtime.jetpack_image:
    name: example.com/busybox
    labels:
      version: "1.36"
    export_path: /srv/export/busybox.aci
    export_flat: true

- name: Build an application image on a runtime image
  jetpack.runtime.jetpack_image:
    name: example.com/shop
    labels:
      version: "2.1"
    source: build
    build:
      parent:
        name: example.com/python
        labels:
          version: "3.11"
      steps:
        - run: apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/*
          environment:
            DEBIAN_FRONTEND: noninteractive
        - copy:
            src: /srv/build/shop.tar.gz
            dest: /opt/shop.tar.gz
        - run: [/bin/tar, -C, /opt, -xzf, /opt/shop.tar.gz]
        - copy:
            content: "{{ lookup('template', 'shop.ini.j2') }}"
            dest: /etc/shop.ini
            mode: "0640"
            owner: shop
    app:
      exec: [/usr/bin/python3, -m, shop]
      user: shop
      group: shop
      ports:
        - name: http
          port: 8080

- name: A Debian base image made with debootstrap
  jetpack.runtime.jetpack_image:
    name: example.com/debian
    labels:
      version: "12"
    source: base
    base:
      debootstrap:
        suite: bookworm

- name: Remove every version of an image
  jetpack.runtime.jetpack_image:
    name: example.com/busybox
    state: absent
"""

RETURN = r"""
image:
  description:
    - The image as M(jetpack.runtime.jetpack_image_info) returns it; V(null) after removal or when
      check mode would import it.
  returned: always
  type: dict
  contains:
    id:
      description: The image ID.
      type: str
      sample: sha512-3f7c2d0e1b9a...
    name:
      description: The image name.
      type: str
      sample: example.com/busybox
    labels:
      description: The image labels.
      type: dict
      sample: {"version": "1.36", "os": "linux", "arch": "amd64"}
    annotations:
      description: The image annotations.
      type: dict
      sample: {"authors": "ops@example.com"}
    app:
      description: The manifest's C(app) section, or V(null).
      type: dict
      sample: {"exec": ["/bin/httpd", "-f"], "user": "0", "group": "0"}
    dependencies:
      description: IDs of the images this one was rendered from, in the manifest's order.
      type: list
      elements: str
      sample: []
    path_whitelist:
      description: The manifest's C(pathWhitelist).
      type: list
      elements: str
      sample: []
    dataset:
      description: The image's ZFS dataset.
      type: str
      sample: zroot/jetpack/images/0f8e3c2a9b4d4f0e8a1b2c3d4e5f6a7b
    rootfs:
      description: Where the image's root filesystem is mounted (read-only).
      type: str
      sample: /var/jetpack/images/0f8e3c2a9b4d4f0e8a1b2c3d4e5f6a7b/rootfs
    imported:
      description: When the image was imported (UTC, ISO 8601).
      type: str
      sample: "2026-11-30T01:17:21+00:00"
    size:
      description: Bytes the image's dataset uses.
      type: int
      sample: 1310720
    source:
      description: Where the image was imported from.
      type: str
      sample: /srv/images/busybox-1.36-linux-amd64.aci
    manifest:
      description: The full image manifest.
      type: dict
      sample: {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/busybox"}
build:
  description: The build or base image made, or that check mode would make.
  returned: when O(source=build) or O(source=base)
  type: dict
  contains:
    key:
      description: The build key (sha256 of every input); the image carries it as annotation C(jetpack.runtime/build-key).
      type: str
      sample: 0c5b1f...
    parent:
      description: The parent's image ID (builds only).
      type: str
      sample: sha512-3f7c2d0e1b9a...
    cached:
      description: Whether an image made from the same inputs was in the store already (nothing ran).
      type: bool
      sample: false
    steps:
      description: What each step did; a run step's C(output) is the end of what it printed.
      type: list
      elements: dict
      sample: [{"step": 0, "run": ["/bin/sh", "-c", "make"], "rc": 0, "output": "ok"}]
removed:
  description: IDs of the images removed (or that check mode would remove).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["sha512-3f7c2d0e1b9a..."]
export:
  description: The export written, or that would be written.
  returned: when O(export_path) is set
  type: dict
  contains:
    path:
      description: The archive's path.
      type: str
      sample: /srv/export/busybox.aci
    id:
      description: The ID of the exported archive; for a flat export it differs from the image's.
      type: str
      sample: sha512-9a8b7c...
actions:
  description: What was done, or would be done in check mode, in words.
  returned: always
  type: list
  elements: str
  sample: ["imported example.com/busybox (sha512-3f7c2d0e1b9a...) from /srv/images/busybox.aci"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.jetpack.runtime.plugins.module_utils.common import (
    Changes, argument_spec, open_store, run_module)
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import appc, base, build, discovery, images
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput, NotFound

MADE = ("build", "base")  # values of source that make an image instead of importing one


def summary(image):
    if image is None:
        return {"exists": False}
    return {"exists": True, "id": image.id, "name": image.name, "labels": image.labels}


def wanted(module):
    params = module.params
    name = appc.validate_identifier(params["name"], "name") if params["name"] else None
    labels = appc.normalize_labels(params["labels"] or {})
    image_id = appc.validate_image_id(params["id"], "id") if params["id"] else None
    return name, labels, image_id


def make_image(module, store, changes):
    """source: build or base; returns (image or None in check mode, the build result)."""
    params = module.params
    name, labels, image_id = wanted(module)
    if not name or image_id:
        raise InvalidInput("source=%s needs name (and labels) for the new image, not id" % params["source"], field="name")
    if params["source"] == "build":
        spec = build.BuildSpec(name, params["build"]["parent"], params["build"]["steps"], labels=labels,
                               app=params["app"], annotations=params["annotations"],
                               network=params["build"]["network"], allow_setuid=params["allow_setuid"])
        plan = build.plan(store, spec)
        image, key, made = build.find_built(store, plan.key), plan.key, {"parent": plan.parent.id}
        what = "%s from %s (%s) in %d steps" % (name, plan.parent.name, plan.parent.id, len(plan.steps))
    else:
        spec = base.BaseSpec(name, params["base"], labels=labels, app=params["app"],
                             annotations=params["annotations"], allow_setuid=params["allow_setuid"])
        image, key, _manifest = base.plan(store, spec)
        made = {}
        what = "%s from %s" % (name, spec.kind)
    made.update(key=key, cached=image is not None, steps=[])
    if image is not None:
        return image, made
    if module.check_mode:
        changes.record("would build %s" % what, exists=True, name=name, labels=labels, build_key=key)
        return None, made
    if params["source"] == "build":
        image, _changed, made["steps"] = build.build(store, spec)
    else:
        image = base.make(store, spec)[0]
    changes.record("built %s (%s) from %s" % (image.name, image.id, what.split(" from ", 1)[1]), **summary(image))
    return image, made


def fetch_by_name(module, store, changes):
    """source=discover: the store's matching image, else the one appc discovery finds, verified."""
    params = module.params
    name, labels, image_id = wanted(module)
    found = images.find_images(store, name, labels, image_id)
    if found:
        return found[-1]
    with discovery.fetch_image(store, name, labels, allow_http=params["allow_http"],
                               validate_certs=params["validate_certs"],
                               verify_signature=params["verify_signature"]) as fetched:
        request = images.ImportRequest(
            source=fetched.path, image_id=image_id or fetched.image_id, name=name, labels=labels,
            allow_setuid=params["allow_setuid"], origin={"location": fetched.url, "signer": fetched.signer})
        if module.check_mode:
            image, manifest, new_id = images.plan_import(store, request)
            if image is None:
                changes.record("would fetch %s (%s) from %s" % (name, new_id, fetched.url), exists=True,
                               id=new_id, name=name, labels=appc.normalize_labels(manifest.get("labels", [])))
            return image
        image, imported = images.import_image(store, request)
    if imported:
        changes.record("fetched %s (%s) from %s, signed by %s" % (
            name, image.id, fetched.url, fetched.signer or "nobody (verify_signature=false)"), **summary(image))
    return image


def ensure_present(module, store, changes):
    params = module.params
    if params["source"] == "discover":
        return fetch_by_name(module, store, changes)
    name, labels, image_id = wanted(module)
    if params["source"]:
        request = images.ImportRequest(
            source=params["source"], image_id=image_id, name=name, labels=labels,
            allow_http=params["allow_http"], validate_certs=params["validate_certs"],
            allow_setuid=params["allow_setuid"])
        if module.check_mode:
            image, manifest, new_id = images.plan_import(store, request)
            if image is None:
                changes.record("would import %s (%s) from %s" % (manifest["name"], new_id, params["source"]),
                               exists=True, id=new_id, name=manifest["name"],
                               labels=appc.normalize_labels(manifest.get("labels", [])))
                return None
        else:
            image, imported = images.import_image(store, request)
            if imported:
                changes.record("imported %s (%s) from %s" % (image.name, image.id, params["source"]),
                               **summary(image))
        return image
    found = images.find_images(store, name, labels, image_id)
    if not found:
        raise NotFound("no image matches name=%s labels=%s id=%s in the store; give source to import it"
                       % (name, labels, image_id))
    return found[-1]


def export(module, store, image, changes):
    params = module.params
    if image is None:
        return {"path": params["export_path"], "id": None}
    changed, exported_id = images.export_image(
        store, image, params["export_path"], flat=params["export_flat"],
        compression=params["export_compression"], check_only=module.check_mode)
    if changed:
        changes.record("exported %s to %s" % (image.id, params["export_path"]))
    return {"path": params["export_path"], "id": exported_id}


def ensure_absent(module, store, changes):
    name, labels, image_id = wanted(module)
    targets = images.find_images(store, name, labels, image_id)
    changes.before = {"exists": bool(targets), "ids": [t.id for t in targets]}
    changes.after = {"exists": False, "ids": []}
    if not targets:
        return []
    if module.check_mode:
        images.check_removable(store, targets)
        removed = [t.id for t in targets]
    else:
        removed = images.remove_images(store, targets)
    for image_id in removed:
        changes.actions.append("removed %s" % image_id)
    return removed


def work(module):
    store = open_store(module)
    params = module.params
    if params["state"] == "absent":
        changes = Changes({"exists": False})
        removed = ensure_absent(module, store, changes)
        return changes.result(image=None, removed=removed)
    changes = Changes({"exists": False})
    made = None
    if params["source"] in MADE:
        image, made = make_image(module, store, changes)
    else:
        image = ensure_present(module, store, changes)
    if not changes.changed:
        changes.before = changes.after = summary(image)
    result = {"image": image.info() if image else None}
    if made is not None:
        result["build"] = made
    if params["export_path"]:
        result["export"] = export(module, store, image, changes)
    return changes.result(**result)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str"),
            labels=dict(type="dict", default={}),
            id=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            source=dict(type="str"),
            build=dict(type="dict", options=dict(
                parent=dict(type="dict", required=True, options=dict(
                    id=dict(type="str"), name=dict(type="str"), labels=dict(type="dict"))),
                steps=dict(type="list", elements="dict", default=[], options=dict(
                    copy=dict(type="dict", options=dict(
                        content=dict(type="str"), src=dict(type="path"), dest=dict(type="str", required=True),
                        mode=dict(type="raw"), owner=dict(type="str"), group=dict(type="str"))),
                    run=dict(type="raw"),
                    environment=dict(type="dict"))),
                network=dict(type="str", default="host", choices=["host", "none"]))),
            base=dict(type="dict", options=dict(
                rootfs=dict(type="path"),
                debootstrap=dict(type="dict", options=dict(
                    suite=dict(type="str", required=True),
                    variant=dict(type="str", default="minbase", choices=["minbase", "buildd", "fakechroot"]),
                    include=dict(type="list", elements="str", default=[]),
                    mirror=dict(type="str"))),
                freebsd_base=dict(type="dict", options=dict(
                    path=dict(type="path"), url=dict(type="str"), manifest=dict(type="str", required=True))))),
            app=dict(type="dict", options=dict(
                exec=dict(type="list", elements="str"), user=dict(type="str"), group=dict(type="str"),
                environment=dict(type="dict"), working_directory=dict(type="str"),
                ports=dict(type="list", elements="dict", options=dict(
                    name=dict(type="str", required=True), port=dict(type="int", required=True),
                    protocol=dict(type="str"), count=dict(type="int"), socket_activated=dict(type="bool"))),
                mount_points=dict(type="list", elements="dict", options=dict(
                    name=dict(type="str", required=True), path=dict(type="str", required=True),
                    read_only=dict(type="bool", default=False))))),
            annotations=dict(type="dict", default={}),
            allow_http=dict(type="bool", default=False),
            validate_certs=dict(type="bool", default=True),
            verify_signature=dict(type="bool", default=True),
            allow_setuid=dict(type="bool", default=False),
            export_path=dict(type="path"),
            export_flat=dict(type="bool", default=False),
            export_compression=dict(type="str", default="gzip", choices=["gzip", "bzip2", "xz", "none"]),
        ),
        required_one_of=[("name", "id")],
        required_if=[("source", "build", ["build"]), ("source", "base", ["base"]), ("source", "discover", ["name"])],
        supports_check_mode=True,
    )
    run_module(module, work)


if __name__ == "__main__":
    main()
