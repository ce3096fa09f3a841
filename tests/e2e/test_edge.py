"""nginx on the provisioned sandbox host: TLS, redirects, headers, loopback-only status."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request

import pytest

from .conftest import on

pytestmark = pytest.mark.e2e


def _get(url: str) -> tuple[int, dict]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the sandbox's certificate is self-signed
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         _NoRedirect())
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_http_redirects_to_https(target, provisioned):
    status, headers = _get(f"http://{target.address}/api/health/")
    assert status == 301
    assert headers["Location"] == f"https://{target.address}/api/health/"


def test_https_serves_with_security_headers(target, provisioned):
    _, headers = _get(f"https://{target.address}/")
    assert headers["Server"] == "nginx"  # no version: server_tokens off
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_tls_uses_the_hosts_self_signed_certificate(target, provisioned):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((target.address, 443), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:
        certificate = ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))
    assert "BEGIN CERTIFICATE" in certificate
    modes = on(target, "stat -c '%a %U' /etc/orchestra/tls/orchestra.key /etc/orchestra/tls")
    assert modes.split() == ["600", "root", "700", "root"]


def test_default_site_is_gone_and_status_is_loopback_only(target, peer, provisioned):
    assert on(target, "ls /etc/nginx/sites-enabled").split() == ["orchestra.conf"]
    assert "Active connections" in on(target, "curl -s http://127.0.0.1:8088/stub_status",
                                      sudo=False)
    probe = (f"python3 -c \"import socket; socket.create_connection(('{target.address}', "
             "8088), 3)\" 2>/dev/null && echo open || echo closed")
    assert on(peer, probe, sudo=False).strip() == "closed"
