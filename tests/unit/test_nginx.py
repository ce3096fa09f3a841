"""The edge's nginx files as rendered: authentication per route group, MCP limits,
forwarded headers in every location, Mozilla's intermediate TLS, the password hash."""

from __future__ import annotations

import re
import shutil
import subprocess

import bcrypt
import pytest

from operations import nginx, render
from orchestra_infra import config, htpasswd, secrets
from orchestra_infra.errors import ConfigError
from orchestra_infra.schema import validate

SITE = "nginx/etc/nginx/sites-available/orchestra.conf.j2"
HTTP_LEVEL = "nginx/etc/nginx/conf.d/orchestra.conf.j2"
MCP = ("memory", "task")
FORWARDED = ("Host $host", "X-Real-IP $remote_addr",
             "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme")
PASSWORD = "p" * 43


def _config(**overrides):
    return validate({**config.environment_data("sandbox"), **overrides}, secrets.NAMES)


def _site(cfg, masked=True) -> str:
    context = {**nginx.site_context(cfg), "acme_only": False,
               "mcp_servers": {name: ["127.0.0.1:1 max_fails=0"] for name in MCP}}
    return render.render(SITE, context, masked=masked)


def _locations(text: str) -> dict[str, list[str]]:
    """Each location of the TLS server: its directives, one per line."""
    tls_server = text.split("listen 443", 1)[1]
    return {path: [line.strip() for line in body.splitlines() if line.strip()]
            for path, body in re.findall(r"\n    location (\S+) \{\n(.*?)\n    \}",
                                         tls_server, re.S)}


def _has_basic_auth(directives: list[str]) -> bool:
    return 'auth_basic "Orchestra";' in directives and \
        "auth_basic_user_file /etc/nginx/orchestra.htpasswd;" in directives


def test_by_default_the_admin_and_every_mcp_server_need_the_password_and_the_api_does_not():
    locations = _locations(_site(_config()))
    assert list(locations) == ["/api/", "@api_idempotent", "/mcp/memory/", "/mcp/task/",
                               "@orchestra_mcp_unreachable", "/"]
    # A named location is reached only from another (an error page), past its checks.
    assert {path: _has_basic_auth(d) for path, d in locations.items()} == {
        "/api/": False, "@api_idempotent": False, "/mcp/memory/": True, "/mcp/task/": True,
        "@orchestra_mcp_unreachable": False, "/": True}


def test_an_authenticated_api_keeps_its_health_public():
    cfg = _config(edge_auth={"admin": ["basic"], "mcp": ["basic"], "api": ["basic"]},
                  edge_public_api_paths=["/api/health/", "/api/version/"])
    locations = _locations(_site(cfg))
    assert list(locations)[:5] == ["/api/health/", "/api/version/", "@api_idempotent_public",
                                   "/api/", "@api_idempotent"]
    for public in ("/api/health/", "/api/version/", "@api_idempotent_public"):
        assert not _has_basic_auth(locations[public]), public
    assert _has_basic_auth(locations["/api/"]) and _has_basic_auth(locations["@api_idempotent"])
    # The public paths are proxied exactly like the rest of the API.
    strip = {'auth_basic "Orchestra";', "auth_basic_user_file /etc/nginx/orchestra.htpasswd;",
             'proxy_set_header Authorization "";'}
    assert [d.replace("@api_idempotent;", "@api_idempotent_public;")
            for d in locations["/api/"] if d not in strip] == locations["/api/health/"]
    assert [d for d in locations["@api_idempotent"] if d not in strip] == \
        locations["@api_idempotent_public"]


@pytest.mark.parametrize("path, twin", [("/api/", "@api_idempotent"),
                                        ("/api/health/", "@api_idempotent_public")])
def test_a_get_waits_the_short_timeout_and_then_asks_the_next_instance(path, twin):
    """A hung API instance (it accepts, never answers) costs a GET or HEAD
    nginx_api_idempotent_read_timeout, then the next instance answers; other methods wait
    nginx_api_read_timeout and are never retried (nginx's rule for non-idempotent ones)."""
    cfg = _config(edge_auth={"admin": ["basic"], "mcp": ["basic"], "api": ["basic"]},
                  edge_public_api_paths=["/api/health/"],
                  nginx_api_read_timeout=90, nginx_api_idempotent_read_timeout=4)
    locations = _locations(_site(cfg))
    assert locations[path][:2] == [f"error_page 418 = {twin};",
                                   "if ($request_method ~ ^(GET|HEAD)$) { return 418; }"]
    assert "proxy_read_timeout 90s;" in locations[path]
    assert "proxy_read_timeout 4s;" in locations[twin]
    assert "proxy_next_upstream error timeout http_502 http_503;" in locations[twin]
    assert not any("non_idempotent" in d for d in locations[path] + locations[twin])


@pytest.mark.parametrize("edge_auth", [
    {"admin": ["basic"], "mcp": ["basic"], "api": []},
    {"admin": ["allowlist", "basic"], "mcp": ["mtls"], "api": ["basic"]},
])
def test_every_location_that_sets_a_header_repeats_every_forwarded_header(edge_auth, tmp_path):
    # nginx drops every inherited proxy_set_header in a location that sets one of its own.
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    cfg = _config(edge_auth=edge_auth, edge_allow_networks=["10.0.0.0/8"],
                  edge_client_ca=str(ca))
    text = _site(cfg)
    server_level = text.split("location", 1)[0]
    assert "proxy_set_header" not in server_level
    for path, directives in _locations(text).items():
        headers = [d for d in directives if d.startswith("proxy_set_header ")]
        if headers:
            # The MCP servers accept loopback Host values only (the SDK's DNS-rebinding
            # protection): they get `localhost`, the client's name in X-Forwarded-Host.
            expected = FORWARDED if not path.startswith("/mcp/") else (
                "Host localhost", "X-Forwarded-Host $host", *FORWARDED[1:])
            for header in expected:
                assert f"proxy_set_header {header};" in headers, (path, header)
        # The edge's own credential never travels on to an app.
        basic = _has_basic_auth(directives)
        assert ('proxy_set_header Authorization "";' in directives) is basic, path


def test_mcp_routes_are_rate_and_connection_limited_and_stay_unbuffered():
    cfg = _config(nginx_mcp_rate="12r/s", nginx_mcp_burst=7, nginx_mcp_connections=5)
    memory = _locations(_site(cfg))["/mcp/memory/"]
    for directive in ("limit_req zone=orchestra_mcp burst=7 nodelay;",
                      "limit_conn orchestra_mcp_conn 5;", "proxy_buffering off;",
                      "proxy_read_timeout 3600s;", "proxy_send_timeout 3600s;",
                      "proxy_cache off;", "proxy_request_buffering off;",
                      "proxy_set_header Connection $connection_upgrade;",
                      "rewrite ^/mcp/memory(/.*)$ $1 break;",
                      "proxy_pass http://$orchestra_mcp_memory;",
                      "error_page 502 = @orchestra_mcp_unreachable;"):
        assert directive in memory
    # Nothing the Streamable HTTP transport needs is hidden or cut: its headers pass as they
    # are, and no method is refused.
    assert not [d for d in memory if d.startswith(("proxy_hide_header", "proxy_pass_header",
                                                   "limit_except", "proxy_method",
                                                   "proxy_ignore_headers"))]
    http_level = render.render(HTTP_LEVEL, {"config": cfg, "api_servers": [],
                                            "admin_servers": [], "mcp_servers": {}})
    assert "limit_req_zone $binary_remote_addr zone=orchestra_mcp:10m rate=12r/s;" in \
        http_level
    assert "limit_conn_zone $binary_remote_addr zone=orchestra_mcp_conn:10m;" in http_level
    assert "limit_conn_status 429;" in http_level


def test_allowlist_and_client_certificates(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    cfg = _config(edge_auth={"admin": ["allowlist"], "mcp": ["mtls", "basic"], "api": []},
                  edge_allow_networks=["203.0.113.7", "10.0.0.0/8"], edge_client_ca=str(ca))
    text = _site(cfg)
    assert "ssl_client_certificate /etc/orchestra/tls/edge-client-ca.pem;" in text
    assert "ssl_verify_client optional;" in text
    locations = _locations(text)
    assert locations["/"][:3] == ["allow 203.0.113.7;", "allow 10.0.0.0/8;", "deny all;"]
    assert not _has_basic_auth(locations["/"])
    memory = locations["/mcp/memory/"]
    assert "if ($ssl_client_verify != SUCCESS) { return 403; }" in memory
    assert _has_basic_auth(memory)
    for api in ("/api/", "@api_idempotent"):
        assert not any(d.startswith(("allow", "deny", "if ($ssl")) for d in locations[api])


def test_no_client_certificate_is_asked_for_without_mtls():
    assert "ssl_verify_client" not in _site(_config())


def test_tls_is_mozillas_intermediate_profile():
    text = _site(_config())
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert ("ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;") in text
    for directive in ("ssl_prefer_server_ciphers off;", "ssl_session_tickets off;",
                      "ssl_session_timeout 1d;", "ssl_session_cache shared:orchestra_tls:10m;",
                      'add_header Strict-Transport-Security "max-age=63072000" always;'):
        assert directive in text


@pytest.mark.skipif(not shutil.which("sed"), reason="needs sed")
@pytest.mark.parametrize(("line", "expected"), [
    # Debian 12's and Ubuntu 22.04's nginx.conf
    ("\tssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3; # Dropping SSLv3, ref: POODLE",
     "\tssl_protocols TLSv1.2 TLSv1.3; # Dropping SSLv3, ref: POODLE"),
    ("ssl_protocols TLSv1.1 TLSv1.2;", "ssl_protocols TLSv1.2 TLSv1.3;"),
    ("ssl_protocols TLSv1;", "ssl_protocols TLSv1.2 TLSv1.3;"),
    ("\tssl_protocols TLSv1.2 TLSv1.3;", None),  # converged: no match, nothing to do
    ("\tssl_prefer_server_ciphers on;", None),
])
def test_nginx_conf_loses_tls_10_and_11_with_the_deploys_own_sed(line, expected, tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"http {{\n{line}\n}}\n")
    found = subprocess.run(["grep", "-E", "-e", nginx._OLD_PROTOCOLS, str(conf)],
                           capture_output=True, text=True)
    assert (found.returncode == 0) is (expected is not None)
    subprocess.run(["sed", "-E", "-i", f"s/{nginx._OLD_PROTOCOLS}/ssl_protocols TLSv1.2 "
                    "TLSv1.3;/", str(conf)], check=True)
    assert conf.read_text() == f"http {{\n{expected or line}\n}}\n"


def test_the_password_file_holds_a_stable_bcrypt_hash_never_the_password(monkeypatch):
    monkeypatch.setattr(render, "_active", secrets.Secrets("test", {"edge_password": PASSWORD}))
    cfg = _config()
    src = "nginx/etc/nginx/orchestra.htpasswd.j2"
    first = render.render(src, {"config": cfg})
    assert first == render.render(src, {"config": cfg})  # a second deploy changes nothing
    user, hashed = first.rstrip("\n").split(":", 1)
    assert user == "orchestra" and PASSWORD not in first
    assert hashed.startswith("$2b$05$")
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())
    assert not htpasswd.matches("p" * 42, hashed)
    assert render.render(src, {"config": cfg}, masked=True) == \
        "orchestra:********(bcrypt of edge_password)\n"
    # Another secret, another salt and hash; another cost, another hash.
    assert htpasswd.bcrypt_hash("q" * 43, "orchestra", 5).split("$")[3][:22] != hashed[7:29]
    assert htpasswd.bcrypt_hash(PASSWORD, "orchestra", 6) != hashed


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"edge_auth": {"admin": ["basic"], "mcp": ["mtls"], "api": []}},
     "edge_client_ca: required by 'mtls' in edge_auth"),
    ({"edge_auth": {"admin": ["allowlist"], "mcp": [], "api": []}},
     "edge_allow_networks: required by 'allowlist' in edge_auth"),
    ({"edge_auth": {"admin": ["basic", "basic"], "mcp": [], "api": []}},
     "edge_auth.admin: a check is listed twice"),
    ({"edge_auth": {"admin": ["password"], "mcp": [], "api": []}}, "edge_auth.admin[0]"),
    ({"edge_auth": {"admin": [], "mcp": []}}, "edge_auth.api"),
    ({"edge_auth": {"admin": [], "mcp": [], "api": [], "ops": []}}, "edge_auth.ops"),
    ({"edge_auth_user": "a:b"}, "edge_auth_user"),
    ({"edge_auth_user": "orchestra\n"}, "edge_auth_user"),
    ({"edge_public_api_paths": ["/api/health"]}, "edge_public_api_paths[0]"),
    ({"edge_public_api_paths": ["/admin/"]}, "edge_public_api_paths[0]"),
    ({"edge_public_api_paths": ["/api/x;/"]}, "edge_public_api_paths[0]"),
    ({"edge_allow_networks": ["10.0.0.0/8; allow all"]}, "edge_allow_networks[0]"),
    ({"nginx_mcp_rate": "30r/s;"}, "nginx_mcp_rate"),
    ({"nginx_mcp_connections": 0}, "nginx_mcp_connections"),
    ({"edge_auth_bcrypt_cost": 3}, "edge_auth_bcrypt_cost"),
])
def test_bad_edge_settings_are_named(overrides, problem):
    with pytest.raises(ConfigError) as raised:
        _config(**overrides)
    assert any(line.startswith(problem) for line in raised.value.problems), \
        raised.value.problems


def test_mtls_needs_tls(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError) as raised:
        _config(nginx_tls="none", edge_client_ca=str(ca),
                edge_auth={"admin": ["mtls"], "mcp": [], "api": []})
    assert raised.value.problems == [
        "edge_auth: 'mtls' needs TLS at nginx (nginx_tls is 'none')"]


def test_an_edge_password_bcrypt_cannot_read_whole_is_refused(secrets_dir, monkeypatch):
    secrets.init("sandbox")
    monkeypatch.setenv("ORCHESTRA_SECRET_EDGE_PASSWORD", "x" * 73)
    with pytest.raises(ConfigError) as raised:
        secrets.load("sandbox")
    assert raised.value.problems == ["secrets.edge_password: too long (72 bytes at most)"]


def test_a_handshake_session_goes_to_the_instance_that_made_it_and_the_rest_anywhere():
    instances = [{"server": f"10.0.0.{h}:{port} max_fails=3 fail_timeout=10s",
                  "address": f"10.0.0.{h}:{port}", "route": f"{h}{port}abc"[:8]}
                 for h in (1, 2) for port in (8003, 8013)]
    http_level = render.render(HTTP_LEVEL, {
        "config": _config(), "api_servers": [], "admin_servers": [],
        "mcp_servers": {"memory": instances}})
    routes = http_level.split("map $http_mcp_session_id $orchestra_mcp_memory {", 1)[1]
    rules = [line.split() for line in routes.split("}", 1)[0].strip().splitlines()]
    assert rules == [["default", "orchestra_mcp_memory;"]] + [
        [f"~^{i['route']}-", f"orchestra_mcp_memory_{i['route']};"] for i in instances]
    # Without a session (or with an id no instance made): the least busy of all four.
    group = http_level.split("upstream orchestra_mcp_memory {", 1)[1].split("}", 1)[0]
    assert [line.strip() for line in group.strip().splitlines()] == [
        "zone orchestra_mcp_memory_upstream 64k;", "least_conn;",
        *(f"server {i['server']};" for i in instances), "keepalive 4;"]
    for instance in instances:
        alone = http_level.split(f"upstream orchestra_mcp_memory_{instance['route']} {{", 1)[1]
        assert [line.strip() for line in alone.split("}", 1)[0].strip().splitlines()] == [
            f"server {instance['address']};", "keepalive 2;"]


def test_every_shared_memory_zone_has_a_name_of_its_own():
    # limit_req_zone, limit_conn_zone and the upstreams' `zone` share one namespace: nginx -t
    # refuses a name declared twice ("already declared for a different use").
    conf = render.render(HTTP_LEVEL, {**nginx.site_context(_config()), **{
        "api_servers": ["127.0.0.1:8000"], "admin_servers": ["127.0.0.1:3000"],
        "mcp_servers": {name: [{"server": "127.0.0.1:8003", "address": "127.0.0.1:8003",
                                "route": "0a1b2c3d"}] for name in MCP}}})
    names = re.findall(r"\bzone[= ](\w+)", conf)
    assert len(names) == len(set(names)) > 4, names


def test_a_session_whose_instance_is_gone_is_told_to_start_again():
    gone = _locations(_site(_config()))["@orchestra_mcp_unreachable"]
    assert gone == [
        "default_type application/json;", "if ($http_mcp_session_id) {",
        """return 404 '{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"""
        """"message":"Session not found"}}';""", "}", "return 502;"]


def test_connection_upgrade_map_keeps_upstream_keepalive():
    http_level = render.render(HTTP_LEVEL, {"config": _config(), "api_servers": [],
                                            "admin_servers": [], "mcp_servers": {}})
    # Requests that are not upgrades send no Connection header: upstream keepalive works.
    assert "''      '';" in http_level.split("$connection_upgrade {", 1)[1].split("}", 1)[0]
