"""Install the staged jetpack runtime core on this host and print where it is.

Run by the host role as `python3 install_core.py BASE_DIR` with the staged core on PYTHONPATH.
Prints `installed <core dir>` when it installed something, `present <core dir>` when the same
content was installed already.
"""
import os
import sys

from jetpack import install


def main():
    base = os.path.join(sys.argv[1], "core")
    command = os.path.join(sys.argv[1], "bin", "jetpack")
    target = os.path.join(base, install.content_hash(install.read_sources()))
    present = os.path.isdir(target) and os.path.exists(command)
    core = install.ensure_installed(base)
    if not os.path.exists(command):  # the core was there, its command was not
        install.write_command(command, core)
    print("%s %s" % ("present" if present else "installed", core))


if __name__ == "__main__":
    main()
