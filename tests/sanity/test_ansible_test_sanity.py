"""ansible-test sanity on the collection, run from pytest so that one runner reports everything.

ansible-test wants the collection at ``.../ansible_collections/jetpack/runtime``; the repository
is not laid out that way, so the files git knows (tracked, plus untracked ones not ignored) are
copied afresh into ``build/ansible_collections/jetpack/runtime`` and checked there. The copy gets
a git repository of its own: inside ours it would sit in the ignored ``build/``, and ansible-test
would skip every file.

ansible-test installs each check's own requirements into virtual environments it keeps under
``~/.ansible/test/venv``. It seeds those with a pip bootstrap script fetched from a host outside
the package registries; where that script is not cached yet, a stand-in is written that installs
the same pip release through ensurepip and the package index pip is configured with.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from tests.sanity.repo_files import ROOT, repo_files

BIN = Path(sys.executable).parent  # the venv's bin/, not resolved: it holds ansible-test
COPY = ROOT / "build" / "ansible_collections" / "jetpack" / "runtime"
LOG = ROOT / "build" / "ansible-test-sanity.log"
TIMEOUT = 1800

# ansible-test reports checks it could not run, or files it did not look at, and still exits 0.
SKIPPED = re.compile(r"All targets skipped|Skipping sanity test .*(could not be found|virtual environment|libyaml)")

STAND_IN_MARK = '"""Stand-in for the pip bootstrap script'
PIP_STAND_IN = textwrap.dedent('''\
    """Stand-in for the pip bootstrap script ansible-test downloads (written by the sanity test
    of jetpack.runtime). ansible-test runs it inside a new virtual environment created without
    pip, with pip-install arguments; it installs the pip bundled with this Python, then runs
    `pip install` with those arguments against the configured package index."""
    import subprocess
    import sys

    # In a child: ensurepip switches pip's configuration files off in its own process.
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
    if "--no-setuptools" in sys.argv:  # ensurepip brings setuptools along before Python 3.12
        subprocess.call([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "setuptools"])
''')


def copy_collection() -> None:
    shutil.rmtree(COPY.parents[1], ignore_errors=True)  # build/ansible_collections
    for path in repo_files():
        target = COPY / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target, follow_symlinks=False)
    subprocess.run(["git", "init", "--quiet", str(COPY)], check=True)


def ensure_pip_bootstrap() -> None:
    from ansible_test._internal.python_requirements import get_venv_packages

    version = get_venv_packages(types.SimpleNamespace(version=python_version()))["pip"]
    cached = Path.home() / ".ansible" / "test" / "cache" / f"get_pip_{version.replace('.', '_')}.py"
    if not cached.exists() or cached.read_text().startswith(STAND_IN_MARK):
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(PIP_STAND_IN)


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.mark.sanity
def test_ansible_test_sanity():
    if not (BIN / "ansible-test").exists():
        pytest.fail(f"{BIN / 'ansible-test'} is missing: run the tests with `bash scripts/test`, "
                    "which installs tests/requirements.txt into .venv")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    argv = [str(BIN / "ansible-test"), "sanity", "--python", python_version(), "--color", "no", "-v"]
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time per checkout: the copy is shared
        copy_collection()
        ensure_pip_bootstrap()
        proc = subprocess.run(argv, cwd=COPY, env=env, stdin=subprocess.DEVNULL, check=False,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=TIMEOUT)
        LOG.write_text(proc.stdout)
    lines = proc.stdout.splitlines()
    findings = [line for line in lines if line.startswith(("ERROR:", "FATAL:"))]
    skipped = [line for line in lines if SKIPPED.search(line)]
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(argv)}` in {COPY} failed (rc={proc.returncode}); full output in "
                    f"{LOG}\n" + "\n".join(findings or lines[-40:]), pytrace=False)
    if skipped:
        pytest.fail("ansible-test did not run some checks:\n" + "\n".join(skipped), pytrace=False)
