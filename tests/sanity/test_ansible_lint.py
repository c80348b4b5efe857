"""ansible-lint with the production profile is clean on roles/ and playbooks/ (config: .ansible-lint)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.sanity.repo_files import ROOT

pytestmark = pytest.mark.sanity


def test_ansible_lint_production_profile_is_clean():
    bin_dir = os.path.dirname(sys.executable)
    lint = os.path.join(bin_dir, "ansible-lint")
    if not os.path.exists(lint):
        pytest.fail("ansible-lint is missing: scripts/setup installs tests/requirements.txt into .venv")
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), NO_COLOR="1",
               ANSIBLE_COLLECTIONS_PATH=os.path.join(str(ROOT), "build", "pytest-collections"))
    proc = subprocess.run([lint, "--profile", "production", "--nocolor", "roles", "playbooks"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
