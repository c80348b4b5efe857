"""`ansible-galaxy collection build` makes a tarball that installs, and Ansible then sees the collection."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin/, not resolved: it holds ansible-galaxy

pytestmark = pytest.mark.ansible

# Paths galaxy.yml's build_ignore keeps out of the tarball.
NOT_SHIPPED = (".ci/", ".venv/", "build/", "tests/output/", ".pytest_cache/")


def run(argv, cwd, collections):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(arg) for arg in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, f"{argv} failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def module_names():
    return sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py")
                  if not path.name.startswith("_"))


def test_built_tarball_installs_and_lists_its_modules(tmp_path):
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    collections = tmp_path / "collections"

    run([BIN / "ansible-galaxy", "collection", "build", ROOT, "--output-path", tmp_path / "dist"],
        tmp_path, collections)
    tarball = tmp_path / "dist" / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    with tarfile.open(tarball) as archive:
        members = archive.getnames()
    assert {"MANIFEST.json", "FILES.json", "README.md", "LICENSE", "meta/runtime.yml"} <= set(members)
    shipped = [name for name in members if name.startswith(NOT_SHIPPED) or name.endswith(".tar.gz")]
    assert not shipped, f"build_ignore lets these into the tarball: {shipped[:20]}"

    run([BIN / "ansible-galaxy", "collection", "install", "--offline", "-p", collections, tarball],
        tmp_path, collections)
    listing = json.loads(run([BIN / "ansible-galaxy", "collection", "list", "jetpack.runtime",
                              "--format", "json"], tmp_path, collections))
    installed = {name: info["version"] for found in listing.values() for name, info in found.items()}
    assert installed == {"jetpack.runtime": galaxy["version"]}

    # Every module's documentation loads from the installed copy.
    docs = json.loads(run([BIN / "ansible-doc", "-t", "module", "-l", "jetpack.runtime", "--json"],
                          tmp_path, collections))
    assert sorted(docs) == [f"jetpack.runtime.{name}" for name in module_names()]
