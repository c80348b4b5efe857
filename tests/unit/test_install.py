"""install.ensure_installed: the core copies itself once per content, from a directory or a zip."""
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import install
from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack.errors import JetpackError

PREFIX = "ansible_collections/jetpack/runtime/plugins/module_utils/jetpack/"


@pytest.fixture
def source(tmp_path):
    """A copy of the package that a test may change."""
    path = tmp_path / "src" / "jetpack"
    shutil.copytree(install.package_dir(), str(path), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return path


def snapshot(top):
    """{relative path: (inode, mtime_ns, size)} of everything under top."""
    found = {}
    for here, dirs, files in os.walk(str(top)):
        for name in dirs + files:
            path = os.path.join(here, name)
            st = os.lstat(path)
            found[os.path.relpath(path, str(top))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return found


def py_files(top):
    return sorted(os.path.relpath(os.path.join(here, name), str(top)).replace(os.sep, "/")
                  for here, dirs, files in os.walk(str(top)) for name in files if name.endswith(".py"))


def test_installs_exactly_the_package_sources(tmp_path, source):
    base = tmp_path / "core"
    core = install.ensure_installed(base=str(base), source=str(source))
    assert os.path.dirname(core) == str(base)
    installed = os.path.join(core, "jetpack")
    assert py_files(installed) == py_files(source)
    assert "engines/__init__.py" in py_files(installed) and "supervisor.py" in py_files(installed)
    for name in py_files(source):
        with open(os.path.join(installed, name), "rb") as a, open(os.path.join(str(source), name), "rb") as b:
            assert a.read() == b.read()
    assert not [n for n in os.listdir(installed) if n == "__pycache__"]
    assert stat.S_IMODE(os.stat(core).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(os.path.join(installed, "supervisor.py")).st_mode) == 0o644
    assert os.listdir(str(base)) == [os.path.basename(core)]        # no temporary directory left


def test_a_second_call_with_the_same_content_changes_nothing(tmp_path, source):
    base = tmp_path / "core"
    first = install.ensure_installed(base=str(base), source=str(source))
    before = snapshot(base)
    assert install.ensure_installed(base=str(base), source=str(source)) == first
    assert snapshot(base) == before


def test_one_changed_byte_installs_a_new_version_beside_the_old(tmp_path, source):
    base = tmp_path / "core"
    old = install.ensure_installed(base=str(base), source=str(source))
    old_files = snapshot(old)
    target = source / "supervisor.py"
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x01
    target.write_bytes(bytes(data))
    new = install.ensure_installed(base=str(base), source=str(source))
    assert new != old
    assert sorted(os.listdir(str(base))) == sorted([os.path.basename(old), os.path.basename(new)])
    assert snapshot(old) == old_files                      # the old version is kept as it was
    with open(os.path.join(new, "jetpack", "supervisor.py"), "rb") as f:
        assert f.read() == bytes(data)


def test_a_new_file_is_a_new_version_and_bytecode_is_not(tmp_path, source):
    base = tmp_path / "core"
    first = install.ensure_installed(base=str(base), source=str(source))
    (source / "__pycache__").mkdir(exist_ok=True)
    (source / "__pycache__" / "errors.cpython-311.pyc").write_bytes(b"not source")
    (source / "notes.txt").write_text("not source")
    assert install.ensure_installed(base=str(base), source=str(source)) == first
    (source / "extra.py").write_text("X = 1\n")
    assert install.ensure_installed(base=str(base), source=str(source)) != first


def test_the_hash_covers_paths_not_only_bytes(source):
    files = install.read_sources(str(source))
    moved = dict(files)
    moved["engines/moved.py"] = moved.pop("errors.py")
    assert install.content_hash(moved) != install.content_hash(files)
    assert install.content_hash(dict(reversed(list(files.items())))) == install.content_hash(files)


def test_installing_from_ansiballz_zip_gives_the_same_version(tmp_path, source):
    """Modules run from a zip (AnsiballZ): the package's __file__ is inside the archive."""
    base = tmp_path / "core"
    from_directory = install.ensure_installed(base=str(base), source=str(source))
    archive = tmp_path / "payload.zip"
    with zipfile.ZipFile(str(archive), "w") as z:
        parts = PREFIX.strip("/").split("/")
        for depth in range(1, len(parts)):
            z.writestr("/".join(parts[:depth]) + "/__init__.py", "")
        for name in py_files(source):
            z.write(os.path.join(str(source), name), PREFIX + name)
        z.writestr(PREFIX + "__pycache__/x.cpython-311.pyc", b"ignored")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); "
              "from ansible_collections.jetpack.runtime.plugins.module_utils.jetpack import install; "
              "assert '.zip' in install.__file__, install.__file__; "
              "print(install.ensure_installed(base=sys.argv[2]))")
    result = subprocess.run([sys.executable, "-c", script, str(archive), str(base)], capture_output=True, text=True,
                            cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == from_directory
    assert len(os.listdir(str(base))) == 1


def test_the_installed_core_runs_without_the_source(tmp_path, source):
    core = install.ensure_installed(base=str(tmp_path / "core"), source=str(source))
    shutil.rmtree(str(source))
    result = subprocess.run([sys.executable, "-c", "import jetpack.supervisor, jetpack.zygote, jetpack.execution; "
                             "print(jetpack.zygote.own_core())"],
                            capture_output=True, text=True, cwd="/", env={"PYTHONPATH": core, "PATH": "/usr/bin:/bin"},
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == core
    result = subprocess.run([sys.executable, "-m", "jetpack.zygote"], capture_output=True, text=True, cwd="/",
                            env={"PYTHONPATH": core, "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 2 and "usage" in result.stderr


def test_a_package_missing_a_supervisor_module_is_refused(tmp_path, source):
    (source / "execution.py").unlink()
    with pytest.raises(JetpackError, match="execution.py"):
        install.ensure_installed(base=str(tmp_path / "core"), source=str(source))
    assert not (tmp_path / "core").exists()


def test_a_base_others_can_write_is_refused(tmp_path, source):
    base = tmp_path / "core"
    base.mkdir()
    base.chmod(0o777)
    with pytest.raises(JetpackError, match="writable by no one else"):
        install.ensure_installed(base=str(base), source=str(source))
    assert os.listdir(str(base)) == []


def test_a_version_directory_others_can_write_is_refused(tmp_path, source):
    core = install.ensure_installed(base=str(tmp_path / "core"), source=str(source))
    os.chmod(core, 0o777)
    with pytest.raises(JetpackError, match="writable by no one else"):
        install.ensure_installed(base=str(tmp_path / "core"), source=str(source))


def test_an_interrupted_install_leaves_nothing_in_use(tmp_path, source):
    base = tmp_path / "core"
    base.mkdir()
    stale = base / ".tmp-crashed"
    (stale / "jetpack").mkdir(parents=True)
    (stale / "jetpack" / "errors.py").write_text("half")
    old = 1_000_000
    os.utime(str(stale), (old, old))
    core = install.ensure_installed(base=str(base), source=str(source))
    assert os.listdir(str(base)) == [os.path.basename(core)]      # the stale temp dir was collected
