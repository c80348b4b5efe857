"""Test images built with GNU tar and the compressors' own CLIs, independent of the code under test."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

APPLETS = ("sh", "sleep", "echo", "cat", "date", "ps", "wget", "httpd", "touch", "id", "env", "ls", "mkdir",
           "true", "false", "stat", "hostname", "ifconfig", "pwd", "grep", "kill", "nc")
COMPRESSORS = {"none": None, "gzip": ["gzip", "-n", "-c"], "bzip2": ["bzip2", "-c"], "xz": ["xz", "-c"]}


def manifest(name, labels=None, **fields):
    data = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name}
    if labels:
        data["labels"] = [{"name": k, "value": v} for k, v in sorted(labels.items())]
    data.update(fields)
    return data


def make_rootfs(directory, files=None, busybox=False, links=None):
    """A rootfs directory with files {relative path: bytes or str}; busybox adds /bin/busybox + applets;
    links: symlinks {relative path: target}."""
    os.makedirs(directory, exist_ok=True)
    if busybox:
        os.makedirs(os.path.join(directory, "bin"), exist_ok=True)
        shutil.copy2("/bin/busybox", os.path.join(directory, "bin", "busybox"))
        for applet in APPLETS:
            os.symlink("busybox", os.path.join(directory, "bin", applet))
    for path, content in (files or {}).items():
        full = os.path.join(directory, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
    for path, target in (links or {}).items():
        full = os.path.join(directory, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        os.symlink(target, full)
    return directory


def make_aci(workdir, image_manifest, files=None, compression="gzip", busybox=False, name="image", links=None):
    """Write <workdir>/<name>.aci with GNU tar; returns (path, path of the uncompressed tar)."""
    tree = os.path.join(workdir, name + ".tree")
    make_rootfs(os.path.join(tree, "rootfs"), files, busybox, links)
    with open(os.path.join(tree, "manifest"), "w") as f:
        json.dump(image_manifest, f)
    tar = os.path.join(workdir, name + ".tar")
    subprocess.run(["tar", "-C", tree, "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
                    "--mtime=@1000000000", "-cf", tar, "manifest", "rootfs"], check=True)
    out = os.path.join(workdir, name + ".aci")
    if COMPRESSORS[compression] is None:
        shutil.copyfile(tar, out)
    else:
        with open(out, "wb") as f:
            subprocess.run(COMPRESSORS[compression] + [tar], stdout=f, check=True)
    return out, tar


def sha512_id(path):
    out = subprocess.run(["sha512sum", path], check=True, capture_output=True, text=True).stdout
    return "sha512-" + out.split()[0]
