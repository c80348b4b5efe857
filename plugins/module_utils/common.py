# -*- coding: utf-8 -*-
# Copyright (c) jetpack.runtime contributors
# BSD 2-Clause License (see LICENSE)
"""Ansible glue shared by the jetpack modules: store options, errors, diff and results."""
from __future__ import annotations

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import JetpackError
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.store import Store, resolve_config

STORE_ARGUMENT_SPEC = dict(
    store_root=dict(type="str"),
    store_mountpoint=dict(type="path"),
)


def argument_spec(**options):
    """A module's argument spec: its own options plus the common store options."""
    spec = dict(STORE_ARGUMENT_SPEC)
    spec.update(options)
    return spec


def open_store(module):
    params = module.params
    return Store(resolve_config(params.get("store_root"), params.get("store_mountpoint")))


def run_module(module, work):
    """Run work(module) -> result dict; turn runtime errors into fail_json with their details."""
    try:
        result = work(module)
    except JetpackError as error:
        module.fail_json(msg=str(error), **error.details())
    module.exit_json(**result)


class Changes:
    """What a module did, in words, with the before/after diff it shows."""

    def __init__(self, before):
        self.actions = []
        self.before = dict(before)
        self.after = dict(before)

    def record(self, action, **after):
        self.actions.append(action)
        self.after.update(after)

    @property
    def changed(self):
        return bool(self.actions)

    def result(self, **extra):
        result = dict(changed=self.changed, actions=self.actions,
                      diff=dict(before=self.before, after=self.after))
        result.update(extra)
        return result
