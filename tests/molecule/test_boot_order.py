"""The order in which the boot service starts pods (plugins/module_utils/jetpack/boot.py), without root.

The real start after a simulated reboot is proven by the host scenario (extensions/molecule/host).
"""
from types import SimpleNamespace

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import boot
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import JetpackError


def pod(name, **annotations):
    return SimpleNamespace(name=name, record={"name": name, "annotations": {
        "jetpack.runtime/" + key: value for key, value in annotations.items()}})


def names(pods):
    return [p.name for p in pods]


def test_only_pods_marked_true_start_at_boot():
    assert [boot.is_marked(p) for p in (pod("a", boot="true"), pod("b", boot="True"), pod("c", boot="false"),
                                        pod("d"))] == [True, True, False, False]


def test_services_start_after_those_they_name_then_by_name():
    marked = [pod("web-2", service="web", after="app"), pod("app-1", service="app", after="db, cache"),
              pod("web-1", service="web", after="app"), pod("cache"), pod("db")]
    ordered, cycle = boot.boot_order(marked)
    assert names(ordered) == ["cache", "db", "app-1", "web-1", "web-2"]
    assert cycle == []


def test_dependencies_that_start_nothing_at_boot_are_ignored():
    ordered, cycle = boot.boot_order([pod("app", after="db,app")])
    assert names(ordered) == ["app"] and cycle == []


def test_a_cycle_is_reported_and_its_pods_still_start_last():
    marked = [pod("a", after="b"), pod("b", after="a"), pod("c")]
    ordered, cycle = boot.boot_order(marked)
    assert names(ordered) == ["c", "a", "b"]
    assert cycle == ["a", "b"]


def test_a_pod_that_fails_to_start_does_not_keep_the_others_down():
    pods = [pod("db", boot="true"), pod("app", boot="true", after="db"), pod("manual")]
    said, started = [], []

    def start(p):
        started.append(p.name)
        if p.name == "db":
            raise JetpackError("no space left")
        return True

    ok = boot.start_marked(pods, start, say=lambda text, stream=None: said.append(text))
    assert not ok
    assert started == ["db", "app"]
    assert said == ["jetpack boot: pod db did not start: no space left", "started app"]
