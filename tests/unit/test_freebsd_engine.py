"""FreeBSD engine contract (engines/freebsd.py), tested without FreeBSD.

- generated jail.conf(5)/fstab(5) files are compared with golden files under golden/freebsd/,
  and each golden file is parsed independently: jail.conf with the PyPI `jailconf` parser, fstab
  with a six-field splitter; the expected parameters are written out by hand below;
- argv expectations cite jail(8)/jls(8) and shared/reference/freebsd/commands.md;
- parsers and error classification are fed the real recordings of
  shared/reference/freebsd/outputs/ (read as stored, split on the first '# ---' line; the
  test ids carry each recording's `source:` and the body lines used). Texts no one recorded are
  the source-derived formats of outputs/MISSING.md, and their ids say so.
"""
import ctypes
import errno
import os
import platform
import re
import stat
import subprocess
import sys
from pathlib import Path

import jailconf
import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import Mount, mount_plan
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import network
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import freebsd as F
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.engines import freebsd_network as N
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import (
    AlreadyExists, CommandError, InvalidInput, JetpackError, NotFound)
from tests.helpers.samples import sample

GOLDEN = Path(__file__).parent / "golden" / "freebsd"


# --- records ------------------------------------------------------------------------------------

def pod_record(uuid, name, apps, volumes=(), hostname=None, jail=None, stop_timeout=10, base="/var/jetpack"):
    pod_dir = "%s/pods/%s" % (base, uuid.replace("-", ""))
    root = pod_dir + "/rootfs"
    return {
        "uuid": uuid, "name": name, "hostname": hostname or name, "engine": "freebsd",
        "pod_dir": pod_dir, "root": root, "stop_timeout": stop_timeout,
        "restart": {"policy": "no", "max_retries": 3}, "jail": dict(jail or {}),
        "apps": [dict(app, rootfs="%s/app/%s/rootfs" % (root, app["name"])) for app in apps],
        "volumes": [dict(v) for v in volumes],
    }


def app(name, os_="freebsd", mounts=()):
    return {"name": name, "image_id": "sha512-" + "0" * 128, "image_name": "example.com/" + name,
            "os": os_, "exec": ["/bin/" + name], "user": "0", "group": "0", "supplementary_gids": [],
            "environment": {}, "working_directory": "/", "read_only_rootfs": False, "handlers": {},
            "annotations": {}, "mounts": [dict(m) for m in mounts]}


U_A = "3c1f5e2a-8d4b-4f6e-9a7c-0b1d2e3f4a5b"
U_B = "9f0e1d2c-3b4a-4958-8776-6a5b4c3d2e1f"
U_C = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
DIR_A = "/var/jetpack/pods/3c1f5e2a8d4b4f6e9a7c0b1d2e3f4a5b"
DIR_B = "/var/jetpack/pods/9f0e1d2c3b4a495887766a5b4c3d2e1f"
DIR_C = "/var/jetpack/pods/5a6b7c8d9e0f4a1b8c2d3e4f5a6b7c8d"

# (a) one app, no volume, no override
ONE_APP = pod_record(U_A, "web", [app("httpd")])

# (b) two apps; a host, an empty and a (read-only) jetpack volume; overrides of every kind
TWO_APPS = pod_record(
    U_B, "shop", hostname="shop.example.internal", stop_timeout=30,
    apps=[app("web", mounts=[{"volume": "data", "path": "/var/www", "read_only": False},
                             {"volume": "static", "path": "/usr/local/www/static", "read_only": False}]),
          app("worker", mounts=[{"volume": "cache", "path": "/var/cache/worker", "read_only": False},
                                {"volume": "data", "path": "/data", "read_only": True}])],
    volumes=[{"name": "data", "kind": "host", "source": "/srv/shop/data", "read_only": False},
             {"name": "cache", "kind": "empty", "source": DIR_B + "/volumes/cache", "read_only": False,
              "mode": "0755", "uid": 0, "gid": 0},
             {"name": "static", "kind": "jetpack", "volume": "static",
              "source": "/var/jetpack/volumes/static/data", "read_only": True}],
    jail={"securelevel": 3, "enforce_statfs": 1, "devfs_ruleset": 5, "sysvmsg": "disable",
          "allow.chflags": None, "allow.mlock": True, "osrelease": "14.2-RELEASE",
          "ip4": "new", "ip4.addr": ["lo1|10.88.0.5/32", "lo1|10.88.0.6/32"]})
TWO_APPS_MOUNTS = [
    Mount("/srv/shop/data", DIR_B + "/rootfs/app/web/rootfs/var/www", False),
    Mount("/var/jetpack/volumes/static/data", DIR_B + "/rootfs/app/web/rootfs/usr/local/www/static", True),
    Mount(DIR_B + "/volumes/cache", DIR_B + "/rootfs/app/worker/rootfs/var/cache/worker", False),
    Mount("/srv/shop/data", DIR_B + "/rootfs/app/worker/rootfs/data", True),
]

# (c) a Linux-compat app (image os=linux) with a read-only host volume
LINUX_SHELL = app("shell", os_="linux", mounts=[{"volume": "srv", "path": "/srv", "read_only": False}])
LINUX_APP = pod_record(U_C, "deb", [LINUX_SHELL],
                       volumes=[{"name": "srv", "kind": "host", "source": "/srv", "read_only": True}])
LINUX_APP_MOUNTS = [Mount("/srv", DIR_C + "/rootfs/app/shell/rootfs/srv", True)]

CASES = {"one-app": (ONE_APP, []), "two-apps": (TWO_APPS, TWO_APPS_MOUNTS),
         "linux-app": (LINUX_APP, LINUX_APP_MOUNTS)}

# The parameters every pod gets unless overridden (jail(8) "Jail Parameters", each justified in
# engines/freebsd.py SECURE_DEFAULTS), as the independent parser reads them back.
SECURE = {"securelevel": "2", "enforce_statfs": "2", "mount.devfs": True, "devfs_ruleset": "4",
          "allow.raw_sockets": "false", "allow.set_hostname": "false", "allow.chflags": "false",
          "sysvshm": "new", "sysvsem": "new", "sysvmsg": "new", "children.max": "0",
          "exec.clean": True, "ip4": "disable", "ip6": "disable"}

EXPECTED_CONF = {
    "one-app": ("jetpack-3c1f5e2a8d4b4f6e9a7c0b1d2e3f4a5b", dict(
        {"path": DIR_A + "/rootfs", "host.hostname": "web", "host.hostuuid": U_A,
         "mount.fstab": DIR_A + "/fstab", "persist": True, "stop.timeout": "10"}, **SECURE)),
    "two-apps": ("jetpack-9f0e1d2c3b4a495887766a5b4c3d2e1f", {
        "path": DIR_B + "/rootfs", "host.hostname": "shop.example.internal", "host.hostuuid": U_B,
        "mount.fstab": DIR_B + "/fstab", "persist": True, "stop.timeout": "30",
        "securelevel": "3", "enforce_statfs": "1", "mount.devfs": True, "devfs_ruleset": "5",
        "allow.raw_sockets": "false", "allow.set_hostname": "false",   # allow.chflags dropped (None)
        "sysvshm": "new", "sysvsem": "new", "sysvmsg": "disable", "children.max": "0",
        "exec.clean": True, "ip4": "new", "ip6": "disable",
        "allow.mlock": True, "ip4.addr": ["lo1|10.88.0.5/32", "lo1|10.88.0.6/32"],
        "osrelease": "14.2-RELEASE"}),
    "linux-app": ("jetpack-5a6b7c8d9e0f4a1b8c2d3e4f5a6b7c8d", dict(
        {"path": DIR_C + "/rootfs", "host.hostname": "deb", "host.hostuuid": U_C,
         "mount.fstab": DIR_C + "/fstab", "persist": True, "stop.timeout": "10"}, **SECURE)),
}

# fstab(5) fields: spec file vfstype mntops freq passno (host paths on both sides).
EXPECTED_FSTAB = {
    "one-app": [
        ("devfs", DIR_A + "/rootfs/app/httpd/rootfs/dev", "devfs", "rw,ruleset=4", "0", "0"),
    ],
    "two-apps": [
        ("devfs", DIR_B + "/rootfs/app/web/rootfs/dev", "devfs", "rw,ruleset=5", "0", "0"),
        ("/srv/shop/data", DIR_B + "/rootfs/app/web/rootfs/var/www", "nullfs", "rw", "0", "0"),
        ("/var/jetpack/volumes/static/data", DIR_B + "/rootfs/app/web/rootfs/usr/local/www/static",
         "nullfs", "ro", "0", "0"),
        ("devfs", DIR_B + "/rootfs/app/worker/rootfs/dev", "devfs", "rw,ruleset=5", "0", "0"),
        (DIR_B + "/volumes/cache", DIR_B + "/rootfs/app/worker/rootfs/var/cache/worker", "nullfs", "rw",
         "0", "0"),
        ("/srv/shop/data", DIR_B + "/rootfs/app/worker/rootfs/data", "nullfs", "ro", "0", "0"),
    ],
    "linux-app": [
        ("devfs", DIR_C + "/rootfs/app/shell/rootfs/dev", "devfs", "rw,ruleset=4", "0", "0"),
        ("linprocfs", DIR_C + "/rootfs/app/shell/rootfs/proc", "linprocfs", "rw", "0", "0"),
        ("linsysfs", DIR_C + "/rootfs/app/shell/rootfs/sys", "linsysfs", "rw", "0", "0"),
        ("/srv", DIR_C + "/rootfs/app/shell/rootfs/srv", "nullfs", "ro", "0", "0"),
    ],
}


# --- independent readers ------------------------------------------------------------------------

def unquote(value):
    """A value as jailconf returns it (raw token) -> the string jail(8) receives."""
    if value is True:
        return True
    if isinstance(value, list):
        return [unquote(v) for v in value]
    assert value[0] == value[-1] == "'", "every value is single-quoted: %r" % value
    return re.sub(r"\\(.)", r"\1", value[1:-1])


def parse_conf(text):
    """(jail name, {parameter: value}) through jailconf; exactly one block, no global parameter,
    and as many statements as parameters (a duplicate would hide in a dict)."""
    conf = jailconf.loads(text)
    blocks = list(conf.jails())
    assert len(blocks) == 1 and len(conf) == 1
    name, block = blocks[0]
    statements = [line for line in text.split("\n") if line.startswith("  ") and line.endswith(";")]
    assert len(statements) == len(block)
    return name, {key: unquote(value) for key, value in block.items()}


def split_fstab(text):
    """fstab(5) rows as 6-tuples; blank and '#' lines skipped; any other shape fails."""
    rows = []
    for line in text.split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        assert len(fields) == 6, line
        rows.append(tuple(fields))
    return rows


# --- golden files -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_jail_conf_matches_golden_file(case):
    record, _mounts = CASES[case]
    assert F.render_jail_conf(record) == (GOLDEN / (case + ".jail.conf")).read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_fstab_matches_golden_file(case):
    record, mounts = CASES[case]
    assert F.render_fstab(record, mounts) == (GOLDEN / (case + ".fstab")).read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_jail_conf_parsed_by_jailconf(case):
    """jail.conf(5) as an independent parser reads it: the jail block and every parameter."""
    name, params = parse_conf((GOLDEN / (case + ".jail.conf")).read_text())
    assert (name, params) == EXPECTED_CONF[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_fstab_split_into_fields(case):
    assert split_fstab((GOLDEN / (case + ".fstab")).read_text()) == EXPECTED_FSTAB[case]


def test_golden_jail_name_is_the_pod_uuid_hex():
    """jail(8) name: no '.', not numeric; the same 32 hex digits as the pod's dataset/directory."""
    name = F.jail_name(ONE_APP)
    assert name == "jetpack-" + U_A.replace("-", "")
    assert "." not in name and not name.isdigit() and not name.startswith("-")
    assert name[len("jetpack-"):] == os.path.basename(ONE_APP["pod_dir"])
    assert F.jail_name(dict(ONE_APP, uuid=U_A.upper())) == name   # deterministic


def test_no_default_inherits_the_hosts_network_or_ipc():
    """jail(8) ip4/ip6, sysv*: 'inherit' shares the host's; never a default."""
    values = dict(F.jail_parameters(ONE_APP))
    assert values["ip4"] == values["ip6"] == "disable"
    assert "inherit" not in [v for v in values.values() if isinstance(v, str)]


def test_the_golden_mount_plans_are_the_ones_pods_builds():
    """pods-design.md: both engines mount exactly engines.mount_plan(record)."""
    assert mount_plan(TWO_APPS) == TWO_APPS_MOUNTS
    assert mount_plan(LINUX_APP) == LINUX_APP_MOUNTS


# --- overrides ----------------------------------------------------------------------------------

def conf_with(**jail):
    return parse_conf(F.render_jail_conf(dict(ONE_APP, jail=jail)))[1]


def test_no_prefixed_override_replaces_the_default():
    """jail(8): 'allow.noraw_sockets' is allow.raw_sockets=false's other spelling; one line only."""
    params = conf_with(**{"allow.noraw_sockets": True})
    assert params["allow.noraw_sockets"] is True and "allow.raw_sockets" not in params


def test_override_set_twice_through_both_spellings_is_refused():
    with pytest.raises(InvalidInput, match="set the same parameter"):
        conf_with(**{"allow.raw_sockets": True, "allow.noraw_sockets": False})


def test_mount_devfs_off_removes_every_devfs_mount():
    record = dict(ONE_APP, jail={"mount.devfs": False})
    assert parse_conf(F.render_jail_conf(record))[1]["mount.devfs"] == "false"
    assert split_fstab(F.render_fstab(record, [])) == []


@pytest.mark.parametrize("jail", [{"mount.devfs": "yes"}, {"devfs_ruleset": "4; x"}, {"devfs_ruleset": -1}],
                         ids=["mount.devfs must be a boolean", "ruleset with text", "negative ruleset"])
def test_devfs_overrides_that_would_reach_the_fstab_are_checked(jail):
    with pytest.raises(InvalidInput):
        F.render_fstab(dict(ONE_APP, jail=jail), [])


REFUSED_NAMES = [
    ("securelevel; persist", "injection through the name"),
    ("allow.raw_sockets\n", "newline in the name"),
    ("a b", "space"), ("$var", "jail.conf(5) variable"), ("*", "wildcard"), ("Allow.mlock", "capitals"),
    ("", "empty"), ("allow..mlock", "empty component"), (".allow", "leading dot"), ("x" * 65, "too long"),
    (3, "not a string"),
    ("path", "engine-owned: path"), ("name", "engine-owned: name"), ("jid", "engine-owned: jid"),
    ("host.hostname", "engine-owned: hostname option"), ("host.hostuuid", "engine-owned: uuid"),
    ("mount.fstab", "engine-owned: fstab"), ("persist", "engine-owned: persist"),
    ("nopersist", "engine-owned through the no- spelling"), ("stop.timeout", "engine-owned: stop_timeout"),
    ("exec.prestart", "host-side hook"), ("exec.start", "in-jail command"), ("exec.poststop", "hook"),
    ("command", "jail(8) command"), ("mount", "extra fstab line"), ("depend", "other jails"),
]


@pytest.mark.parametrize("name", [case[0] for case in REFUSED_NAMES], ids=[case[1] for case in REFUSED_NAMES])
def test_unsafe_override_names_are_refused(name):
    with pytest.raises(InvalidInput):
        F.render_jail_conf(dict(ONE_APP, jail={name: "1"}))


REFUSED_VALUES = [
    ("2;\n  allow.raw_sockets;", "newline"), ("2\r", "carriage return"), ("a\tb", "tab"),
    ("a\x00b", "NUL"), ("x\x1b[0m", "escape"), ("x" * 5000, "too long"), ({"a": 1}, "mapping"),
    ({1}, "set"), (1.5, "float"), ([], "empty list"), (["a", True], "boolean in a list"),
    (["a\nb"], "newline in a list"),
]


@pytest.mark.parametrize("value", [case[0] for case in REFUSED_VALUES], ids=[case[1] for case in REFUSED_VALUES])
def test_unsafe_override_values_are_refused(value):
    with pytest.raises(InvalidInput):
        F.render_jail_conf(dict(ONE_APP, jail={"osrelease": value}))


QUOTED_VALUES = [
    ("x'; allow.raw_sockets = 'true'; '", "single-quote breakout"),
    ('x"; allow.raw_sockets; "', "double-quote breakout"),
    ("2; persist", "semicolon"), ("} evil { path = '/'", "braces"),
    ("$path ${host.hostname}", "jail.conf(5) variables stay literal in single quotes"),
    ("back\\slash\\", "backslashes"), ("# not a comment", "hash"), ("/* c */ // c", "comment markers"),
]


@pytest.mark.parametrize("value", [case[0] for case in QUOTED_VALUES], ids=[case[1] for case in QUOTED_VALUES])
def test_hostile_override_values_stay_one_quoted_value(value):
    """jail.conf(5) quoting: the parser reads back exactly the value, and no extra parameter."""
    params = conf_with(osrelease=value)
    assert params["osrelease"] == value
    assert set(params) == set(EXPECTED_CONF["one-app"][1]) | {"osrelease"}


REFUSED_HOSTNAMES = [
    ("web\n}", "newline"), ("web\n", "trailing newline (a regex $ matches before it)"), ("web'", "quote"),
    ('web"', "double quote"), ("web;", "semicolon"),
    ("web persist", "space"), ("-web", "leading dash"), ("web-", "trailing dash"), ("a..b", "empty label"),
    (".web", "leading dot"), ("x" * 64, "label over 63"), ("a." * 127 + "b", "over 253"), ("wéb", "non-ASCII"),
    ("web_1", "underscore"), ("$name", "variable"),
]


@pytest.mark.parametrize("hostname", [case[0] for case in REFUSED_HOSTNAMES], ids=[case[1] for case in REFUSED_HOSTNAMES])
def test_unsafe_hostnames_are_refused(hostname):
    with pytest.raises(InvalidInput):
        F.render_jail_conf(dict(ONE_APP, hostname=hostname))


@pytest.mark.parametrize("uuid", [U_A + "\n", U_A + "; persist", "not-a-uuid", "", None, U_A[:-1],
                                  "{%s}" % U_A], ids=["newline", "injection", "text", "empty", "none",
                                                      "short", "braces"])
def test_unsafe_uuids_are_refused(uuid):
    with pytest.raises(InvalidInput):
        F.render_jail_conf(dict(ONE_APP, uuid=uuid))


@pytest.mark.parametrize("value", [-1, "10", True, 1.5], ids=["negative", "string", "bool", "float"])
def test_bad_stop_timeouts_are_refused(value):
    with pytest.raises(InvalidInput):
        F.render_jail_conf(dict(ONE_APP, stop_timeout=value))


BAD_PATHS = [
    ("root", "/var/jetpack/pods/x y/rootfs", "space: jail(8) splits fstab lines at whitespace"),
    ("root", "/var/jetpack/pods/x#y/rootfs", "hash: jail(8) cuts fstab lines at '#'"),
    ("root", "/var/jetpack/pods/x\ny/rootfs", "newline"),
    ("root", "var/jetpack/rootfs", "relative"),
    ("root", "/var/jetpack/../rootfs", "dot-dot"),
    ("root", "/var/jetpack/rootfs/", "trailing slash"),
    ("pod_dir", "/var/jetpack/pods/x\\040y", "backslash"),
]


@pytest.mark.parametrize("field,value", [case[:2] for case in BAD_PATHS], ids=[case[2] for case in BAD_PATHS])
def test_unsafe_pod_paths_are_refused(field, value):
    with pytest.raises(InvalidInput):
        F.render_fstab(dict(ONE_APP, **{field: value}), [])


BAD_MOUNTS = [
    (Mount("/srv/my data", DIR_A + "/rootfs/app/httpd/rootfs/data", False), "space in the source"),
    (Mount("/srv/data#1", DIR_A + "/rootfs/app/httpd/rootfs/data", False), "hash in the source"),
    (Mount("/srv/data", "/etc", False), "target outside the pod root (jail(8) checks symlinks only below it)"),
    (Mount("/srv/data", DIR_A + "/rootfs/app/httpd/rootfs/../../../../etc", False), "dot-dot in the target"),
    (Mount("/srv/data", DIR_A + "/rootfs", False), "the pod root itself"),
    (Mount("srv/data", DIR_A + "/rootfs/app/httpd/rootfs/data", False), "relative source"),
]


@pytest.mark.parametrize("mount", [case[0] for case in BAD_MOUNTS], ids=[case[1] for case in BAD_MOUNTS])
def test_unsafe_mounts_are_refused(mount):
    with pytest.raises(InvalidInput):
        F.render_fstab(ONE_APP, [mount])


# --- argv ---------------------------------------------------------------------------------------

NAME_A = "jetpack-3c1f5e2a8d4b4f6e9a7c0b1d2e3f4a5b"
CONF_A = DIR_A + "/jail.conf"

ARGV = [
    pytest.param(F.argv_create(CONF_A, NAME_A), ["jail", "-i", "-f", CONF_A, "-c", NAME_A],
                 id="jail(8) -i -f conf -c name: create from the pod's own file (never /etc/jail.conf);"
                    " -i prints only the JID and implies -q (commands.md s1)"),
    pytest.param(F.argv_remove(CONF_A, NAME_A), ["jail", "-f", CONF_A, "-r", NAME_A],
                 id="jail(8) -f conf -r name: the same file, so jail(8) unmounts the fstab entries;"
                    " no -q, which would hide 'not found' (commands.md s1)"),
    pytest.param(F.argv_status(NAME_A),
                 ["jls", "--libxo", "json", "-d", "-j", NAME_A, "jid", "name", "path", "dying"],
                 id="jls(8) --libxo json -d -j name jid name path dying: untruncated JSON, one jail,"
                    " dying ones too, these keys (commands.md s3)"),
]


@pytest.mark.parametrize("argv,expected", ARGV)
def test_argv(argv, expected):
    assert argv == expected


@pytest.mark.parametrize("build", [
    lambda: F.argv_create(CONF_A, "-c"), lambda: F.argv_create(CONF_A, "jetpack-a.b"),
    lambda: F.argv_remove(CONF_A, "web"), lambda: F.argv_status("jetpack-x y"),
    lambda: F.argv_create(CONF_A, NAME_A + "\n"), lambda: F.argv_create("jail.conf", NAME_A),
    lambda: F.argv_remove(DIR_A + "/jail conf", NAME_A),
], ids=["option as name", "dot: jail(8) hierarchy", "not a jetpack jail", "space", "trailing newline",
        "relative conf", "space in conf"])
def test_argv_refuses_names_and_files_that_are_not_the_pods(build):
    with pytest.raises(InvalidInput):
        build()


# --- recorded outputs ---------------------------------------------------------------------------

def body_lines(name, *numbers):
    """The given 1-based body lines of a recording (the ones the tool printed), newline-ended."""
    lines = sample(name)[1].split("\n")
    return "".join(lines[n - 1] + "\n" for n in numbers)


def recorded(name, *args, lines=""):
    return pytest.param(name, *args, id="%s%s [%s]" % (name, lines, sample(name)[0]["source"][0]))


JLS_1 = [F.JailStatus(2, "git7", "/usr/local/bastille/jails/git7/root", False),
         F.JailStatus(105, "sto2", "/usr/local/bastille/jails/sto2/root", False),
         F.JailStatus(116, "git6", "/usr/local/bastille/jails/git6/root", False)]
JLS_2 = [F.JailStatus(1, "empty", "/", False), F.JailStatus(2, "vnetjail", "/", False),
         F.JailStatus(3, "empty.child", "/", False), F.JailStatus(4, "web", "/", False),
         F.JailStatus(5, "db", "/jails", False), F.JailStatus(6, "v6", "/", False)]


@pytest.mark.parametrize("name,expected", [
    recorded("jls-libxo-json-1", JLS_1, lines=" (-v: numbers as numbers, state ACTIVE)"),
    recorded("jls-libxo-json-2", JLS_2, lines=" (-n: numbers as strings, dying false)"),
])
def test_parse_recorded_jls_json(name, expected):
    assert F.parse_jls(sample(name)[1]) == expected


@pytest.mark.parametrize("name,line,expected", [
    recorded("jls-libxo-json-3", 1, [F.JailStatus(None, "j", None, False)], lines=" line 1"),
    recorded("jls-libxo-json-3", 2, [F.JailStatus(None, None, None, False)], lines=" line 2"),
    recorded("jls-libxo-json-3", 3, [F.JailStatus(None, None, None, False)], lines=" line 3 ({} record)"),
])
def test_parse_recorded_jls_json_partial_records(name, line, expected):
    assert F.parse_jls(body_lines(name, line)) == expected


@pytest.mark.parametrize("name", [recorded("jls-libxo-json-4", lines=" lines 1-3, IPython prompts removed")])
def test_parse_recorded_jls_json_version_1(name):
    """__version "1" (11.x). Lines 1-3 hold the JSON inside an IPython call: the text between
    `json.loads(\"\"\"` and `\"\"\")`, with the '      : ' continuation prompts (which split
    "ACTIVE" across lines) removed."""
    body = "".join(line[len("      : "):] if line.startswith("      : ") else line
                   for line in body_lines(name, 1, 2, 3).split("\n"))
    document = body[body.index('"""') + 3:body.rindex('"""')]
    assert '"__version": "1"' in document
    assert F.parse_jls(document) == [F.JailStatus(1, "irc", "/usr/jails/irc", False)]


@pytest.mark.parametrize("name", [recorded("jls-default-1", lines=" (the truncating table)")])
def test_jls_table_is_never_taken_for_json(name):
    with pytest.raises(ValueError):
        F.parse_jls(sample(name)[1])


@pytest.mark.parametrize("document,expected", [
    ('{"__version": "2", "jail-information": {"jail": [{"jid":"7","name":"a","path":"/p","dying":true}]}}',
     [F.JailStatus(7, "a", "/p", True)]),
    ('{"__version": "2", "jail-information": {"jail": [{"jid":7,"name":"a","path":"/p","state":"DYING"}]}}',
     [F.JailStatus(7, "a", "/p", True)]),
    ('{"__version": "2", "jail-information": {"jail": []}}', []),
], ids=["synthetic: -n dying true (no recording has one)", "synthetic: -v state DYING",
        "no jails (commands.md s3)"])
def test_parse_jls_dying_and_empty(document, expected):
    assert F.parse_jls(document) == expected


@pytest.mark.parametrize("document", [
    "not json", "[]", '{"jail-information": {}}', '{"jail-information": {"jail": {}}}',
    '{"jail-information": {"jail": ["x"]}}', '{"jail-information": {"jail": [{"jid": "seven"}]}}',
    '{"jail-information": {"jail": [{"jid": true}]}}', '{"jail-information": {"jail": [{"dying": "maybe"}]}}',
    '{"jail-information": {"jail": [{"name": 5}]}}',
])
def test_parse_jls_refuses_other_shapes(document):
    with pytest.raises(ValueError):
        F.parse_jls(document)


def test_created_jid_is_the_last_line_and_notes_are_not_jids():
    assert F.parse_created_jid("12\n") == 12
    assert F.parse_created_jid("") is None
    assert F.parse_created_jid("0\n") is None


@pytest.mark.parametrize("name", [recorded("jail-created-removed-1", lines=" line 8")])
def test_recorded_created_note_is_not_a_jid(name):
    """Without -i jail(8) prints 'NAME: created' (stdout); it must not be read as a JID."""
    assert F.parse_created_jid(body_lines(name, 8)) is None


# --- a fake runner ------------------------------------------------------------------------------

class FakeRunner:
    """run(argv, stdin=None) -> (rc, stdout, stderr) from a script; records every argv (calls)
    and what was fed on stdin (stdins)."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.calls = []
        self.stdins = []

    def __call__(self, argv, stdin=None):
        self.calls.append(list(argv))
        self.stdins.append(stdin)
        return self.responses.pop(0)


def prepared(tmp_path, record=None, mounts=None):
    """record (default: ONE_APP) moved under tmp_path, its directories made, prepared with a real prepare()."""
    record = record or ONE_APP
    base = str(tmp_path / "jetpack")
    rec = pod_record(record["uuid"], record["name"], [dict(a) for a in record["apps"]],
                     volumes=record["volumes"], hostname=record["hostname"], jail=record["jail"],
                     stop_timeout=record["stop_timeout"], base=base)
    rec.update({key: record[key] for key in ("networks", "ports") if key in record})
    os.makedirs(rec["root"], mode=0o700)
    for a in rec["apps"]:
        os.makedirs(a["rootfs"])
    F.FreeBSDEngine(run=FakeRunner()).prepare(rec, [] if mounts is None else mounts)
    return rec


def jls_json(name, jid="7", dying="false"):
    return ('{"__version": "2", "jail-information": {"jail": [{"jid":"%s","name":"%s","path":"/p",'
            '"dying":%s}]}}\n' % (jid, name, dying))


# --- prepare ------------------------------------------------------------------------------------

def test_prepare_writes_both_files_with_their_modes(tmp_path):
    rec = prepared(tmp_path)
    conf, fstab = Path(F.conf_path(rec)), Path(F.fstab_path(rec))
    assert conf.read_text() == F.render_jail_conf(rec)
    assert fstab.read_text() == F.render_fstab(rec, [])
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(fstab.stat().st_mode) == 0o400
    assert sorted(os.listdir(rec["pod_dir"])) == ["fstab", "jail.conf", "rootfs"]   # no temp left


def test_prepare_makes_the_directories_jail8_mounts_on(tmp_path):
    """jail(8) mount.devfs mounts on <path>/dev; each app gets /dev, a Linux app /proc and /sys."""
    rec = prepared(tmp_path, LINUX_APP, [])
    shell = rec["apps"][0]["rootfs"]
    for path in (rec["root"] + "/dev", shell + "/dev", shell + "/proc", shell + "/sys"):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o555, path
    assert not os.path.exists(prepared(tmp_path / "b", dict(ONE_APP, jail={"mount.devfs": False}))["root"] + "/dev")


def test_prepare_again_rewrites_the_read_only_fstab(tmp_path):
    rec = prepared(tmp_path)
    F.FreeBSDEngine(run=FakeRunner()).prepare(dict(rec, stop_timeout=42), [])
    assert "stop.timeout = '42';" in Path(F.conf_path(rec)).read_text()


def test_prepare_refuses_a_symlink_where_dev_goes(tmp_path):
    """An image whose /dev is a link to a host path must not get devfs mounted over that path."""
    base = str(tmp_path / "jetpack")
    rec = pod_record(U_A, "web", [app("httpd")], base=base)
    os.makedirs(rec["apps"][0]["rootfs"])
    os.symlink(str(tmp_path), rec["apps"][0]["rootfs"] + "/dev")
    with pytest.raises(InvalidInput, match="symlink"):
        F.FreeBSDEngine(run=FakeRunner()).prepare(rec, [])
    assert not os.path.exists(F.conf_path(rec))


def test_prepare_without_a_plan_mounts_the_records_plan(tmp_path):
    base = str(tmp_path / "jetpack")
    rec = prepared(tmp_path, TWO_APPS, [])
    F.FreeBSDEngine(run=FakeRunner()).prepare(rec)
    assert [row[3] for row in split_fstab(Path(F.fstab_path(rec)).read_text())] == \
        ["rw,ruleset=5", "rw", "ro", "rw,ruleset=5", "rw", "ro"]
    assert base in Path(F.fstab_path(rec)).read_text()


# --- start, stop, status, running ---------------------------------------------------------------

def test_start_creates_the_jail_and_returns_its_jid(tmp_path):
    rec = prepared(tmp_path)
    run = FakeRunner((0, "7\n", ""))
    assert F.FreeBSDEngine(run=run).start(rec) == {"jid": 7, "name": F.jail_name(rec)}
    assert run.calls == [["/usr/sbin/jail", "-i", "-f", F.conf_path(rec), "-c", F.jail_name(rec)]]


def test_start_asks_jls_when_jail8_printed_no_jid(tmp_path):
    rec = prepared(tmp_path)
    name = F.jail_name(rec)
    run = FakeRunner((0, "", ""), (0, jls_json(name, "9"), ""))
    assert F.FreeBSDEngine(run=run).start(rec) == {"jid": 9, "name": name}
    assert run.calls[1] == ["/usr/sbin/jls"] + F.argv_status(name)[1:]


def test_start_of_an_unprepared_pod_runs_nothing(tmp_path):
    run = FakeRunner()
    with pytest.raises(NotFound, match="prepare"):
        F.FreeBSDEngine(run=run).start(dict(ONE_APP, pod_dir=str(tmp_path)))
    assert run.calls == []


def test_start_of_a_running_pod_source_derived_already_exists(tmp_path):
    """source-derived (outputs/MISSING.md, jail.c jail_quoted_warnx): 'jail: "NAME" already exists'."""
    rec = prepared(tmp_path)
    name = F.jail_name(rec)
    err_text = 'jail: "%s" already exists\n' % name
    with pytest.raises(F.JailAlreadyExists) as caught:
        F.FreeBSDEngine(run=FakeRunner((1, "", err_text))).start(rec)
    error = caught.value
    assert isinstance(error, AlreadyExists) and isinstance(error, CommandError)
    assert error.rc == 1 and error.stderr == err_text and error.argv[-1] == name
    assert "Stop the pod" in str(error) and name in str(error)


# (recording, stderr lines, stdout lines, expected class, words the message must hold)
CREATE_ERRORS = [
    recorded("jail-c-error-1", (2,), (), F.JailMountError,
             ["mount.devfs: /usr/local/jails/containers/thinjail/dev: No such file", "prepared",
              "did not start"],
             lines=" line 2"),
    recorded("jail-c-error-2", (7,), (), F.JailMountError,
             ["mount.fstab: /iocage/jails/d88b3cf9-580e-11e5-be82-d067e5eea9ef/fstab"], lines=" line 7"),
    recorded("jail-c-error-3", (2,), (), F.JailMountError, ["mount: /jails/haraka/data/avg"], lines=" line 2"),
    recorded("jail-c-error-4", (4, 5), (), F.JailMountError,
             ["Resource deadlock avoided", "/sbin/mount -t nullfs -o ro"], lines=" lines 4-5"),
    recorded("jail-test-expected-1", (1,), (), F.JailPermissionError, ["prison limit exceeded", "root"],
             lines=" line 1"),
    recorded("jail-test-expected-2", (1,), (), F.JailPermissionError,
             ["jail_set: Operation not permitted", "not inside a jail"], lines=" line 1"),
]


@pytest.mark.parametrize("name,err_lines,out_lines,cls,words", CREATE_ERRORS)
def test_recorded_create_errors_are_classified(tmp_path, name, err_lines, out_lines, cls, words):
    rec = prepared(tmp_path)
    stderr, stdout = body_lines(name, *err_lines), body_lines(name, *out_lines)
    with pytest.raises(CommandError) as caught:
        F.FreeBSDEngine(run=FakeRunner((1, stdout, stderr))).start(rec)
    error = caught.value
    assert error.__class__ is cls
    assert error.argv == ["/usr/sbin/jail"] + F.argv_create(F.conf_path(rec), F.jail_name(rec))[1:]
    assert (error.rc, error.stderr) == (1, stderr)
    for word in words:
        assert word in str(error)


def test_start_refused_by_a_symlinked_mount_point_source_derived(tmp_path):
    """source-derived (usr.sbin/jail/command.c check_path: '<param>: <path> is a symbolic link'
    for any component below the jail path): an app replaced a mount point with a link."""
    rec = prepared(tmp_path)
    target = rec["apps"][0]["rootfs"] + "/var/www"
    stderr = "jail: %s: mount.fstab: %s is a symbolic link\n" % (F.jail_name(rec), target)
    with pytest.raises(F.JailMountError) as caught:
        F.FreeBSDEngine(run=FakeRunner((1, "", stderr))).start(rec)
    assert "refused to mount on %s: it is a symbolic link" % target in str(caught.value)
    assert "Recreate the pod" in str(caught.value)


@pytest.mark.parametrize("name", [recorded("jail-c-error-5", lines=" stderr lines 5-6, stdout lines 4 and 7")])
def test_recorded_failed_step_after_creation_is_a_plain_command_error(tmp_path, name):
    """jail(8) created the jail, a later step failed, jail(8) removed it again (commands.md s1)."""
    rec = prepared(tmp_path)
    with pytest.raises(CommandError) as caught:
        F.FreeBSDEngine(run=FakeRunner((1, body_lines(name, 4, 7), body_lines(name, 5, 6)))).start(rec)
    assert caught.value.__class__ is CommandError
    assert "jail: packages: /sbin/ifconfig epair0b vnet packages: failed" in str(caught.value)


@pytest.mark.parametrize("name,argv,err_lines,cls,words", [
    recorded("jail-m-error-1", ["jail", "-m", "jid=stage", "allow.sysvipc=1"], (2,), F.JailParameterError,
             ['jid: non-integer value "stage"', "sysctl -d security.jail.param"], lines=" line 2"),
    recorded("jexec-error-1", ["jexec", "ioc-d88b3cf9-580e-11e5-be82-d067e5eea9ef", "/bin/sh"], (1,),
             F.JailNotFound, ["ioc-d88b3cf9-580e-11e5-be82-d067e5eea9ef is not running"], lines=" line 1"),
    recorded("jexec-error-2", ["jexec", "ioc-9048b2dc-91ac-11e7-b8c6-7071bca7c826", "/bin/sh", "/etc/rc"],
             (2,), CommandError, ["/bin/sh does not exist inside the jail"], lines=" line 2"),
])
def test_recorded_errors_of_other_commands_are_classified(name, argv, err_lines, cls, words):
    stderr = body_lines(name, *err_lines)
    with pytest.raises(CommandError) as caught:
        F.FreeBSDEngine(run=FakeRunner((1, "", stderr)), tools={"jail": "jail"}).check(argv)
    error = caught.value
    assert error.__class__ is cls and error.argv == argv
    if cls is F.JailParameterError:
        assert isinstance(error, InvalidInput) and error.field == "jail"
    if cls is F.JailNotFound:
        assert isinstance(error, NotFound)
    for word in words:
        assert word in str(error)


def test_stop_removes_with_the_pods_conf(tmp_path):
    rec = prepared(tmp_path)
    run = FakeRunner((0, F.jail_name(rec) + ": removed\n", ""))
    F.FreeBSDEngine(run=run).stop(rec, {"jid": 7, "name": F.jail_name(rec)})
    assert run.calls == [["/usr/sbin/jail", "-f", F.conf_path(rec), "-r", F.jail_name(rec)]]


def test_stop_of_a_stopped_pod_source_derived_not_found_is_quiet(tmp_path):
    """source-derived (outputs/MISSING.md): `jail -r` of a missing jail: 'jail: "NAME" not found'."""
    rec = prepared(tmp_path)
    run = FakeRunner((1, "", 'jail: "%s" not found\n' % F.jail_name(rec)))
    assert F.FreeBSDEngine(run=run).stop(rec, {"jid": 7}) is None
    assert len(run.calls) == 1


def test_stop_reports_an_unmount_failure_source_derived(tmp_path):
    """source-derived (usr.sbin/jail/command.c: '/sbin/umount PATH' then '<command>: failed')."""
    rec = prepared(tmp_path)
    target = rec["apps"][0]["rootfs"] + "/dev"
    run = FakeRunner((1, "", "jail: %s: /sbin/umount %s: failed\n" % (F.jail_name(rec), target)))
    with pytest.raises(F.JailMountError, match="could not unmount") as caught:
        F.FreeBSDEngine(run=run).stop(rec, {"jid": 7})
    assert "mount -p" in str(caught.value) and target in str(caught.value)


def test_stop_refuses_another_pods_context_and_a_missing_conf(tmp_path):
    rec = prepared(tmp_path)
    run = FakeRunner()
    with pytest.raises(InvalidInput):
        F.FreeBSDEngine(run=run).stop(rec, {"jid": 7, "name": "jetpack-" + "0" * 32})
    os.unlink(F.conf_path(rec))
    with pytest.raises(NotFound, match="unmount"):
        F.FreeBSDEngine(run=run).stop(rec, {"jid": 7})
    assert run.calls == []


@pytest.mark.parametrize("response,context,expected", [
    ((0, jls_json(NAME_A, "7"), ""), {"jid": 7}, True),
    ((0, jls_json(NAME_A, "7"), ""), {}, True),
    ((0, jls_json(NAME_A, "8"), ""), {"jid": 7}, False),
    ((0, jls_json(NAME_A, "7", "true"), ""), {"jid": 7}, False),
    ((0, jls_json("jetpack-other", "7"), ""), {"jid": 7}, False),
    ((1, "", 'jls: jail "%s" not found\n' % NAME_A), {"jid": 7}, False),
], ids=["running", "running, no jid known", "another incarnation (JID reused)", "dying",
        "another jail's record", "not found (libjail text as in jexec-error-1)"])
def test_running(response, context, expected):
    run = FakeRunner(response)
    assert F.FreeBSDEngine(run=run).running(ONE_APP, context) is expected
    assert run.calls == [["/usr/sbin/jls"] + F.argv_status(NAME_A)[1:]]


def test_status_of_unexpected_output_is_a_command_error():
    with pytest.raises(CommandError, match="unexpected output"):
        F.FreeBSDEngine(run=FakeRunner((0, "   JID  IP Address\n", ""))).status(ONE_APP)


def test_status_carries_jid_path_and_dying():
    run = FakeRunner((0, jls_json(NAME_A, "12", "true"), ""))
    assert F.FreeBSDEngine(run=run).status(ONE_APP) == F.JailStatus(12, NAME_A, "/p", True)


def test_a_missing_tool_is_a_command_error_that_says_what_is_needed():
    with pytest.raises(CommandError, match="jail\\(8\\)"):
        F.run_command(["/nonexistent/jail", "-c"])


# --- attach -------------------------------------------------------------------------------------

def test_attach_refuses_cleanly_off_freebsd():
    if platform.system() == "FreeBSD":
        pytest.skip("this checks the refusal elsewhere")
    loads = []
    engine = F.FreeBSDEngine(run=FakeRunner(), load_libc=lambda: loads.append(1))
    with pytest.raises(JetpackError, match="only on FreeBSD") as caught:
        engine.attach(ONE_APP, {"jid": 7, "name": NAME_A})
    assert platform.system() in str(caught.value) and not isinstance(caught.value, CommandError)
    assert loads == []   # no C library was even looked at


class FakeLibc:
    def __init__(self, rc=0, code=0):
        self.attached = []

        def jail_attach(jid):
            self.attached.append(jid)
            if rc:
                ctypes.set_errno(code)
            return rc

        self.jail_attach = jail_attach


def test_attach_calls_jail_attach_with_the_jid():
    libc = FakeLibc()
    F.FreeBSDEngine(load_libc=lambda: libc, system=lambda: "FreeBSD").attach(ONE_APP, {"jid": 7})
    assert libc.attached == [7]
    assert libc.jail_attach.argtypes == [ctypes.c_int] and libc.jail_attach.restype is ctypes.c_int


@pytest.mark.parametrize("code,words", [(errno.EPERM, "root"), (errno.EINVAL, "not running")],
                         ids=["jail(2) EPERM", "jail(2) EINVAL"])
def test_attach_failure_says_errno_and_what_to_do(code, words):
    libc = FakeLibc(rc=-1, code=code)
    with pytest.raises(JetpackError) as caught:
        F.jail_attach(7, lambda: libc, lambda: "FreeBSD")
    assert os.strerror(code) in str(caught.value) and words in str(caught.value)


def test_attach_with_a_libc_without_jail_attach():
    with pytest.raises(JetpackError, match="no jail_attach"):
        F.jail_attach(7, object, lambda: "FreeBSD")


@pytest.mark.parametrize("context", [None, {}, {"jid": 0}, {"jid": -3}, {"jid": "7"}, {"jid": True}])
def test_attach_needs_a_jid(context):
    libc = FakeLibc()
    with pytest.raises(InvalidInput):
        F.FreeBSDEngine(load_libc=lambda: libc, system=lambda: "FreeBSD").attach(ONE_APP, context)
    assert libc.attached == []


def test_importing_the_engine_loads_no_ctypes():
    """Import-safe on Linux: ctypes (and jail_attach) are reached only when attaching."""
    code = ("import sys; import ansible_collections.jetpack.runtime.plugins.module_utils.jetpack."
            "engines.freebsd; print('ctypes' in sys.modules)")
    collections = [p for p in sys.path if os.path.isdir(os.path.join(p, "ansible_collections"))]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(collections)))
    assert result.stdout.strip() == "False"


def test_no_second_fork_after_attaching():
    """execution.spawn forks again only for engines that enter a PID namespace (Linux); a
    jail_attach(2)ed child is already where the app must run."""
    assert F.FreeBSDEngine.fork_after_attach is False and F.FreeBSDEngine.name == "freebsd"


# --- networks: the pod's jail.conf ----------------------------------------------------------------
# A pod's networks as pods.py records them: the network's definition (network.normalize) plus the
# pod's lease on it; "mode" and "egress_if" are the network's own options (shared by default).

DEFAULT_NET = network.normalize(**network.DEFAULT)
BACKEND_NET = network.normalize("backend", "10.88.0.0/24", "fd00:88::/64", nat=False)
WEB_PORTS = [{"protocol": "tcp", "host_ip": None, "host_port": 8080, "pod_port": 80}]
KEY_A = U_A.replace("-", "")
HOST_A, JAIL_SIDE_A = "e0a_3c1f5e2a8d4", "e0b_3c1f5e2a8d4"     # freebsd_network.epair_names(NAME_A, 0)


def joined(net, address, **extra):
    return dict(net, requested=None, address=address, **extra)


SHARED_POD = dict(ONE_APP, networks=[joined(DEFAULT_NET, "172.23.0.2")], ports=WEB_PORTS)
VNET_POD = dict(ONE_APP, networks=[joined(DEFAULT_NET, "172.23.0.2", mode="vnet")], ports=WEB_PORTS)
NET_CASES = {"shared-pod": SHARED_POD, "vnet-pod": VNET_POD}

# Written out by hand: jail(8) ip4.addr 'IF|ADDR/32' (jail(8) adds and deletes the alias on the
# network's cloned loopback); vnet: no ip4/ip6 at all (jail(8) refuses IP restrictions on a VNET
# jail), vnet.interface = the jail side of the pod's epair, devfs.rules(5) ruleset 5
# (devfsrules_jail_vnet) and the exec.poststart argv jail(8) runs on the host after moving it in.
ONE_APP_OWN = {"path": DIR_A + "/rootfs", "host.hostname": "web", "host.hostuuid": U_A,
               "mount.fstab": DIR_A + "/fstab", "persist": True, "stop.timeout": "10"}
EXPECTED_NET_CONF = {
    "shared-pod": dict(ONE_APP_OWN, **dict(SECURE, **{"ip4": "new", "ip4.addr": "jp-default|172.23.0.2/32"})),
    "vnet-pod": dict(ONE_APP_OWN, **{k: v for k, v in SECURE.items() if k not in ("ip4", "ip6", "devfs_ruleset")}, **{
        "devfs_ruleset": "5", "vnet": True, "vnet.interface": JAIL_SIDE_A,
        "exec.poststart": ["/sbin/ifconfig -j %s lo0 inet 127.0.0.1/8" % NAME_A,
                           "/sbin/ifconfig -j %s %s inet 172.23.0.2/16" % (NAME_A, JAIL_SIDE_A),
                           "/sbin/route -j %s -n add -inet default 172.23.0.1" % NAME_A]}),
}


@pytest.mark.parametrize("case", sorted(NET_CASES))
def test_networked_jail_conf_matches_golden_file(case):
    assert F.render_jail_conf(NET_CASES[case]) == (GOLDEN / (case + ".jail.conf")).read_text()


@pytest.mark.parametrize("case", sorted(NET_CASES))
def test_golden_networked_jail_conf_parsed_by_jailconf(case):
    assert parse_conf((GOLDEN / (case + ".jail.conf")).read_text()) == (NAME_A, EXPECTED_NET_CONF[case])


def test_vnet_apps_get_devfs_ruleset_5_too():
    """devfs.rules(5): each app's own /dev gets the jail's ruleset, 5 (devfsrules_jail_vnet) for VNET."""
    assert split_fstab(F.render_fstab(VNET_POD, [])) == \
        [("devfs", DIR_A + "/rootfs/app/httpd/rootfs/dev", "devfs", "rw,ruleset=5", "0", "0")]


@pytest.mark.parametrize("name", ["ip4", "ip4.addr", "ip6", "ip6.addr", "interface", "vnet", "novnet",
                                  "vnet.interface"])
def test_network_parameters_of_a_networked_pod_cannot_be_overridden(name):
    with pytest.raises(InvalidInput, match="set by the pod's networks") as caught:
        F.render_jail_conf(dict(SHARED_POD, jail={name: "x"}))
    assert caught.value.field == "jail." + name


def test_a_pod_on_no_network_may_set_its_own_addresses():
    """jail(8) ip4.addr on an operator's interface (as in the two-apps golden): allowed without networks."""
    params = parse_conf(F.render_jail_conf(dict(ONE_APP, networks=[], jail={"ip4": "new", "ip4.addr": "lo1|10.88.0.5/32"})))[1]
    assert (params["ip4"], params["ip4.addr"], params["ip6"]) == ("new", "lo1|10.88.0.5/32", "disable")


def test_a_pod_on_the_hosts_network_inherits_its_stack_and_starts_with_jail_c_alone(tmp_path):
    """networks: [host] (pods.py): jail(8) ip4/ip6 = inherit, the explicit choice; no host-side step."""
    record = dict(ONE_APP, networks=[{"name": "host", "requested": None}], ports=[])
    params = parse_conf(F.render_jail_conf(record))[1]
    assert (params["ip4"], params["ip6"]) == ("inherit", "inherit") and "ip4.addr" not in params
    rec = prepared(tmp_path, record)
    run = FakeRunner((0, "7\n", ""))
    assert F.FreeBSDEngine(run=run).start(rec) == {"jid": 7, "name": NAME_A}
    assert run.calls == [jail_create(rec)]


@pytest.mark.parametrize("networks,words", [
    ([joined(DEFAULT_NET, "172.23.0.2", mode="bridge")], "mode 'bridge' must be one of shared, vnet"),
    ([joined(DEFAULT_NET, "172.23.0.2", mode="vnet"), joined(BACKEND_NET, "10.88.0.5")], "one kind"),
    ([joined(DEFAULT_NET, "172.23.0.2", bridge="jp default")], "not usable"),
    ([joined(DEFAULT_NET, "10.1.2.3")], "not a host address of 172.23.0.0/16"),
], ids=["unknown mode", "vnet and shared mixed", "unusable interface name", "address outside the subnet"])
def test_prepare_refuses_bad_networks_and_writes_nothing(tmp_path, networks, words):
    base = str(tmp_path / "jetpack")
    rec = dict(pod_record(U_A, "web", [app("httpd")], base=base), networks=networks)
    os.makedirs(rec["apps"][0]["rootfs"])
    with pytest.raises(InvalidInput, match=re.escape(words)):
        F.FreeBSDEngine(run=FakeRunner()).prepare(rec, [])
    assert not os.path.exists(F.conf_path(rec))


# --- networks: start and stop ---------------------------------------------------------------------

OK = (0, "", "")
IFCONFIG = "/sbin/ifconfig"


def absent(ifname):
    """ifconfig(8)'s message for a missing interface, as recorded (outputs/ifconfig-error-1)."""
    return (1, "", "ifconfig: interface %s does not exist\n" % ifname)


def loopback(ifname, *aliases):
    """source-derived (outputs/MISSING.md `ifconfig lo1` layout): no recording of a cloned lo exists."""
    text = "%s: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384\n" % ifname
    text += "\toptions=600003<RXCSUM,TXCSUM,RXCSUM_IPV6,TXCSUM_IPV6>\n"
    text += "".join("\tinet %s netmask 0xffffffff\n" % a for a in aliases)
    return (0, text + "\tgroups: lo\n", "")


def pf_load(anchor):
    return ["/sbin/pfctl", "-a", anchor, "-f", "-"]


def pf_flush(anchor):
    return ["/sbin/pfctl", "-a", anchor, "-F", "all"]


def jail_create(rec):
    return ["/usr/sbin/jail"] + F.argv_create(F.conf_path(rec), F.jail_name(rec))[1:]


def jail_remove(rec):
    return ["/usr/sbin/jail"] + F.argv_remove(F.conf_path(rec), F.jail_name(rec))[1:]


RESOLVED_WEB = N.resolve_ports(WEB_PORTS, [joined(DEFAULT_NET, "172.23.0.2")])

# (argv, response on success) of each start, in order; `ifconfig epair create` printing 'epair0a'
# is source-derived (outputs/MISSING.md). pfctl(8) -f - gets the anchor's rules on stdin.
SHARED_START = [
    (lambda rec: [IFCONFIG, "jp-default"], loopback("jp-default")),       # ifconfig(8) IF: stale aliases?
    (jail_create, (0, "7\n", "")),                                         # jail(8) -c adds the alias
    (lambda rec: pf_load("jetpack/filter-" + KEY_A), OK),                  # pfctl(8) -a: filter first
    (lambda rec: pf_load("jetpack/rdr-" + KEY_A), OK),                     # then the redirects
]
VNET_START = [
    (lambda rec: [IFCONFIG, HOST_A], absent(HOST_A)),                      # no stale epair
    (lambda rec: [IFCONFIG, "epair", "create"], (0, "epair0a\n", "")),     # ifconfig(8) epair create
    (lambda rec: [IFCONFIG, "epair0a", "name", HOST_A], OK),               # ifconfig(8) name
    (lambda rec: [IFCONFIG, "epair0b", "name", JAIL_SIDE_A], OK),
    (lambda rec: [IFCONFIG, "jp-default", "addm", HOST_A], OK),            # if_bridge(4) addm
    (lambda rec: [IFCONFIG, HOST_A, "up"], OK),
    (jail_create, (0, "7\n", "")),                                         # jail(8) vnet.interface
    (lambda rec: pf_load("jetpack/filter-" + KEY_A), OK),
    (lambda rec: pf_load("jetpack/rdr-" + KEY_A), OK),
]
STARTS = {"shared": (SHARED_POD, SHARED_START), "vnet": (VNET_POD, VNET_START)}


@pytest.mark.parametrize("mode", sorted(STARTS))
def test_start_runs_the_host_side_steps_around_jail_c(tmp_path, mode):
    record, steps = STARTS[mode]
    rec = prepared(tmp_path, record)
    run = FakeRunner(*[response for _argv, response in steps])
    assert F.FreeBSDEngine(run=run, egress_if="em0").start(rec) == {"jid": 7, "name": NAME_A}
    assert run.calls == [argv(rec) for argv, _response in steps]
    assert run.stdins[-2:] == [N.render_filter_anchor(RESOLVED_WEB), N.render_rdr_anchor(RESOLVED_WEB, "em0")]
    assert run.stdins[:-2] == [None] * (len(steps) - 2)


def test_start_clears_a_stale_alias_of_the_pod_first(tmp_path):
    """A crash (or `jail -R`) can leave the pod's alias on the loopback; jail(8) would fail adding it."""
    rec = prepared(tmp_path, dict(SHARED_POD, ports=[]))
    run = FakeRunner(loopback("jp-default", "172.23.0.9", "172.23.0.2"), OK, (0, "7\n", ""))
    F.FreeBSDEngine(run=run).start(rec)
    assert run.calls == [[IFCONFIG, "jp-default"], [IFCONFIG, "jp-default", "inet", "172.23.0.2", "-alias"],
                         jail_create(rec)]


# The recorded failure each tool gives at step N (the class the engine raises for it):
FAILURES = {
    IFCONFIG: (("jail-c-error-5", 2), N.InterfaceExists),            # ifconfig: BRDGADD epair0a: File exists
    "/usr/sbin/jail": (("jail-c-error-5", 5, 6), N.InterfaceNotFound),  # the epair could not be moved in
    "/sbin/pfctl": (("pfctl-load-error-1", 2, 3), N.PfRulesRefused),  # stdin:3: syntax error ...
}
# What undoes each step that succeeded, latest first (create_pod_interfaces undoes its own part).
VNET_UNDO = {
    1: [], 2: [[IFCONFIG, "epair0a", "destroy"]], 3: [[IFCONFIG, HOST_A, "destroy"]],
    4: [[IFCONFIG, HOST_A, "destroy"]], 5: [[IFCONFIG, HOST_A, "destroy"]], 6: [[IFCONFIG, HOST_A, "destroy"]],
    7: ["unpublish", "jail -r", [IFCONFIG, HOST_A, "destroy"]],
    8: ["unpublish", "jail -r", [IFCONFIG, HOST_A, "destroy"]],
}
SHARED_UNDO = {1: [], 2: ["unpublish", "jail -r"], 3: ["unpublish", "jail -r"]}
ROLLBACKS = [("vnet", n) for n in sorted(VNET_UNDO)] + [("shared", n) for n in sorted(SHARED_UNDO)]


def undo_argv(rec, step):
    if step == "unpublish":     # flush the rdr anchor, then the filter anchor (pfctl(8) -a -F all)
        return [pf_flush("jetpack/rdr-" + KEY_A), pf_flush("jetpack/filter-" + KEY_A)]
    if step == "jail -r":
        return [jail_remove(rec)]
    return [step]


@pytest.mark.parametrize("mode,failing", ROLLBACKS, ids=["%s: step %d fails" % case for case in ROLLBACKS])
def test_a_failed_start_step_undoes_the_earlier_ones(tmp_path, mode, failing):
    record, steps = STARTS[mode]
    rec = prepared(tmp_path, record)
    argvs = [argv(rec) for argv, _response in steps[:failing + 1]]
    (recording, *lines), cls = FAILURES[argvs[-1][0]]
    expected_undo = [argv for step in (VNET_UNDO if mode == "vnet" else SHARED_UNDO)[failing]
                     for argv in undo_argv(rec, step)]
    run = FakeRunner(*[response for _argv, response in steps[:failing]], (1, "", body_lines(recording, *lines)),
                     *[OK] * len(expected_undo))
    with pytest.raises(cls):
        F.FreeBSDEngine(run=run, egress_if="em0").start(rec)
    assert run.calls == argvs + expected_undo
    assert run.responses == []


def test_a_failing_undo_step_does_not_stop_the_others(tmp_path):
    rec = prepared(tmp_path, VNET_POD)
    responses = [response for _argv, response in VNET_START[:7]]
    pf_refused = (1, "", body_lines("pfctl-load-error-1", 2, 3))
    run = FakeRunner(*responses, pf_refused, OK, OK, (1, "", "jail: /sbin/umount x: failed\n"), OK)
    with pytest.raises(N.PfRulesRefused):
        F.FreeBSDEngine(run=run, egress_if="em0").start(rec)
    assert run.calls[-1] == [IFCONFIG, HOST_A, "destroy"]


@pytest.mark.parametrize("change,words", [
    (dict(ports=[dict(WEB_PORTS[0], protocol="sctp")]), "sctp cannot be published"),
    (dict(networks=[joined(DEFAULT_NET, "172.23.0.2", mode="tunnel")], ports=[]), "mode 'tunnel'"),
    (dict(networks=[joined(DEFAULT_NET, "172.23.0.2", egress_if="em0; pass")]), "not usable"),
    (dict(networks=[]), "no network cannot publish ports"),
    (dict(), "needs the host interface"),
], ids=["sctp port (pf.conf(5) SCTP CONSIDERATIONS)", "unknown mode", "unusable egress_if", "ports without network",
        "ports and no egress interface"])
def test_start_refuses_bad_input_before_running_anything(tmp_path, change, words):
    rec = prepared(tmp_path, SHARED_POD)
    run = FakeRunner()
    with pytest.raises(InvalidInput, match=re.escape(words)):
        F.FreeBSDEngine(run=run).start(dict(rec, **change))
    assert run.calls == []


def test_the_networks_egress_if_wins_over_the_engines(tmp_path):
    rec = prepared(tmp_path, dict(SHARED_POD, networks=[joined(DEFAULT_NET, "172.23.0.2", egress_if="vtnet0")]))
    run = FakeRunner(*[response for _argv, response in SHARED_START])
    F.FreeBSDEngine(run=run, egress_if="em0").start(rec)
    assert run.stdins[-1] == N.render_rdr_anchor(RESOLVED_WEB, "vtnet0") and "rdr on vtnet0 " in run.stdins[-1]


def test_an_unusable_engine_egress_if_is_refused_at_once():
    with pytest.raises(InvalidInput, match="not usable"):
        F.FreeBSDEngine(run=FakeRunner(), egress_if="-i")


STOPS = {
    "shared": (SHARED_POD, [pf_flush("jetpack/rdr-" + KEY_A), pf_flush("jetpack/filter-" + KEY_A), "jail -r"]),
    "vnet": (VNET_POD, [pf_flush("jetpack/rdr-" + KEY_A), pf_flush("jetpack/filter-" + KEY_A), "jail -r",
                        [IFCONFIG, HOST_A, "destroy"]]),
}


@pytest.mark.parametrize("mode", sorted(STOPS))
def test_stop_unpublishes_removes_the_jail_then_its_epairs(tmp_path, mode):
    """pfctl(8) -a -F all per anchor, rdr first; jail(8) -r deletes the shared-IP alias itself;
    ifconfig(8) destroy of an epair's a side takes the b side (back from the jail) with it."""
    record, steps = STOPS[mode]
    rec = prepared(tmp_path, record)
    run = FakeRunner(*[OK] * len(steps))
    F.FreeBSDEngine(run=run).stop(rec, {"jid": 7, "name": NAME_A})
    assert run.calls == [jail_remove(rec) if step == "jail -r" else step for step in steps]


def test_stop_of_a_jail_already_gone_clears_what_it_left_source_derived(tmp_path):
    """source-derived 'jail: "NAME" not found' (outputs/MISSING.md): the alias jail(8) did not delete goes."""
    rec = prepared(tmp_path, SHARED_POD)
    run = FakeRunner(OK, OK, (1, "", 'jail: "%s" not found\n' % NAME_A), loopback("jp-default", "172.23.0.2"), OK)
    F.FreeBSDEngine(run=run).stop(rec, {"jid": 7})
    assert run.calls[2:] == [jail_remove(rec), [IFCONFIG, "jp-default"],
                             [IFCONFIG, "jp-default", "inet", "172.23.0.2", "-alias"]]


def test_stop_removes_the_jail_even_when_pf_fails_and_reports_it(tmp_path):
    """source-derived 'pfctl: /dev/pf: No such file or directory' is no anchor to flush; a refusal is an error."""
    rec = prepared(tmp_path, SHARED_POD)
    refused = (1, "", body_lines("pfctl-load-error-1", 2, 3))
    run = FakeRunner(refused, OK, OK)
    with pytest.raises(N.PfRulesRefused):
        F.FreeBSDEngine(run=run).stop(rec, {"jid": 7})
    assert run.calls[-1] == jail_remove(rec)
    run = FakeRunner((1, "", "pfctl: /dev/pf: No such file or directory\n"), OK, OK)
    F.FreeBSDEngine(run=run).stop(rec, {"jid": 7})
    assert len(run.calls) == 3


def test_stop_keeps_the_epairs_of_a_jail_that_could_not_be_removed_source_derived(tmp_path):
    """source-derived unmount failure (usr.sbin/jail/command.c): the jail may still use them."""
    rec = prepared(tmp_path, VNET_POD)
    target = rec["apps"][0]["rootfs"] + "/dev"
    run = FakeRunner(OK, OK, (1, "", "jail: %s: /sbin/umount %s: failed\n" % (NAME_A, target)))
    with pytest.raises(F.JailMountError):
        F.FreeBSDEngine(run=run).stop(rec, {"jid": 7})
    assert len(run.calls) == 3


# --- networks: what pods.py asks of the engine ----------------------------------------------------

HOOKS_NAT = 'nat-anchor "jetpack/*" all\nrdr-anchor "jetpack/*" all\n'   # source-derived pfctl -s nat
HOOKS_RULES = 'anchor "jetpack/*" all\n'                                 # source-derived pfctl -s rules


def test_sync_networks_sets_up_the_networks_in_use_and_removes_the_others():
    run = FakeRunner((0, HOOKS_NAT, ""), (0, HOOKS_RULES, ""), absent("jp-default"), OK, OK, OK, OK, OK, OK)
    F.FreeBSDEngine(run=run, egress_if="em0").sync_networks([DEFAULT_NET], [], [BACKEND_NET])
    assert run.calls == [
        ["/sbin/pfctl", "-P", "-s", "nat"], ["/sbin/pfctl", "-P", "-s", "rules"],   # pf.conf hooks there?
        [IFCONFIG, "jp-default"],                                                    # ifconfig(8) probe
        [IFCONFIG, "lo", "create", "name", "jp-default"],                            # a cloned lo(4)
        [IFCONFIG, "jp-default", "inet", "172.23.0.1/32", "alias"],  # the gateway: hostd listens there
        [IFCONFIG, "jp-default", "up"],
        pf_load("jetpack/nat-default"),                                              # pfctl(8) -a -f -
        pf_flush("jetpack/nat-backend"), [IFCONFIG, "jp-backend", "destroy"],        # unused: removed
    ]
    assert run.stdins[6] == N.render_nat_anchor(DEFAULT_NET, "em0")
    assert run.stdins[6] == (GOLDEN / "network" / "nat-default.pf").read_text()


def test_sync_networks_makes_a_vnet_network_a_bridge_with_its_gateway():
    run = FakeRunner(absent("jp-backend"), OK, OK, OK, OK, OK)
    F.FreeBSDEngine(run=run).sync_networks([dict(BACKEND_NET, mode="vnet")], [], [])
    assert run.calls == [[IFCONFIG, "jp-backend"], [IFCONFIG, "bridge", "create", "name", "jp-backend"],
                         [IFCONFIG, "jp-backend", "inet", "10.88.0.1/24", "alias"],
                         [IFCONFIG, "jp-backend", "inet6", "fd00:88::1", "prefixlen", "64", "alias"],
                         [IFCONFIG, "jp-backend", "up"], pf_flush("jetpack/nat-backend")]


def test_sync_networks_refuses_missing_pf_hooks_before_changing_anything():
    run = FakeRunner((0, "", ""), (0, "", ""))
    with pytest.raises(N.PfHooksMissing):
        F.FreeBSDEngine(run=run, egress_if="em0").sync_networks([DEFAULT_NET], [], [])
    assert len(run.calls) == 2


@pytest.mark.parametrize("networks,words", [
    ([DEFAULT_NET], "network default has NAT on"),
    ([dict(DEFAULT_NET, egress_if="em0"), dict(BACKEND_NET, mode="bridge")], "mode 'bridge'"),
    ([dict(DEFAULT_NET, egress_if="em0 x")], "not usable"),
], ids=["NAT on and no egress interface", "unknown mode in a later network", "unusable egress_if"])
def test_sync_networks_refuses_bad_input_before_running_anything(networks, words):
    run = FakeRunner()
    with pytest.raises(InvalidInput, match=re.escape(words)):
        F.FreeBSDEngine(run=run).sync_networks(networks, [], [])
    assert run.calls == []


def test_addresses_in_use_are_every_address_of_recorded_ifconfig():
    """outputs/ifconfig-bridge-2 (ifconfig(8) of a 14.x host): inet and inet6, without %scope."""
    run = FakeRunner((0, sample("ifconfig-bridge-2")[1], ""))
    assert F.FreeBSDEngine(run=run).addresses_in_use() == {
        "192.168.1.239", "fe80::428d:5cff:fe58:c5f6", "2605:59c8:892:2010:428d:5cff:fe58:c5f6",
        "fd1f:71ae:fb88:10:428d:5cff:fe58:c5f6", "127.0.0.1", "::1", "fe80::1"}
    assert run.calls == [[IFCONFIG, "-a"]]


def port(**fields):
    return dict({"protocol": "tcp", "host_ip": None, "host_port": 8080, "pod_port": 80, "address": "172.23.0.2",
                 "pod": "web"}, **fields)


def test_check_ports_asks_the_host_only_about_a_host_ip():
    run = FakeRunner((0, sample("ifconfig-bridge-2")[1], ""))
    F.FreeBSDEngine(run=run).check_ports([port(), port(host_port=8443, host_ip="192.168.1.239")])
    assert run.calls == [[IFCONFIG, "-a"]]
    run = FakeRunner()
    F.FreeBSDEngine(run=run).check_ports([port()])
    assert run.calls == []


@pytest.mark.parametrize("ports,words", [
    ([port(host_ip="203.0.113.10")], "not an address of this host"),
    ([port(), port(pod_port=81)], "published twice"),
    ([port(protocol="sctp")], "sctp cannot be published"),
    ([port(host_port=0)], "port number"),
], ids=["host_ip elsewhere (recorded ifconfig-bridge-2 as the host)", "one host port to two pod ports",
        "sctp", "port 0"])
def test_check_ports_refuses(ports, words):
    run = FakeRunner((0, sample("ifconfig-bridge-2")[1], ""))
    with pytest.raises(InvalidInput, match=words):
        F.FreeBSDEngine(run=run).check_ports(ports)


def test_the_engine_offers_every_method_pods_py_calls():
    """pods.py drives both engines through the same methods (grep pods.py for `engine.`)."""
    source = (Path(F.__file__).parents[1] / "pods.py").read_text()
    called = set(re.findall(r"\bengine\.([a-z_]+)\(", source))
    assert {"addresses_in_use", "check_ports", "sync_networks", "prepare", "running", "stop"} <= called
    engine = F.FreeBSDEngine(run=FakeRunner())
    assert [name for name in sorted(called) if not callable(getattr(engine, name, None))] == []


# --- limits: rctl(8) rules around the jail (issue 7) -------------------------------------------------------
# rctl(8) RULE SYNTAX "subject:subject-id:resource:action=amount" with subject jail and the jail's name;
# rctl(8) -a adds a rule and prints nothing, -r removes every rule matching a filter; sysctl(8) -n prints
# the value alone (source-derived: no recording exists, outputs/MISSING.md). rctl(4) LOADER TUNABLES:
# kern.racct.enable is a boot-time tunable, so a host without it is refused, never changed.
LIMITED = {"memory": {"request": 64 << 20, "limit": 64 << 20}, "cpu": {"request": 500, "limit": 500},
           "processes": 50, "open_files": 1024}


def limited(tmp_path):
    rec = prepared(tmp_path)
    rec["isolators"] = dict(LIMITED)
    return rec


def rctl_rules(rec):
    name = F.jail_name(rec)
    return ["jail:%s:memoryuse:deny=%d" % (name, 64 << 20), "jail:%s:pcpu:deny=50" % name,
            "jail:%s:maxproc:deny=50" % name, "jail:%s:openfiles:deny=1024" % name]


def test_start_of_a_limited_pod_adds_its_rctl_rules_before_jail_c(tmp_path):
    rec = limited(tmp_path)
    name = F.jail_name(rec)
    run = FakeRunner((0, "1\n", ""), (0, "", ""), *[(0, "", "")] * 4, (0, "7\n", ""))
    assert F.FreeBSDEngine(run=run).start(rec) == {"jid": 7, "name": name}
    assert run.calls == ([["/sbin/sysctl", "-n", "kern.racct.enable"], ["/usr/bin/rctl", "-r", "jail:" + name]]
                         + [["/usr/bin/rctl", "-a", rule] for rule in rctl_rules(rec)]
                         + [["/usr/sbin/jail", "-i", "-f", F.conf_path(rec), "-c", name]])


def test_start_with_racct_off_is_refused_before_anything_runs(tmp_path):
    rec = limited(tmp_path)
    run = FakeRunner((0, "0\n", ""))
    with pytest.raises(CommandError, match=r"kern\.racct\.enable=1 to /boot/loader\.conf and reboot"):
        F.FreeBSDEngine(run=run).start(rec)
    assert run.calls == [["/sbin/sysctl", "-n", "kern.racct.enable"]]


def test_start_refused_by_rctl_recorded_racct_disabled_creates_no_jail(tmp_path):
    """outputs/rctl-disabled-1: what rctl -a says when RACCT is compiled in but off."""
    rec = limited(tmp_path)
    disabled = (1, "", "rctl: RACCT/RCTL present, but disabled; enable using kern.racct.enable=1 tunable\n")
    run = FakeRunner((0, "1\n", ""), (0, "", ""), disabled, (0, "", ""))
    with pytest.raises(CommandError, match="RACCT, which is off on this host: add kern.racct.enable=1"):
        F.FreeBSDEngine(run=run).start(rec)
    assert run.calls[-1] == ["/usr/bin/rctl", "-r", "jail:" + F.jail_name(rec)]
    assert not any(call[0] == "/usr/sbin/jail" for call in run.calls)


def test_a_failed_jail_c_removes_the_rules_again(tmp_path):
    rec = limited(tmp_path)
    name = F.jail_name(rec)
    failed = (1, "", 'jail: "%s" already exists\n' % name)   # source-derived, as the test above
    run = FakeRunner((0, "1\n", ""), (0, "", ""), *[(0, "", "")] * 4, failed, (0, "", ""))
    with pytest.raises(CommandError):
        F.FreeBSDEngine(run=run).start(rec)
    assert run.calls[-1] == ["/usr/bin/rctl", "-r", "jail:" + name]


def test_stop_of_a_limited_pod_removes_its_rules_after_jail_r(tmp_path):
    rec = limited(tmp_path)
    name = F.jail_name(rec)
    run = FakeRunner((0, name + ": removed\n", ""), (0, "", ""))
    F.FreeBSDEngine(run=run).stop(rec, {"jid": 7, "name": name})
    assert run.calls == [["/usr/sbin/jail", "-f", F.conf_path(rec), "-r", name], ["/usr/bin/rctl", "-r", "jail:" + name]]


def test_stop_keeps_the_rules_of_a_jail_that_could_not_be_removed_source_derived(tmp_path):
    rec = limited(tmp_path)
    target = rec["apps"][0]["rootfs"] + "/dev"
    run = FakeRunner((1, "", "jail: %s: /sbin/umount %s: failed\n" % (F.jail_name(rec), target)))
    with pytest.raises(F.JailMountError):
        F.FreeBSDEngine(run=run).stop(rec, {"jid": 7})
    assert len(run.calls) == 1   # the jail may still run: its limits stay


def test_pods_without_limits_run_no_rctl(tmp_path):
    rec = prepared(tmp_path)
    rec["isolators"] = {"capabilities": {"remove": ["CAP_KILL"]}}   # nothing rctl(8) enforces
    run = FakeRunner((0, "7\n", ""), (0, F.jail_name(rec) + ": removed\n", ""))
    engine = F.FreeBSDEngine(run=run)
    engine.stop(rec, engine.start(rec))
    assert [call[0] for call in run.calls] == ["/usr/sbin/jail", "/usr/sbin/jail"]
