# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# BSD 2-Clause License (see LICENSE)

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  store_root:
    description:
      - The ZFS dataset that holds the jetpack store (images, pods and volumes), for example V(zroot/jetpack).
      - When omitted, the host configuration file C(/usr/local/etc/jetpack/jetpack.json) or
        C(/etc/jetpack/jetpack.json) (a JSON object with C(root) and C(mountpoint)) decides.
      - Without either, the embedded default is used, a file-backed pool C(jetpack) under
        C(/var/lib/jetpack) with the store at V(jetpack/jetpack), created on first use.
    type: str
  store_mountpoint:
    description:
      - Where the store root dataset is mounted. Defaults to the host configuration, else V(/var/jetpack).
    type: path
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
"""

    INFO_MODULE = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: N/A
    details:
      - This action does not modify state.
"""
