"""Recorded FreeBSD outputs from shared/reference/freebsd/outputs (beside this checkout, as CI lays it)."""
import os
from pathlib import Path

import pytest

OUTPUTS = Path(os.environ.get("JETPACK_SHARED", Path(__file__).resolve().parents[3] / "shared")) \
    / "reference" / "freebsd" / "outputs"


def sample(name):
    """(header fields, body) of a recording: split on the first line that is exactly '# ---'."""
    if not OUTPUTS.is_dir():
        pytest.fail("the recorded FreeBSD outputs are missing: expected %s (../shared beside the checkout, "
                    "or set JETPACK_SHARED)" % OUTPUTS)
    text = (OUTPUTS / (name + ".txt")).read_text(encoding="utf-8")
    lines = text.split("\n")
    cut = lines.index("# ---")
    header = {}
    for line in lines[:cut]:
        key, _sep, value = line[2:].partition(": ")
        header.setdefault(key, []).append(value)
    return header, "\n".join(lines[cut + 1:])
