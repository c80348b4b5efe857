"""The stack roles' files that run inside their images, checked without root or images.

nginx.conf.j2 rendered as the nginx role renders it (its upstream split), the start scripts with `sh -n`.
The running stack is proven by the webapp scenario (extensions/molecule/webapp).
"""
import os
import re
import subprocess

import jinja2
import pytest

ROLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles")
SCRIPTS = ["postgresql/files/jetpack-postgresql", "redis/files/jetpack-redis", "nginx/files/jetpack-nginx"]


def render_nginx(upstreams):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLES, "nginx", "templates")),
                             keep_trailing_newline=True, trim_blocks=True, undefined=jinja2.StrictUndefined)
    return env.get_template("nginx.conf.j2").render(
        ansible_managed="Ansible managed", nginx_upstreams=upstreams, nginx_upstream_port=8000, nginx_port=80,
        nginx_platform={"user": "www-data"})


def split(conf):
    block = re.search(r"split_clients \S+ \$jetpack_upstream \{\n(.*?)\n    \}", conf, re.S).group(1)
    return re.findall(r"^\s+(\S+) (\S+);$", block, re.M)


@pytest.mark.parametrize("upstreams, shares", [
    (["app-1"], [("*", "app-1")]),
    (["app-1", "app-2"], [("50.00%", "app-1"), ("*", "app-2")]),
    (["app-1", "app-2", "app-3"], [("33.33%", "app-1"), ("33.33%", "app-2"), ("*", "app-3")]),
])
def test_nginx_spreads_requests_over_every_upstream(upstreams, shares):
    assert split(render_nginx(upstreams)) == shares


def test_nginx_resolves_upstream_names_at_request_time():
    conf = render_nginx(["app-1", "app-2"])
    assert "include jetpack-resolver.conf;" in conf
    assert "proxy_pass http://$jetpack_upstream:8000;" in conf
    assert conf.count("{") == conf.count("}")


@pytest.mark.parametrize("upstreams, fallbacks", [
    (["app-1"], [("app-1", "app-1")]),
    (["app-1", "app-2", "app-3"], [("app-1", "app-2"), ("app-2", "app-3"), ("app-3", "app-1")]),
])
def test_nginx_sends_a_failed_request_to_the_next_upstream(upstreams, fallbacks):
    conf = render_nginx(upstreams)
    block = re.search(r"map \$jetpack_upstream \$jetpack_fallback \{\n(.*?)\n    \}", conf, re.S).group(1)
    assert re.findall(r"^\s+(\S+) (\S+);$", block, re.M) == fallbacks
    assert "error_page 502 504 = @fallback;" in conf
    assert "proxy_pass http://$jetpack_fallback:8000;" in conf


@pytest.mark.parametrize("script", SCRIPTS)
def test_start_scripts_are_valid_sh(script):
    path = os.path.join(ROLES, script)
    assert os.access(path, os.X_OK)
    proc = subprocess.run(["sh", "-n", path], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_script_refuses_an_unknown_command_and_missing_settings():
    path = os.path.join(ROLES, "redis/files/jetpack-redis")
    missing = subprocess.run(["sh", path, "run"], capture_output=True, text=True, check=False, env={})
    assert missing.returncode != 0 and "REDIS_DATA" in missing.stderr
    env = {"REDIS_DATA": "/nonexistent", "REDIS_SERVER": "/bin/false", "REDIS_PORT": "6379"}
    unknown = subprocess.run(["sh", path, "start"], capture_output=True, text=True, check=False, env=env)
    assert unknown.returncode == 2 and "usage" in unknown.stderr
