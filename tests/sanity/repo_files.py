"""The files of this checkout that make up the collection: tracked, plus untracked and not ignored."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def repo_files() -> list[str]:
    """Paths relative to ROOT; a tracked file deleted in the work tree is left out."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()
    return [path for path in listing.split("\0") if path and os.path.lexists(ROOT / path)]
