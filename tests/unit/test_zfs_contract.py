"""FreeBSD contract for zfs.py: the argv it sends, the output it parses, the errors it raises.

argv expectations cite the manual page (FreeBSD 13/14 ship OpenZFS's zfs-*(8) pages) and
shared/reference/freebsd/commands.md section 8. Output and error texts are the real
recordings in shared/reference/freebsd/outputs/, read as stored (never edited); the
test ids carry each recording's `source:`.
"""
import inspect

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import zfs as Z
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    AlreadyExists, Busy, CommandError, InUse, InvalidInput, NotFound)
from tests.helpers.samples import sample


def body_lines(name, first, last):
    """Lines first..last (1-based, inclusive) of a recording's body: the ones zfs printed."""
    return "\n".join(sample(name)[1].split("\n")[first - 1:last]) + "\n"


def sample_param(name, *args):
    """A parameter whose id names the recording, the body lines used (if any) and its source."""
    lines = " lines %d-%d" % args[0] if args and isinstance(args[0], tuple) else ""
    return pytest.param(name, *args, id="%s%s [%s]" % (name, lines, sample(name)[0]["source"][0]))


# --- argv --------------------------------------------------------------------------------

ARGV = [
    pytest.param(Z.argv_create("tank/j/a", {"jetpack:kind": "image", "mountpoint": "/j/a"}),
                 ["zfs", "create", "-o", "jetpack:kind=image", "-o", "mountpoint=/j/a", "tank/j/a"],
                 id="zfs-create(8) -o property=value"),
    pytest.param(Z.argv_create("tank/j/a", parents=True, nomount=True),
                 ["zfs", "create", "-p", "-u", "tank/j/a"], id="zfs-create(8) -p -u"),
    pytest.param(Z.argv_clone("tank/i/x@sealed", "tank/p/y", {"jetpack:kind": "pod"}),
                 ["zfs", "clone", "-o", "jetpack:kind=pod", "tank/i/x@sealed", "tank/p/y"],
                 id="zfs-clone(8) -o property=value snapshot filesystem"),
    pytest.param(Z.argv_snapshot("tank/i/x@sealed"), ["zfs", "snapshot", "tank/i/x@sealed"],
                 id="zfs-snapshot(8) dataset@snapname"),
    pytest.param(Z.argv_destroy("tank/p/y"), ["zfs", "destroy", "tank/p/y"],
                 id="zfs-destroy(8) plain"),
    pytest.param(Z.argv_destroy("tank/p/y", recursive=True), ["zfs", "destroy", "-r", "tank/p/y"],
                 id="zfs-destroy(8) -r (children and snapshots, never -R)"),
    pytest.param(Z.argv_rename("tank/p/a", "tank/p/b"), ["zfs", "rename", "tank/p/a", "tank/p/b"],
                 id="zfs-rename(8) old new"),
    pytest.param(Z.argv_set("tank/p/y", {"jetpack:state": "sealed", "readonly": "on"}),
                 ["zfs", "set", "jetpack:state=sealed", "readonly=on", "tank/p/y"],
                 id="zfs-set(8) property=value... dataset"),
    pytest.param(Z.argv_inherit("tank/p/y", "jetpack:state"),
                 ["zfs", "inherit", "jetpack:state", "tank/p/y"],
                 id="zfs-inherit(8) property dataset (zfsprops(7) User Properties: removes it)"),
    pytest.param(Z.argv_get("tank/p/y", ["origin", "jetpack:id"]),
                 ["zfs", "get", "-H", "-p", "-o", "property,value", "origin,jetpack:id", "tank/p/y"],
                 id="zfs-get(8) -H -p -o property,value"),
    pytest.param(Z.argv_get("tank/p", ["type"], ("name", "property", "value"), depth=1),
                 ["zfs", "get", "-H", "-p", "-d", "1", "-o", "name,property,value", "type", "tank/p"],
                 id="zfs-get(8) -d depth"),
    pytest.param(Z.argv_get("tank/p", "type", ("name", "property", "value"), recursive=True),
                 ["zfs", "get", "-H", "-p", "-r", "-o", "name,property,value", "type", "tank/p"],
                 id="zfs-get(8) -r"),
    pytest.param(Z.argv_list("tank/p", ["name", "origin", "used"], "filesystem", depth=1),
                 ["zfs", "list", "-H", "-p", "-o", "name,origin,used", "-t", "filesystem",
                  "-d", "1", "tank/p"], id="zfs-list(8) -H -p -o -t -d"),
    pytest.param(Z.argv_exists("tank/p@s"), ["zfs", "list", "-H", "-o", "name", "-t", "all", "tank/p@s"],
                 id="zfs-list(8) -H -o name (commands.md 8: cheap existence probe)"),
    pytest.param(Z.argv_mount("tank/p/y"), ["zfs", "mount", "tank/p/y"], id="zfs-mount(8)"),
    pytest.param(Z.argv_unmount("tank/p/y"), ["zfs", "unmount", "tank/p/y"], id="zfs-unmount(8)"),
    pytest.param(Z.argv_zpool_list("tank"), ["zpool", "list", "-H", "-o", "name", "tank"],
                 id="zpool-list(8) -H -o name pool"),
    pytest.param(Z.argv_zpool_create("jetpack", "/var/lib/jetpack/pool.img"),
                 ["zpool", "create", "-m", "none", "jetpack", "/var/lib/jetpack/pool.img"],
                 id="zpool-create(8) -m mountpoint pool vdev"),
    pytest.param(Z.argv_zpool_import("jetpack", "/var/lib/jetpack"),
                 ["zpool", "import", "-d", "/var/lib/jetpack", "jetpack"], id="zpool-import(8) -d dir pool"),
    pytest.param(Z.argv_zpool_destroy("jetpack", force=True), ["zpool", "destroy", "-f", "jetpack"],
                 id="zpool-destroy(8) -f"),
]


@pytest.mark.parametrize("argv, expected", ARGV)
def test_argv(argv, expected):
    assert argv == expected


def test_destroy_can_never_send_capital_r():
    # zfs-destroy(8) -R also destroys clones outside the tree (commands.md 8): not reachable.
    assert list(inspect.signature(Z.argv_destroy).parameters) == ["name", "recursive"]
    for recursive in (False, True, "-R", 1):
        assert "-R" not in Z.argv_destroy("tank/x", recursive)
    with pytest.raises(InvalidInput):
        Z.argv_destroy("-R")  # a name never turns into an option
    assert '"-R"' not in inspect.getsource(Z)


@pytest.mark.parametrize("call", [
    lambda: Z.argv_create("-o"), lambda: Z.argv_create(""), lambda: Z.argv_rename("a", "b\nc"),
    lambda: Z.argv_snapshot("tank/no-at"), lambda: Z.argv_clone("tank/a", "tank/b"),
    lambda: Z.argv_set("tank/a", {}), lambda: Z.argv_set("tank/a", {"-R": "1"}),
    lambda: Z.argv_set("tank/a", {"a:b": "x\ty"}), lambda: Z.argv_set("tank/a", {"a:b": True}),
    lambda: Z.argv_get("tank/a", ["a,b"]),
])
def test_argv_refuses_bad_input(call):
    with pytest.raises(InvalidInput):
        call()


# --- a scripted zfs ------------------------------------------------------------------------

OPENZFS_PROBES = {  # zfs_main.c: each probe stops at a usage error after getopt
    "parsable_list": (0, ""), "multi_set": (2, "missing dataset name(s)\nusage: ...\n"),
    "create_nomount": (2, "missing filesystem argument\nusage: ...\n"),
    "diff": (2, "must provide at least one snapshot name\nusage: ...\n"),
    "rename_mounted": (2, "missing source dataset argument\nusage: ...\n"),
}
ZFS_FUSE_PROBES = {  # as printed by zfs-fuse 0.7.0 on this project's Debian machines
    "parsable_list": (2, "invalid option 'p'\nusage: ...\n"),
    "multi_set": (1, "cannot open 'jetpack:probe=2': invalid dataset name\n"),
    "create_nomount": (2, "invalid option 'u'\nusage: ...\n"),
    "diff": (2, "unrecognized command 'diff'\nusage: zfs command args ...\n"),
    "rename_mounted": (2, "invalid option 'u'\nusage: ...\n"),
}


class FakeZfs:
    """run(argv): probes answered by flavour, then scripted replies in order; records calls."""

    def __init__(self, replies=(), probes=None, mounted=None):
        self.probes = {tuple(Z.PROBES[cap]): reply for cap, reply in (probes or OPENZFS_PROBES).items()}
        self.replies = list(replies)
        self.calls = []
        self.slept = []
        self.mounted = mounted  # how the "mounted" read before an unmount answers
        self.reads = []

    def __call__(self, argv):
        if tuple(argv) in self.probes:
            rc, err = self.probes[tuple(argv)]
            return rc, "", err
        if self.mounted and argv[:2] == ["zfs", "get"] and "type,mounted" in argv:
            self.reads.append(list(argv))
            name = argv[-1]
            return 0, "%s\ttype\tfilesystem\n%s\tmounted\t%s\n" % (name, name, self.mounted), ""
        self.calls.append(list(argv))
        reply = self.replies.pop(0) if self.replies else (0, "", "")
        return reply if len(reply) == 3 else (reply[0], "", reply[1])

    def zfs(self):
        return Z.Zfs(run=self, sleep=self.slept.append)


def test_capabilities_are_probed_once_lazily_and_only_with_usage_errors():
    seen = []
    fake = FakeZfs()

    def run(argv):
        seen.append(argv)
        return fake(argv)

    zfs = Z.Zfs(run=run)
    assert seen == []  # lazy
    assert zfs.caps == Z.Capabilities(True, True, True, True, True)
    assert zfs.caps is zfs.caps
    assert seen == list(Z.PROBES.values())  # once, and nothing else
    for argv in seen:  # no probe names a dataset or pool it could change
        assert not any("/" in a for a in argv)


def test_capabilities_of_old_zfs():
    zfs = FakeZfs(probes=ZFS_FUSE_PROBES).zfs()
    assert zfs.caps == Z.Capabilities(parsable_list=False, multi_set=False, create_nomount=False,
                                      diff=False, rename_mounted=False)


def test_custom_tool_paths_are_used():
    fake = FakeZfs()
    zfs = Z.Zfs(run=fake, zfs="/sbin/zfs", zpool="/sbin/zpool")
    zfs.destroy("tank/a")
    zfs.pool_exists("tank")
    assert [c[0] for c in fake.calls] == ["/sbin/zfs", "/sbin/zpool"]


def test_set_many_properties_in_one_call_where_supported():
    fake = FakeZfs()
    fake.zfs().set("tank/a", {"a:b": "1", "c:d": "2"})
    assert fake.calls == [["zfs", "set", "a:b=1", "c:d=2", "tank/a"]]


def test_set_one_property_per_call_on_old_zfs():
    fake = FakeZfs(probes=ZFS_FUSE_PROBES)
    fake.zfs().set("tank/a", {"a:b": "1", "c:d": 2})
    assert fake.calls == [["zfs", "set", "a:b=1", "tank/a"], ["zfs", "set", "c:d=2", "tank/a"]]


def test_rename_is_one_call_where_mounted_renames_work():
    fake = FakeZfs()
    fake.zfs().rename("tank/p/a", "tank/p/b")
    assert fake.calls == [["zfs", "rename", "tank/p/a", "tank/p/b"]]


def test_rename_unmounts_and_remounts_on_old_zfs():
    tree = ("tank/p/a\ttype\tfilesystem\ntank/p/a\tmounted\tyes\n"
            "tank/p/a@s\ttype\tsnapshot\ntank/p/a@s\tmounted\t-\n"
            "tank/p/a/c\ttype\tfilesystem\ntank/p/a/c\tmounted\tyes\n"
            "tank/p/a/d\ttype\tfilesystem\ntank/p/a/d\tmounted\tno\n")
    fake = FakeZfs([(0, tree, ""), (0, ""), (1, "cannot unmount 'tank/p/a': not currently mounted\n")],
                   probes=ZFS_FUSE_PROBES)
    fake.zfs().rename("tank/p/a", "tank/p/b")
    assert fake.calls == [
        ["zfs", "get", "-H", "-p", "-r", "-o", "name,property,value", "type,mounted", "tank/p/a"],
        ["zfs", "unmount", "tank/p/a/c"],
        ["zfs", "unmount", "tank/p/a"],
        ["zfs", "rename", "tank/p/a", "tank/p/b"],
        ["zfs", "mount", "tank/p/b"],
        ["zfs", "mount", "tank/p/b/c"],
    ]


def test_rename_remounts_the_old_name_when_the_rename_fails():
    tree = "tank/p/a\ttype\tfilesystem\ntank/p/a\tmounted\tyes\n"
    exists = (1, "cannot rename to 'tank/p/b': dataset already exists\n")
    fake = FakeZfs([(0, tree, ""), (0, ""), exists], probes=ZFS_FUSE_PROBES)
    with pytest.raises(AlreadyExists):
        fake.zfs().rename("tank/p/a", "tank/p/b")
    assert fake.calls[-1] == ["zfs", "mount", "tank/p/a"]


def test_get_tree_reads_with_zfs_get_and_probes_nothing():
    # zfs-get(8): -H -p -d N -o name,property,value works on OpenZFS and zfs-fuse alike, so a read
    # costs exactly one command, even where `zfs list -p` exists.
    out = "tank/p\ttype\tfilesystem\ntank/p\torigin\t-\ntank/p/a\ttype\tfilesystem\ntank/p/a\torigin\ttank/i/x@seal\n"
    fake = FakeZfs([(0, out, "")])
    tree = fake.zfs().get_tree("tank/p", ["origin"])
    assert fake.calls == [["zfs", "get", "-H", "-p", "-d", "1", "-o", "name,property,value",
                           "type,origin", "tank/p"]]
    assert tree == {"tank/p": {"origin": "-"}, "tank/p/a": {"origin": "tank/i/x@seal"}}


def test_get_tree_on_old_zfs_uses_get_and_filters_types():
    out = ("tank/p\ttype\tfilesystem\ntank/p\tjetpack:id\t-\n"
           "tank/p@s\ttype\tsnapshot\ntank/p@s\tjetpack:id\t-\n"
           "tank/p/a\ttype\tfilesystem\ntank/p/a\tjetpack:id\tsha512-x\n")
    fake = FakeZfs([(0, out, "")] * 2, probes=ZFS_FUSE_PROBES)
    zfs = fake.zfs()
    assert zfs.get_tree("tank/p", ["jetpack:id"]) == {"tank/p": {"jetpack:id": "-"},
                                                      "tank/p/a": {"jetpack:id": "sha512-x"}}
    assert fake.calls[0] == ["zfs", "get", "-H", "-p", "-d", "1", "-o", "name,property,value",
                             "type,jetpack:id", "tank/p"]
    assert list(zfs.get_tree("tank/p", ["jetpack:id"], types="snapshot")) == ["tank/p@s"]


def test_get_keeps_dash_and_empty_values():
    # MISSING.md: zfs get -H -p is four TAB columns; an unset user property reads '-', a value
    # can be empty. Source-derived format (no recording), written here, not a fixture.
    fake = FakeZfs([(0, "origin\t-\nmlslabel\t\njetpack:x\ta\tb\n", "")])
    assert fake.zfs().get("tank/a", ["origin", "mlslabel", "jetpack:x"]) == {
        "origin": "-", "mlslabel": "", "jetpack:x": "a\tb"}


def test_unexpected_output_is_a_command_error():
    fake = FakeZfs([(0, "origin -\n", "")])
    with pytest.raises(CommandError, match="unexpected output"):
        fake.zfs().get("tank/a", ["origin"])


# --- recorded outputs ----------------------------------------------------------------------

LIST_COLUMNS = ("name", "avail", "used", "usedsnap", "usedds")  # the recordings' -o list


@pytest.mark.parametrize("name, rows, first", [
    sample_param("zfs-list-H-p-1", 14, {"name": "zroot", "avail": "53069045760",
                                        "used": "11959443456", "usedsnap": "-", "usedds": "-"}),
    sample_param("zfs-list-H-p-2", 4, {"name": "zata", "avail": "10741741326336",
                                       "used": "8564135526400", "usedsnap": "0", "usedds": "90112"}),
])
def test_parse_zfs_list_recordings(name, rows, first):
    # telegraf test fixtures: tab-exact (kind: test fixture).
    header, body = sample(name)
    assert header["command"] == ["zfs list -Hp -o name,avail,used,usedsnap,usedds"]
    table = Z.parse_table(body, LIST_COLUMNS)
    assert len(table) == rows and table[0] == first
    for row in table:  # '-' accepted in any numeric column
        assert all(Z.parse_number(row[c]) is None or Z.parse_number(row[c]) >= 0
                   for c in LIST_COLUMNS[1:])


def test_parse_zfs_list_recording_as_a_table():
    # zfs-list(8) -H: one TAB between columns, '-' allowed in numeric ones.
    body = sample("zfs-list-H-p-2")[1]
    rows = Z.parse_table(body, ("name", "avail", "used", "usedsnap", "usedds"))
    assert {r["name"]: r["usedds"] for r in rows}["zata/storage"] == "4954945380352"
    assert [r["name"] for r in rows] == ["zata", "zata/home", "zata/import", "zata/storage"]


POOL_COLUMNS = ("name", "health", "size", "alloc", "free", "fragmentation", "capacity", "dedupratio")


@pytest.mark.parametrize("name, expected", [
    sample_param("zpool-list-H-p-1", [("zroot", "ONLINE", 67108864000, 4, 17, 1.0)]),
    sample_param("zpool-list-H-p-2", [("freenas-boot", "ONLINE", 30601641984, None, 6, 1.0),
                                      ("red1", "ONLINE", 8933531975680, 8, 12, 1.83),
                                      ("temp1", "ONLINE", 2989297238016, 38, 54, 1.28),
                                      ("temp2", "ONLINE", 2989297238016, 12, 20, 1.0)]),
    sample_param("zpool-list-H-p-3", [("temp2", "UNAVAIL", None, None, None, None)]),
])
def test_parse_zpool_list_recordings(name, expected):
    # telegraf test fixtures, tab-exact: OpenZFS bare 4/1.00, legacy 8%/1.83x, '-' when UNAVAIL.
    rows = Z.parse_table(sample(name)[1], POOL_COLUMNS)
    got = [(r["name"], r["health"], Z.parse_number(r["size"]), Z.parse_number(r["fragmentation"]),
            Z.parse_number(r["capacity"]), Z.parse_number(r["dedupratio"])) for r in rows]
    assert got == expected


@pytest.mark.parametrize("name", [sample_param("zfs-get-H-1")])
def test_parse_zfs_get_recording_not_tab_exact(name):
    header, body = sample(name)
    # The note says the issue rendering turned the TABs into runs of spaces: NOT byte-exact.
    assert any("NOT byte-exact" in n for n in header["note"])
    assert "\t" not in body
    with pytest.raises(ValueError):  # a strict -H parser must not guess columns from spaces
        Z.parse_table(body, ("name", "property", "value", "source"))
    # Rebuild the TABs in the test only (no value here has a space) to check the content.
    tabbed = "".join("\t".join(line.split()) + "\n" for line in body.splitlines())
    rows = Z.parse_table(tabbed, ("name", "property", "value", "source"))
    assert [(r["property"], r["value"], r["source"]) for r in rows] == [
        ("quota", "none", "local"), ("refquota", "none", "default"),
        ("org.freebsd.iocage:allow_quotas", "0", "local")]  # a module:property user property
    two = "".join("%s\t%s\n" % (r["property"], r["value"]) for r in rows)
    fake = FakeZfs([(0, two, "")])
    props = ["quota", "refquota", "org.freebsd.iocage:allow_quotas"]
    assert fake.zfs().get(rows[0]["name"], props)["org.freebsd.iocage:allow_quotas"] == "0"


# --- errors --------------------------------------------------------------------------------

def test_parse_number():
    assert [Z.parse_number(v) for v in ("-", "", "0", "4", "1.00", "8%", "1.83x")] == \
        [None, None, 0, 4, 1.0, 8, 1.83]


@pytest.mark.parametrize("name, lines, call, error, users", [
    sample_param("zfs-destroy-busy-1", (4, 4), lambda z: z.destroy("zroot/jails/alors"), Busy, None),
    sample_param("zfs-destroy-busy-2", (2, 2), lambda z: z.destroy("tank/CONTAINER"), Busy, None),
    sample_param("zfs-destroy-children-1", (2, 4), lambda z: z.destroy("MYNEWdataset"), InUse,
                 ["MYNEWdataset@MYmark"]),
    sample_param("zfs-destroy-children-1", (7, 9),
                 lambda z: z.destroy("MYNEWdataset", recursive=True), InUse, ["MYdataset"]),
    sample_param("zfs-destroy-clones-1", (2, 10),
                 lambda z: z.destroy("zroot/iocage/jails/706b1d3f-7f1e-11e5-8812-3417ebb13845/root"),
                 InUse, ["zroot/iocage/jails/%s/root" % u for u in (
                     "6d7e1cd1-7f1f-11e5-8812-3417ebb13845", "ffad8b3d-7f20-11e5-8812-3417ebb13845",
                     "379f0f71-7f21-11e5-8812-3417ebb13845", "194c0c01-7f21-11e5-8812-3417ebb13845",
                     "2ce755d6-7f21-11e5-8812-3417ebb13845", "22707a33-7f21-11e5-8812-3417ebb13845",
                     "0de329c3-7f21-11e5-8812-3417ebb13845")]),
    sample_param("zfs-destroy-clones-1", (11, 11),
                 lambda z: z.create("zroot/iocage/jails/706b1d3f-7f1e-11e5-8812-3417ebb13845/root"),
                 AlreadyExists, None),
    sample_param("zfs-destroy-clones-1", (12, 12), lambda z: z.get("zroot/iocage/base/salted", "origin"),
                 NotFound, None),
    sample_param("zfs-snapshot-exists-1", (2, 2),
                 lambda z: z.snapshot("data01/jails/ingress01@mkjail-202312171742"), AlreadyExists, None),
    sample_param("zfs-create-exists-1", (1, 1), lambda z: z.create("zroot/bastille"), AlreadyExists, None),
    sample_param("zfs-open-missing-1", (1, 1),
                 lambda z: z.set("iocage/jails/7746ae30-d5a6-46fe-8e85-418817639e82/data",
                                 {"recordsize": "16K"}), NotFound, None),
])
def test_error_classification(name, lines, call, error, users):
    stderr = body_lines(name, *lines)
    fake = FakeZfs([(1, stderr)] * 10, mounted="no")  # zfs exits 1 on these (commands.md, rules)
    with pytest.raises(error) as info:
        call(fake.zfs())
    err = info.value
    assert isinstance(err, CommandError)  # and carries the command
    assert err.argv == fake.calls[-1] and err.rc == 1 and err.stderr == stderr
    assert "command: zfs " in str(err)
    assert all("-R" not in argv for argv in fake.calls)
    if users is not None:
        assert err.users == users and err.details()["users"] == users
        assert all(u in str(err) for u in users)
    if error is Busy:  # destroy: one try, then (after unmounting, see below) the retries
        assert "retry" in str(err) and len(fake.calls) == len(Z.DESTROY_BUSY_DELAYS) + 2
    else:
        assert len(fake.calls) == 1  # only Busy is retried


def test_other_failures_are_command_errors():
    fake = FakeZfs([(2, "bad property list: invalid property 'bogus'\nusage: ...\n")])
    with pytest.raises(CommandError) as info:
        fake.zfs().get("tank/a", "bogus")
    assert info.value.__class__ is CommandError and info.value.rc == 2
    assert "invalid property 'bogus'" in str(info.value) and "usage" not in str(info.value)
    assert "usage:" in info.value.stderr  # the whole text stays on the error


def test_exists_and_pool_exists():
    fake = FakeZfs([(0, "tank/a\n", ""), (1, body_lines("zfs-open-missing-1", 1, 1)),
                    (0, "tank\n", ""), (1, "cannot open 'nopool': no such pool\n")])
    zfs = fake.zfs()
    assert zfs.exists("tank/a") is True and zfs.exists("tank/nope") is False
    assert zfs.pool_exists("tank") is True and zfs.pool_exists("nopool") is False


def test_mount_and_unmount_are_idempotent():
    fake = FakeZfs([(1, "cannot mount 'tank/a': filesystem already mounted\n"),
                    (1, "cannot unmount 'tank/a': not currently mounted\n")])
    zfs = fake.zfs()
    zfs.mount("tank/a")
    zfs.unmount("tank/a")


# --- busy retry ----------------------------------------------------------------------------

BUSY = (1, "cannot destroy 'tank/a': dataset is busy\n")


@pytest.mark.parametrize("call", [
    pytest.param(lambda z: z.rename("tank/a", "tank/b"), id="rename"),
    pytest.param(lambda z: z.unmount("tank/a"), id="unmount"),
    pytest.param(lambda z: z.clone("tank/a@s", "tank/b"), id="clone"),
    pytest.param(lambda z: z.snapshot("tank/a@s"), id="snapshot"),
])
def test_busy_then_ok_is_retried(call):
    fake = FakeZfs([BUSY, BUSY, (0, "")])
    call(fake.zfs())
    assert len(fake.calls) == 3 and fake.calls[0] == fake.calls[2]
    assert fake.slept == list(Z.BUSY_DELAYS[:2])


def test_busy_destroy_unmounts_then_retries():
    # zfs-fuse answers "dataset is busy" to destroying a recently used mount while a plain
    # unmount (zfs-unmount(8), never -f) succeeds: destroy, read "mounted", unmount, destroy again.
    fake = FakeZfs([BUSY, (0, ""), BUSY, (0, "")], mounted="yes")
    fake.zfs().destroy("tank/a", recursive=True)
    assert fake.reads == [["zfs", "get", "-H", "-p", "-r", "-o", "name,property,value", "type,mounted", "tank/a"]]
    assert fake.calls == [["zfs", "destroy", "-r", "tank/a"], ["zfs", "unmount", "tank/a"],
                          ["zfs", "destroy", "-r", "tank/a"], ["zfs", "destroy", "-r", "tank/a"]]
    assert fake.slept == [Z.BUSY_DELAYS[0]]


def test_busy_destroy_gives_up_after_about_ten_seconds():
    fake = FakeZfs([BUSY] * 20, mounted="no")
    with pytest.raises(Busy):
        fake.zfs().destroy("tank/a")
    assert 9 <= sum(fake.slept) <= 11
    assert fake.slept == sorted(fake.slept)  # back-off


def test_busy_elsewhere_gives_up_after_about_two_seconds():
    fake = FakeZfs([BUSY] * 20)
    with pytest.raises(Busy):
        fake.zfs().unmount("tank/a")
    assert 1.5 <= sum(fake.slept) <= 2.5


@pytest.mark.parametrize("call", [
    pytest.param(lambda z: z.create("tank/a"), id="create"),
    pytest.param(lambda z: z.set("tank/a", {"a:b": "1"}), id="set"),
])
def test_busy_is_not_retried_elsewhere(call):
    fake = FakeZfs([BUSY, (0, "")])
    with pytest.raises(Busy):
        call(fake.zfs())
    assert len(fake.calls) == 1
