"""Collection metadata that ansible-test does not check: the action group and the changelog."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin/, not resolved: it holds antsibull-changelog

pytestmark = pytest.mark.sanity


def test_action_group_lists_exactly_the_modules():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    modules = sorted(path.stem for path in (ROOT / "plugins" / "modules").glob("*.py")
                     if not path.name.startswith("_"))
    # group/jetpack.runtime.jetpack in module_defaults must reach every module.
    assert sorted(runtime["action_groups"]["jetpack"]) == modules


def test_changelog_fragments_lint_clean():
    proc = subprocess.run([str(BIN / "antsibull-changelog"), "lint"], cwd=ROOT, check=False,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
