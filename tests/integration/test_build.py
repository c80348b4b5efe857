"""Builds end to end on a real zfs-fuse store with the Linux engine: base -> runtime -> app."""
import os
import tarfile

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import aci, base, build, engines, images
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput
from tests.helpers.images import make_rootfs
from tests.helpers.store import scratch_store

pytestmark = pytest.mark.integration

PASSWD = "root:x:0:0:root:/:/bin/sh\nwww:x:80:80:www:/www:/bin/sh\n"
GROUP = "root:x:0:\nwww:x:80:\n"


@pytest.fixture
def other_store(zfs_pool):
    """A second, empty store on the same pool: what another host would have."""
    yield from scratch_store(zfs_pool, "o")


def make_base(store, tmp_path):
    rootfs = make_rootfs(str(tmp_path / "base-rootfs"), {
        "etc/passwd": PASSWD, "etc/group": GROUP, "etc/motd": "base\n", "etc/motd-old": "going away\n",
        "srv/.keep": "", "www/.keep": ""}, busybox=True)
    # Times well in the past: a change a build makes always shows, however fast the test runs
    # (zfs-fuse keeps times in whole seconds).
    for directory, names, files in os.walk(rootfs):
        for name in names + files + [""]:
            os.utime(os.path.join(directory, name), (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    spec = base.BaseSpec("example.com/base", {"rootfs": rootfs}, labels={"version": "1", "os": "linux"})
    return base.make(store, spec)[0]


def runtime_spec():
    return build.BuildSpec("example.com/runtime", {"name": "example.com/base"}, network="none", labels={"version": "1"},
                           steps=[{"copy": {"content": "runtime library\n", "dest": "/opt/runtime/lib.txt"}},
                                  {"run": "mkdir -p /opt/runtime/bin && echo tool > /opt/runtime/bin/tool"}],
                           app={"environment": {"RUNTIME": "/opt/runtime"}, "user": "www"})


def app_spec(tmp_path):
    source = tmp_path / "app.conf"
    source.write_text("listen 8080\n")
    return build.BuildSpec("example.com/app", {"name": "example.com/runtime"}, network="none", labels={"version": "2"},
                           steps=[{"run": ["/bin/busybox", "rm", "/etc/motd-old"]},
                                  {"copy": {"src": str(source), "dest": "/srv/app.conf", "mode": "0640",
                                            "owner": "www", "group": "www"}},
                                  {"run": "echo built > /srv/app.txt", "environment": {"X": "1"}}],
                           app={"exec": ["/bin/busybox", "httpd", "-f"], "working_directory": "/srv",
                                "ports": [{"name": "http", "port": 8080}]},
                           annotations={"authors": "ops@example.com"})


def layer_members(store, image):
    """Names in the image's ACI under rootfs/ and its manifest as stored."""
    with tarfile.open(store.path("images", image.key, "aci")) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.name.startswith("rootfs/"))
    return names


def tree(rootfs):
    """Everything an image's rendered tree is made of, file contents included."""
    entries = {}
    for path, st, target in aci.tree_entries(rootfs):
        content = None
        if os.path.isfile(os.path.join(rootfs, path)) and not os.path.islink(os.path.join(rootfs, path)):
            with open(os.path.join(rootfs, path), "rb") as f:
                content = f.read()
        entries[path] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns // 10 ** 9, target, content)
    return entries


def leftovers(store):
    pods = store.list_objects("pods")
    unsealed = [n for n, p in store.list_objects("images").items() if p.get("jetpack:state") != "sealed"]
    return sorted(pods) + os.listdir(store.path("pods")) + unsealed


def test_three_level_chain_holds_only_each_level_changes_and_reimports_with_the_same_ids(store, other_store, tmp_path):
    base_image = make_base(store, tmp_path)
    runtime, changed = build.build(store, runtime_spec())[:2]
    assert changed
    app, changed, steps = build.build(store, app_spec(tmp_path))
    assert changed and [s["step"] for s in steps] == [0, 1, 2]

    # Each child is a ZFS clone of its parent's sealed snapshot and depends on it by ID.
    assert store.zfs.get(runtime.dataset, ["origin"])["origin"] == base_image.dataset + "@seal"
    assert store.zfs.get(app.dataset, ["origin"])["origin"] == runtime.dataset + "@seal"
    assert app.manifest["dependencies"] == [{"imageName": "example.com/runtime", "imageID": runtime.id,
                                             "labels": [{"name": "os", "value": "linux"},
                                                        {"name": "version", "value": "1"}]}]

    # Each ACI holds only what its own steps changed (and the directories leading there).
    assert layer_members(store, runtime) == [
        "rootfs/opt", "rootfs/opt/runtime", "rootfs/opt/runtime/bin", "rootfs/opt/runtime/bin/tool",
        "rootfs/opt/runtime/lib.txt"]
    assert layer_members(store, app) == ["rootfs/etc", "rootfs/srv", "rootfs/srv/app.conf", "rootfs/srv/app.txt"]
    assert "pathWhitelist" not in runtime.manifest
    whitelist = app.manifest["pathWhitelist"]
    assert "/etc/motd-old" not in whitelist and {"/etc/motd", "/bin/busybox", "/srv/app.txt"} <= set(whitelist)

    # The rendered app: the deletion, the copy with its owner and mode, the run step's file, the app section.
    assert not os.path.lexists(os.path.join(app.rootfs, "etc/motd-old"))
    conf = os.stat(os.path.join(app.rootfs, "srv/app.conf"))
    assert (conf.st_uid, conf.st_gid, conf.st_mode & 0o7777) == (80, 80, 0o640)
    with open(os.path.join(app.rootfs, "opt/runtime/lib.txt")) as f:
        assert f.read() == "runtime library\n"
    assert app.manifest["app"]["environment"] == [{"name": "RUNTIME", "value": "/opt/runtime"}]
    assert app.manifest["app"]["user"] == "www" and app.manifest["app"]["workingDirectory"] == "/srv"
    assert app.labels == {"os": "linux", "version": "2"}

    # Export as built, import on a fresh store in order: the same IDs and the same trees.
    for image in (base_image, runtime, app):
        path = str(tmp_path / (image.name.replace("/", "_") + ".aci"))
        images.export_image(store, image, path)
        again = images.import_image(other_store, images.ImportRequest(source=path))[0]
        assert again.id == image.id
        assert tree(again.rootfs) == tree(image.rootfs)
        assert again.manifest == image.manifest


def test_a_second_build_is_a_cache_hit_that_runs_nothing(store, tmp_path):
    make_base(store, tmp_path)
    first, changed, _steps = build.build(store, runtime_spec())
    writes = store.zfs.generation
    again, changed_again, steps = build.build(store, runtime_spec())
    assert changed and not changed_again and steps == []
    assert again.id == first.id
    assert store.zfs.generation == writes  # not one zfs command that changes anything
    assert os.listdir(store.path("pods")) == []
    # Any input that differs is another build.
    other = runtime_spec()
    other.steps[0]["copy"]["content"] = "another library\n"
    assert build.plan(store, other).key != build.plan(store, runtime_spec()).key


def test_a_failing_step_leaves_nothing_and_shows_its_output(store, tmp_path):
    make_base(store, tmp_path)
    before = [i.id for i in images.list_images(store)]
    spec = build.BuildSpec("example.com/broken", {"name": "example.com/base"}, network="none", steps=[
        {"copy": {"content": "x\n", "dest": "/etc/half-made"}},
        {"run": "echo about to fail >&2; exit 3"},
        {"run": "echo never runs"}])
    with pytest.raises(build.BuildError) as failed:
        build.build(store, spec)
    assert failed.value.step == 1 and failed.value.rc == 3
    assert "about to fail" in str(failed.value) and "exit status 3" in str(failed.value)
    assert leftovers(store) == []
    assert [i.id for i in images.list_images(store)] == before
    assert not os.listdir(store.tmp_dir())


def test_a_build_pod_left_running_by_a_crash_is_stopped_and_removed_by_the_next_build(store, tmp_path):
    parent = make_base(store, tmp_path)
    engine = engines.for_host()
    with store.lock():  # what a build had made when its process died: a running pod, no image
        crashed = build.BuildPod(store, parent, "none", engine)
        crashed.create()
        crashed.run_step(0, build.load_step({"run": "echo half > /etc/half"}, 0))
    assert engine.running(crashed.record, crashed.context)
    assert os.listdir(store.path("pods")) == [crashed.key] and store.list_objects("pods")
    assert build.build(store, runtime_spec())[1]
    assert not engine.running(crashed.record, crashed.context)
    assert leftovers(store) == []


def test_a_copy_replaces_a_symlink_at_its_destination_instead_of_following_it(store, tmp_path):
    base_image = make_base(store, tmp_path)
    link = os.path.join(str(tmp_path), "base-rootfs", "etc", "evil")
    os.symlink("/etc/passwd", link)
    spec = base.BaseSpec("example.com/linked", {"rootfs": os.path.dirname(os.path.dirname(link))},
                         labels={"os": "linux"})
    linked = base.make(store, spec)[0]
    assert linked.id != base_image.id
    child = build.build(store, build.BuildSpec("example.com/child", {"id": linked.id}, network="none", steps=[
        {"copy": {"content": "mine\n", "dest": "/etc/evil"}}]))[0]
    with open(os.path.join(child.rootfs, "etc/passwd")) as f:
        assert f.read() == PASSWD
    assert not os.path.islink(os.path.join(child.rootfs, "etc/evil"))


def test_bad_specs_are_refused_before_anything_is_made(store, tmp_path):
    make_base(store, tmp_path)
    for steps, words in (([{"run": ""}], "give a command"),
                         ([{"copy": {"content": "x", "dest": "relative"}}], "absolute path"),
                         ([{"copy": {"content": "x", "src": "/etc/hostname", "dest": "/x"}}], "exactly one"),
                         ([{"copy": {"content": "x", "dest": "/x", "owner": "nobody-here"}}], "nobody-here")):
        with pytest.raises(InvalidInput) as refused:
            build.build(store, build.BuildSpec("example.com/bad", {"name": "example.com/base"}, steps=steps,
                                               network="none"))
        assert words in str(refused.value)
        assert leftovers(store) == []
    with pytest.raises(Exception) as missing:
        build.build(store, build.BuildSpec("example.com/bad", {"name": "example.com/nothing"}, steps=[]))
    assert "import or build it first" in str(missing.value)


def test_a_base_from_a_rootfs_tarball_equals_the_one_from_its_directory(store, other_store, tmp_path):
    directory = make_rootfs(str(tmp_path / "tree"), {"etc/motd": "hello\n", "usr/bin/tool": "#!/bin/sh\n"})
    os.chmod(os.path.join(directory, "usr/bin/tool"), 0o755)
    tarball = str(tmp_path / "tree.tar.xz")
    import subprocess
    subprocess.run(["tar", "-C", directory, "--numeric-owner", "-cJf", tarball, "."], check=True)
    from_dir, changed = base.make(store, base.BaseSpec("example.com/tree", {"rootfs": directory}))
    from_tar = base.make(other_store, base.BaseSpec("example.com/tree", {"rootfs": tarball}))[0]
    assert changed and tree(from_tar.rootfs) == tree(from_dir.rootfs)
    again, changed_again = base.make(store, base.BaseSpec("example.com/tree", {"rootfs": directory}))
    assert not changed_again and again.id == from_dir.id
