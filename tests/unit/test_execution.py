"""execution.py without a pod: accounts files, credentials, paths inside a rootfs, environment, exec lookup."""
import os

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import execution
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import InvalidInput

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment:x:1:1::/:/bin/sh
www:x:33:34:web server:/var/www:/sbin/nologin
+nis:x:77:77::/:/bin/sh
broken:x:notanumber:1::/:/bin/sh
short:x:5
1000:x:5000:5001::/:/bin/sh
"""
GROUP = """\
root:x:0:
web:x:34:
extra:x:500:other, www ,more
www-only:x:501:www
nope:x:502:wwwx
600:x:6000:
"""


def rootfs_with(tmp_path, files):
    root = tmp_path / "rootfs"
    for path, content in files.items():
        full = root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(content)
    root.mkdir(exist_ok=True)
    return str(root)


def app(rootfs, **fields):
    base = {"name": "web", "rootfs": rootfs, "user": "0", "group": "0", "supplementary_gids": [], "environment": {}}
    base.update(fields)
    return base


# --- parsing --------------------------------------------------------------------------------
def test_parse_passwd_keeps_well_formed_entries_only():
    assert execution.parse_passwd(PASSWD) == [
        execution.PasswdEntry("root", 0, 0), execution.PasswdEntry("www", 33, 34),
        execution.PasswdEntry("1000", 5000, 5001)]


def test_parse_group_splits_members():
    groups = {g.name: g for g in execution.parse_group(GROUP)}
    assert groups["extra"] == execution.GroupEntry("extra", 500, ("other", "www", "more"))
    assert groups["web"].members == () and groups["600"].gid == 6000


def test_parse_empty_or_missing_files():
    assert execution.parse_passwd(None) == [] and execution.parse_group("") == []


# --- credentials ----------------------------------------------------------------------------
@pytest.fixture
def accounts_rootfs(tmp_path):
    return rootfs_with(tmp_path, {"etc/passwd": PASSWD, "etc/group": GROUP})


def test_user_and_group_by_name(accounts_rootfs):
    credentials = execution.resolve_credentials(app(accounts_rootfs, user="www", group="web",
                                                    supplementary_gids=[700, 500]))
    assert credentials == execution.Credentials(33, 34, (700, 500, 501))  # app's, then the user's, once each


def test_a_users_groups_are_added_only_when_named(accounts_rootfs):
    credentials = execution.resolve_credentials(app(accounts_rootfs, user="33", group="34"))
    assert credentials == execution.Credentials(33, 34, ())


def test_numbers_without_an_entry_are_numbers(accounts_rootfs):
    assert execution.resolve_credentials(app(accounts_rootfs, user="1234", group="4321", supplementary_gids=[9])) \
        == execution.Credentials(1234, 4321, (9,))


def test_an_all_digit_name_with_an_entry_is_that_entry(accounts_rootfs):
    assert execution.resolve_credentials(app(accounts_rootfs, user="1000", group="600")) \
        == execution.Credentials(5000, 6000, ())


def test_without_a_group_the_users_primary_group(accounts_rootfs):
    assert execution.resolve_credentials(app(accounts_rootfs, user="www", group="")).gid == 34


def test_a_path_means_its_owner_inside_the_rootfs(accounts_rootfs):
    owned = os.path.join(accounts_rootfs, "srv", "data")
    os.makedirs(owned)
    os.symlink("/srv/data", os.path.join(accounts_rootfs, "link"))  # absolute: the rootfs's own /srv
    if os.geteuid() == 0:
        os.chown(owned, 2001, 2002)
    info = os.stat(owned)
    for value in ("/srv/data", "/link", "/srv/../srv/./data"):
        credentials = execution.resolve_credentials(app(accounts_rootfs, user=value, group=value))
        assert (credentials.uid, credentials.gid) == (info.st_uid, info.st_gid)


def test_unknown_names_say_what_to_do(accounts_rootfs):
    with pytest.raises(InvalidInput) as info:
        execution.resolve_credentials(app(accounts_rootfs, user="nobody"))
    assert str(info.value).startswith("app web: user 'nobody' is not in the image's /etc/passwd")
    with pytest.raises(InvalidInput) as info:
        execution.resolve_credentials(app(accounts_rootfs, group="nogroup"))
    assert "group 'nogroup' is not in the image's /etc/group" in str(info.value)
    with pytest.raises(InvalidInput) as info:
        execution.resolve_credentials(app(accounts_rootfs, user="/missing"))
    assert "app web: /missing:" in str(info.value)


def test_an_image_without_accounts_files_takes_numbers(tmp_path):
    rootfs = rootfs_with(tmp_path, {})
    assert execution.resolve_credentials(app(rootfs, user="7", group="8")) == execution.Credentials(7, 8, ())


# --- hostile accounts files -----------------------------------------------------------------
def host_decoy(tmp_path):
    """A file outside the rootfs that a hostile symlink aims at."""
    decoy = tmp_path / "host-passwd"
    decoy.write_text("evil:x:0:0::/:/bin/sh\n")
    return decoy


@pytest.mark.parametrize("target", ["../../host-passwd", "../../../../../../../../%s"])
def test_a_passwd_symlink_leading_out_of_the_rootfs_is_refused(tmp_path, target):
    decoy = host_decoy(tmp_path)
    rootfs = rootfs_with(tmp_path, {"etc/group": GROUP})
    os.symlink(target.replace("%s", str(decoy).lstrip("/")), os.path.join(rootfs, "etc", "passwd"))
    with pytest.raises(InvalidInput) as info:
        execution.resolve_credentials(app(rootfs, user="evil"))
    assert "cannot read /etc/passwd of the image" in str(info.value) and "leads out of the rootfs" in str(info.value)


def test_an_absolute_symlink_stays_inside_the_rootfs(tmp_path):
    decoy = host_decoy(tmp_path)
    rootfs = rootfs_with(tmp_path, {"etc/group": GROUP, str(decoy).lstrip("/"): "inside:x:9:9::/:/bin/sh\n"})
    os.symlink(str(decoy), os.path.join(rootfs, "etc", "passwd"))  # on the host it would be the decoy
    assert execution.resolve_credentials(app(rootfs, user="inside", group="9")).uid == 9
    with pytest.raises(InvalidInput):
        execution.resolve_credentials(app(rootfs, user="evil"))


def test_a_symlinked_etc_to_the_host_root_is_the_rootfs(tmp_path):
    rootfs = rootfs_with(tmp_path, {"passwd": "top:x:4:4::/:/bin/sh\n"})
    os.symlink("/", os.path.join(rootfs, "etc"))
    assert execution.resolve_credentials(app(rootfs, user="top", group="4")).uid == 4


def test_symlink_loops_and_odd_files_are_refused(tmp_path):
    rootfs = rootfs_with(tmp_path, {})
    etc = os.path.join(rootfs, "etc")
    os.makedirs(etc)
    os.symlink("passwd", os.path.join(etc, "passwd"))
    with pytest.raises(InvalidInput) as info:
        execution.resolve_credentials(app(rootfs, user="x"))
    assert "too many levels of symlinks" in str(info.value)
    os.unlink(os.path.join(etc, "passwd"))
    os.mkfifo(os.path.join(etc, "group"))  # reading it would block forever
    with pytest.raises(InvalidInput) as info:
        execution.resolve_credentials(app(rootfs, user="1", group="x"))
    assert "/etc/group is not a regular file" in str(info.value)


def test_a_file_where_a_directory_should_be(tmp_path):
    rootfs = rootfs_with(tmp_path, {"etc": "not a directory"})
    with pytest.raises(InvalidInput) as info:
        execution.resolve_credentials(app(rootfs, user="x"))
    assert "cannot read /etc/passwd of the image" in str(info.value)


def test_an_owner_path_leading_out_is_refused(tmp_path):
    rootfs = rootfs_with(tmp_path, {})
    os.symlink("../..", os.path.join(rootfs, "up"))
    with pytest.raises(InvalidInput) as info:
        execution.resolve_credentials(app(rootfs, user="/up/etc"))
    assert "leads out of the rootfs" in str(info.value)


# --- environment ----------------------------------------------------------------------------
def test_the_environment_is_appcs_then_the_apps():
    environment = execution.build_environment(app("/", environment={"B": "2", "A": "1"}))
    assert list(environment.items()) == [
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), ("AC_APP_NAME", "web"),
        ("AC_METADATA_URL", ""), ("container", "jetpack"), ("B", "2"), ("A", "1")]


def test_the_app_sets_path_but_not_appcs_own_variables(monkeypatch):
    monkeypatch.setenv("HOME", "/root")
    environment = execution.build_environment(app("/", environment={
        "PATH": "/opt/bin", "AC_APP_NAME": "forged", "container": "other"}))
    assert environment == {"PATH": "/opt/bin", "AC_APP_NAME": "web", "AC_METADATA_URL": "", "container": "jetpack"}


@pytest.mark.parametrize("name, value", [("", "x"), ("A=B", "x"), ("A\0", "x"), ("A", "x\0y")])
def test_unusable_variables_are_refused(name, value):
    with pytest.raises(InvalidInput) as info:
        execution.build_environment(app("/", environment={name: value}))
    assert str(info.value).startswith("app web: environment variable")


# --- exec lookup ----------------------------------------------------------------------------
def test_exec_candidates_follow_execvp():
    assert execution.exec_candidates("sh", "/usr/bin:/bin") == ["/usr/bin/sh", "/bin/sh"]
    assert execution.exec_candidates("sh", "/bin::/sbin") == ["/bin/sh", "./sh", "/sbin/sh"]
    assert execution.exec_candidates("./run", "/bin") == ["./run"]
    assert execution.exec_candidates("/bin/sh", "/usr/bin") == ["/bin/sh"]
