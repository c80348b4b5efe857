"""Make this checkout importable as ansible_collections.jetpack.runtime, as Ansible loads it."""
import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
COLLECTIONS = os.path.join(ROOT, "build", "pytest-collections")


def _link_collection():
    namespace = os.path.join(COLLECTIONS, "ansible_collections", "jetpack")
    link = os.path.join(namespace, "runtime")
    os.makedirs(namespace, exist_ok=True)
    if os.path.realpath(link) != ROOT:
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(ROOT, link)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)


_link_collection()
