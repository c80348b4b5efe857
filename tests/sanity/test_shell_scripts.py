"""The project's shell scripts pass shellcheck (ansible-test only checks files named *.sh)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.sanity.repo_files import ROOT, repo_files

pytestmark = pytest.mark.sanity

SHEBANGS = {b"#!/usr/bin/env bash", b"#!/bin/bash", b"#!/bin/sh", b"#!/usr/bin/env sh"}


def shell_scripts():
    paths = [ROOT / name for name in repo_files()]
    # Jinja templates (*.j2) are shell only once rendered: tests/molecule/test_host_templates.py checks them.
    return sorted(path for path in paths if path.is_file() and not path.is_symlink() and path.suffix != ".j2" and (
        path.suffix == ".sh" or path.read_bytes()[:64].split(b"\n")[0] in SHEBANGS))


def test_shellcheck_clean():
    scripts = shell_scripts()
    assert scripts, "no shell script found"
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is missing: scripts/setup installs it (apt-get install shellcheck)")
    proc = subprocess.run(["shellcheck", "--severity=warning", *map(str, scripts)], cwd=ROOT,
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
