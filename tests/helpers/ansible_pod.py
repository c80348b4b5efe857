"""A pod Ansible can manage through the jetpack connection: busybox, and the host's Python.

Ansible's modules need a Python inside the app. Copying one into an image means copying the
interpreter, its standard library and every shared library it loads (about 100 MB); instead the
pod binds the host's /usr read-only at /usr and the image links /lib and /lib64 into it, as a
merged-/usr Debian does. Writes still go to the app's own rootfs: /usr is read-only. HOME of the
app's user `www` (uid 80), /tmp and /var/tmp (where Ansible puts files for a become user) are `empty` volumes, writable as Ansible needs them.
`su` is busybox's (the host's util-linux su needs PAM files the image has not).
"""
from __future__ import annotations

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import engines, images, pods
from tests.helpers.images import make_aci, manifest

IMAGE = "example.com/ansible-target"
APPLETS = ("su", "chmod", "chown", "rm", "mv", "cp", "ln", "readlink", "head", "tail", "sed", "find", "dd")
FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nwww:x:80:80:www:/home/www:/bin/sh\n",
    "etc/group": "root:x:0:\nwww:x:80:\n",
    "etc/shells": "/bin/sh\n",
    "root/.keep": "",
    "srv/.keep": "",
}
LINKS = dict({"lib": "usr/lib", "lib64": "usr/lib64"}, **{"bin/" + applet: "busybox" for applet in APPLETS})


def import_image(store, workdir: str) -> None:
    path = make_aci(workdir, manifest(IMAGE, {"os": "linux", "version": "1.0"}), FILES, busybox=True,
                    name="ansible-target", links=LINKS)[0]
    images.import_image(store, images.ImportRequest(source=path))


def spec(name: str, annotations=None) -> dict:
    """A one-app pod running as www, with /usr from the host (read-only), /home/www and /tmp writable."""
    return {
        "name": name,
        "annotations": annotations or {},
        "volumes": [{"name": "usr", "kind": "host", "source": "/usr", "read_only": True},
                    {"name": "home", "kind": "empty", "uid": 80, "gid": 80, "mode": "0755"},
                    {"name": "tmp", "kind": "empty", "mode": "1777"},
                    {"name": "var-tmp", "kind": "empty", "mode": "1777"}],
        "apps": [{"name": "main", "image": IMAGE, "user": "www", "group": "www", "exec": ["/bin/sleep", "3600"],
                  "mounts": [{"volume": "usr", "path": "/usr", "read_only": True},
                             {"volume": "home", "path": "/home/www"},
                             {"volume": "tmp", "path": "/tmp"},
                             {"volume": "var-tmp", "path": "/var/tmp"}]}],
    }


def start_pod(store, pod_spec: dict):
    """Create and start a pod from a spec; returns it (destroy it with destroy_pod)."""
    engine = engines.for_host()
    created = pods.create(store, pods.reify(store, pod_spec, engine.name), engine)
    pods.start_supervised(store, created)
    return created


def destroy_pod(store, name: str) -> None:
    found = pods.find_pod(store, name)
    if found is not None:
        pods.destroy(found, engines.for_host())


def app_rootfs(pod) -> str:
    return pod.record["apps"][0]["rootfs"]
