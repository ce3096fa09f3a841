"""nginx on the provisioned sandbox host: TLS, redirects, headers, loopback-only status,
authentication per route group from a neighbour host, the MCP rate limit, Mozilla's
intermediate TLS measured from that neighbour by the distro's scanners (testssl.sh for the
protocols and ciphers, TLS 1.3 included; nmap's ssl-enum-ciphers for the grades)."""

from __future__ import annotations

import json
import shlex
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from operations.nginx import INTERMEDIATE_CIPHERS
from orchestra_infra import sandbox, secrets

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
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
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


# An HTTPS client on the neighbour host: the request (credentials included) arrives on
# stdin, never on a command line.
_CLIENT = """
import base64, json, ssl, sys, urllib.error, urllib.request
r = json.loads(sys.stdin.readline())
tls = ssl.create_default_context()
tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
headers = {"Content-Type": "application/json"}
if r["password"]:
    pair = (r["user"] + ":" + r["password"]).encode()
    headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
body = json.dumps(r["body"]).encode() if r["body"] is not None else None
if body is not None and r["chunked"]:
    body = iter([body[:5], body[5:]])  # no Content-Length: sent chunked, as a stream
request = urllib.request.Request(r["url"], data=body, method=r["method"], headers=headers)
try:
    with urllib.request.urlopen(request, timeout=10, context=tls) as response:
        status, text = response.status, response.read().decode()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read().decode()
print(json.dumps({"status": status, "body": text}))
"""


def _from_peer(peer, target, path, method="GET", body=None, password=None, user="orchestra",
               chunked=False) -> tuple[int, str]:
    request = {"url": f"https://{target.address}{path}", "method": method, "body": body,
               "password": password, "user": user, "chunked": chunked}
    argv = [*sandbox.ssh_base(peer.address, batch=True), "python3 -c " + shlex.quote(_CLIENT)]
    result = subprocess.run(argv, input=json.dumps(request) + "\n", capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    return answer["status"], answer["body"]


@pytest.fixture(scope="module")
def edge_password():
    return secrets.load("sandbox")["edge_password"]


@pytest.mark.parametrize(("path", "method", "body", "created"), [
    ("/", "GET", None, 200),
    ("/mcp/memory/health", "GET", None, 200),
    ("/mcp/memory/memory/edge-probe", "PUT", {"value": "written through the edge"}, 200),
    ("/mcp/task/tasks", "POST", {"title": "written through the edge"}, 201),
])
def test_the_admin_and_the_mcp_servers_need_the_edge_password(target, peer, provisioned,
                                                              edge_password, path, method,
                                                              body, created):
    assert _from_peer(peer, target, path, method, body)[0] == 401
    assert _from_peer(peer, target, path, method, body, password="wrong-" + edge_password)[0] \
        == 401
    status, text = _from_peer(peer, target, path, method, body, password=edge_password)
    assert status == created, text


def test_an_mcp_client_streams_a_request_body_with_basic_auth(target, peer, provisioned,
                                                               edge_password):
    body = {"title": "streamed through the edge"}
    assert _from_peer(peer, target, "/mcp/task/tasks", "POST", body, chunked=True)[0] == 401
    status, text = _from_peer(peer, target, "/mcp/task/tasks", "POST", body,
                              password=edge_password, chunked=True)
    assert status == 201, text
    assert json.loads(text)["title"] == body["title"]


def test_the_api_and_its_health_stay_public(target, peer, provisioned):
    status, text = _from_peer(peer, target, "/api/health/")
    assert status == 200, text
    assert json.loads(text)["status"] == "ok"


def test_a_second_deploy_changes_nothing_at_the_edge(provisioned):
    # The password hash's salt comes from the secret: the same file on every run.
    _, second = provisioned
    assert second.changed == []


def test_the_host_keeps_only_a_bcrypt_hash_of_the_edge_password(target, provisioned,
                                                                 edge_password):
    stat = on(target, "stat -c '%a %U %G' /etc/nginx/orchestra.htpasswd").split()
    assert stat == ["640", "root", "www-data"]
    line = on(target, "cat /etc/nginx/orchestra.htpasswd").strip()
    assert line.startswith("orchestra:$2b$05$") and edge_password not in line
    assert on(target, f"grep -rlF -- {shlex.quote(edge_password)} /etc/nginx || true").strip() == ""


def test_mcp_requests_beyond_the_rate_limit_get_429(target, peer, provisioned, edge_password):
    # Default limits: 30 r/s and a burst of 60 per address; 150 requests back to back on one
    # kept-alive connection (well under a second) must meet the limit.
    script = (
        "import base64, http.client, json, ssl, sys\n"
        "r = json.loads(sys.stdin.readline())\n"
        "tls = ssl.create_default_context(); tls.check_hostname = False; "
        "tls.verify_mode = ssl.CERT_NONE\n"
        "auth = 'Basic ' + base64.b64encode(('orchestra:' + r['password']).encode()).decode()\n"
        "codes, connection = {}, None\n"
        "for _ in range(150):\n"
        "    if connection is None:\n"
        "        connection = http.client.HTTPSConnection(r['host'], 443, timeout=5, "
        "context=tls)\n"
        "    connection.request('GET', '/mcp/memory/health', headers={'Authorization': auth})\n"
        "    response = connection.getresponse(); response.read()\n"
        "    codes[response.status] = codes.get(response.status, 0) + 1\n"
        "    if response.will_close:\n"
        "        connection.close(); connection = None\n"
        "print(json.dumps(codes))\n"
    )
    argv = [*sandbox.ssh_base(peer.address, batch=True), "python3 -c " + shlex.quote(script)]
    request = {"host": target.address, "password": edge_password}
    result = subprocess.run(argv, input=json.dumps(request) + "\n", capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    codes = json.loads(result.stdout)
    print(f"150 requests to /mcp/memory/health from one address: {codes}")
    assert set(codes) <= {"200", "429"} and codes.get("200", 0) >= 60 and "429" in codes


def test_nginx_conf_enables_no_tls_below_1_2(target, provisioned):
    lines = on(target, "grep -h ssl_protocols /etc/nginx/nginx.conf /etc/nginx/conf.d/*.conf "
                       "/etc/nginx/sites-enabled/*").splitlines()
    assert lines and all("TLSv1 " not in line and "TLSv1.1" not in line for line in lines)


# TLS 1.3's suites as OpenSSL names them (its defaults; Mozilla's intermediate takes all).
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256"}
# nmap's ssl-enum-ciphers grades, by the IANA name it reports.
_IANA = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}


@pytest.fixture(scope="module")
def scanners(peer):
    """testssl.sh and nmap from the neighbour host's distro."""
    on(peer, "command -v testssl >/dev/null && command -v nmap >/dev/null || "
             "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
             "testssl.sh nmap >/dev/null)")
    print(on(peer, "dpkg-query -W testssl.sh nmap", sudo=False))


@pytest.fixture(scope="module")
def tls_scan(target, peer, provisioned, scanners) -> dict:
    """What testssl.sh finds: {protocol: set of ciphers (OpenSSL names)} offered."""
    report = on(peer, "rm -f /tmp/edge-tls.json; testssl --quiet --color 0 --warnings off "
                      f"-p -E --jsonfile /tmp/edge-tls.json {target.address}:443 >/dev/null; "
                      "cat /tmp/edge-tls.json; rm -f /tmp/edge-tls.json", sudo=False)
    findings = json.loads(report)
    offered = {e["id"]: set() for e in findings
               if e["id"] in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
               and e["finding"].startswith("offered")}
    for e in findings:
        if e["id"].startswith("cipher-tls"):
            protocol = e["id"][len("cipher-"):].rsplit("_", 1)[0].upper()  # TLS1_2
            offered.setdefault(protocol, set()).add(e["finding"].split()[3])
    print(f"testssl.sh from {peer.name}: {offered}")
    return offered


@pytest.fixture(scope="module")
def nmap_grades(target, peer, provisioned, scanners) -> dict:
    """nmap's ssl-enum-ciphers (SSLv3 to TLS 1.2 in Ubuntu 22.04's nmap 7.80):
    {protocol: {cipher: grade}}."""
    xml = on(peer, f"nmap -Pn -p 443 --script ssl-enum-ciphers -oX - {target.address}",
             sudo=False)
    found = {}
    for table in ET.fromstring(xml).iter("table"):
        protocol = table.get("key", "")
        if protocol.startswith(("SSL", "TLS")):
            found[protocol] = {
                fields["name"]: fields.get("strength")
                for cipher in table.iter("table")
                if "name" in (fields := {e.get("key"): e.text for e in cipher.iter("elem")})}
    print(f"nmap ssl-enum-ciphers from {peer.name}: {found}")
    return found


def test_a_scanner_finds_only_tls_12_and_13(tls_scan):
    assert set(tls_scan) == {"TLS1_2", "TLS1_3"}, tls_scan


def test_a_scanner_finds_only_intermediate_ciphers(tls_scan):
    # RSA certificate: of the intermediate ECDSA/RSA pairs, the RSA halves are offered.
    assert tls_scan["TLS1_2"] == {name for name in INTERMEDIATE_CIPHERS if "-RSA-" in name}
    assert tls_scan["TLS1_3"] == TLS13_SUITES


def test_every_cipher_offered_below_tls_13_is_graded_a(nmap_grades):
    assert set(nmap_grades) == {"TLSv1.2"}, nmap_grades  # nothing older answers
    allowed = {_IANA[name] for name in INTERMEDIATE_CIPHERS}
    assert set(nmap_grades["TLSv1.2"]) <= allowed
    assert set(nmap_grades["TLSv1.2"].values()) == {"A"}
