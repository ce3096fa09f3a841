"""nginx at the edge: TLS, one site routing to every app host, rate limits, reload only."""

from __future__ import annotations

import itertools
import shlex
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api import QuoteString, StringCommand, deploy, operation
from pyinfra.facts.files import FindInFile
from pyinfra.operations import files

from operations import ports, render, snapshot, system, wireguard
from operations.facts import FileState
from orchestra_infra import catalog
from orchestra_infra.preflight import validate_host


def packages(config, groups) -> list[str]:
    return ["nginx", "openssl"] + (["certbot"] if config.nginx_tls == "letsencrypt" else [])

SITE = "/etc/nginx/sites-available/orchestra.conf"
ACME_WEBROOT = "/var/www/letsencrypt"
HTPASSWD = "/etc/nginx/orchestra.htpasswd"
NGINX_CONF = "/etc/nginx/nginx.conf"
# Mozilla's "intermediate" TLS 1.2 ciphers (server side TLS guidelines 6.0); TLS 1.3's
# suites are OpenSSL's defaults, all of them strong.
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
)
# Debian's and Ubuntu's nginx.conf enable TLS 1.0 and 1.1 for every server at http level
# (`ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;`): any line naming either (ERE).
_OLD_PROTOCOLS = r"ssl_protocols( [^;]*)? TLSv1(\.1)?( [^;]*)?;"


def _address(config, app_host) -> str:
    """How the edge reaches an app host: loopback when it is this host, its private
    address on the WireGuard mesh otherwise."""
    return wireguard.reach(config, app_host)


def _server(address: str, port: int) -> str:
    # On loopback a stopped instance refuses at once and nginx retries the next one: never
    # exclude it, or a rolling restart could find every instance excluded at the same time.
    # A remote host that stops answering costs a timeout (a read's, on a kept-alive
    # connection): exclude it after the first, so no other request waits for it.
    if address == "127.0.0.1":
        return f"{address}:{port} max_fails=0"
    return f"{address}:{port} max_fails=1 fail_timeout=10s"


def _interleaved(app_hosts, ports_of) -> list[tuple[str, str, int]]:
    """(address, inventory name, port) of every instance, each host's first, then each
    host's second...: A1 B1 A2 B2, not A1 A2 B1 B2. nginx gives a failed request to the next
    server in its rotation, which is then another host's: a host that vanished costs a
    request one timeout, not one for each of its instances."""
    columns = [[(a, name, port) for port in ports_of(c)] for a, c, name in app_hosts]
    return [s for row in itertools.zip_longest(*columns) for s in row if s]


def _app_hosts(config) -> list[tuple[str, object, str]]:
    """(address, effective config, inventory name) of every host of group `app`: each may
    have moved ports (operations/ports.py), read from its own facts."""
    # A host marked `drain` (hosts/ENV) gets no new requests: the first step of its removal.
    app_hosts = [h for h in inventory.get_group("app", []) if not h.data.get("drain")] or [host]
    return [(_address(config, h), config if h.name == host.name
             else ports.for_host(validate_host(h)[0], h), h.name) for h in app_hosts]


def upstreams(config) -> dict:
    """Every API instance, admin and MCP server instance on every host of group `app`; each
    MCP instance with the route its sessions' ids begin with (catalog.session_route)."""
    app_hosts = _app_hosts(config)
    api = _interleaved(app_hosts, lambda c: range(c.api_port, c.api_port + c.api_instances))
    return {
        "api_servers": [_server(a, port) for a, _, port in api],
        "admin_servers": [_server(a, c.admin_port) for a, c, _ in app_hosts],
        "mcp_servers": {name: [{"server": _server(a, port), "address": f"{a}:{port}",
                                "route": catalog.session_route(host_name, port)}
                               for a, host_name, port in _interleaved(
                                   app_hosts, lambda c, name=name: c.mcp_ports(name))]
                        for name in config.mcp_servers},
    }


def selfsigned_dir(config) -> str:
    return f"{config.config_root}/tls"


def certificate_paths(config) -> tuple[str, str]:
    if config.nginx_tls == "letsencrypt":
        live = f"/etc/letsencrypt/live/{config.nginx_server_name}"
        return f"{live}/fullchain.pem", f"{live}/privkey.pem"
    return f"{selfsigned_dir(config)}/orchestra.crt", f"{selfsigned_dir(config)}/orchestra.key"


def client_ca_path(config) -> str:
    return f"{selfsigned_dir(config)}/edge-client-ca.pem"


def _uses(config, check: str) -> bool:
    return any(check in checks for _, checks in config.edge_auth)


def site_context(config) -> dict:
    """What the templates read besides the upstreams."""
    certificate, key = certificate_paths(config)
    return {"config": config, "certificate": certificate, "certificate_key": key,
            "ciphers": ":".join(INTERMEDIATE_CIPHERS), "htpasswd": HTPASSWD,
            "client_ca": client_ca_path(config) if _uses(config, "mtls") else None}


@deploy("nginx")
def configure(config):
    certificate, key = certificate_paths(config)
    context = {**site_context(config), **upstreams(config)}
    protocols = modern_protocols_only(name="Enable only TLS 1.2 and 1.3 in nginx.conf",
                                      path=NGINX_CONF)
    if config.nginx_tls == "selfsigned" or _uses(config, "mtls"):
        tls_dir = selfsigned_dir(config)
        system.directory(name=f"Create {tls_dir}", path=tls_dir, mode="700")
    access = _access_files(config)
    # Each file is validated by `nginx -t` on the whole configuration with it in place,
    # and rolled back if that fails; the site comes last, as it uses the upstreams.
    http_level = render.template(
        name="Configure nginx (upstreams, rate limit)",
        src="nginx/etc/nginx/conf.d/orchestra.conf.j2",
        dest="/etc/nginx/conf.d/orchestra.conf",
        context=context,
        validate="nginx -t -q",
    )
    default = files.link(name="Remove the default site",
                         path="/etc/nginx/sites-enabled/default", present=False)
    enabled = files.link(name="Enable the orchestra site",
                         path="/etc/nginx/sites-enabled/orchestra.conf", target=SITE)
    system.directory(name=f"Create {ACME_WEBROOT}", path=ACME_WEBROOT, mode="755")
    if config.nginx_tls == "selfsigned":
        selfsigned_certificate(name="Make a self-signed certificate", certificate=certificate,
                               key=key, server_name=config.nginx_server_name)
    elif not host.get_fact(FileState, path=certificate):
        _bootstrap_letsencrypt(config, context, certificate)
    site = render.template(
        name="Render nginx site orchestra.conf",
        src="nginx/etc/nginx/sites-available/orchestra.conf.j2",
        dest=SITE,
        context={**context, "acme_only": False},
        validate="nginx -t -q",
    )
    dropin = system.restart_always_dropin(
        "nginx", name="Restart nginx when it dies, without its old workers",
        why="nginx comes back when its master dies (SIGKILL, the OOM killer).\n"
            "Its workers outlive it and keep the ports: systemd kills them with the unit's\n"
            "cgroup where it can read it, and a start removes any left, or every start\n"
            "would fail on \"address in use\". Only orphans (parent: PID 1) are taken: at a\n"
            "start this unit runs no nginx, and an nginx in a container has a living parent.",
        service_settings=['ExecStartPre=-/usr/bin/pkill -KILL -P 1 -f '
                          '"^nginx: (worker|cache manager|cache loader) process"'])
    # Reload, never restart: open connections finish on the old workers. Only a changed
    # drop-in (its sandbox applies to a new master) restarts it.
    system.service(name="Run nginx", unit="nginx", daemon_reload_when=[dropin],
                   restart_when=[dropin],
                   reload_when=[protocols, *access, http_level, default, enabled, site])


def _access_files(config) -> list:
    """The files edge_auth's checks read: the password hash, the client CA."""
    changed = []
    if _uses(config, "basic"):
        # Read by nginx's workers (www-data on Debian and Ubuntu) at each request.
        changed.append(render.template(
            name="Store the edge's basic-auth password hash",
            src="nginx/etc/nginx/orchestra.htpasswd.j2", dest=HTPASSWD,
            context={"config": config}, group="www-data", mode="640", secret=True,
        ))
    else:
        changed.append(system.absent(name="Remove the edge's basic-auth password hash",
                                     path=HTPASSWD))
    if _uses(config, "mtls"):
        changed.append(render.template(
            name="Install the CA of the edge's client certificates",
            src=None, text=Path(config.edge_client_ca).read_text(),
            dest=client_ca_path(config), mode="644",
        ))
    return changed


def _bootstrap_letsencrypt(config, context: dict, certificate: str) -> None:
    """certbot's webroot challenge needs nginx answering on port 80 before a TLS server
    block can exist: serve only the challenge, then get the certificate."""
    acme = render.template(
        name="Serve only the ACME challenge until the certificate exists",
        src="nginx/etc/nginx/sites-available/orchestra.conf.j2",
        dest=SITE,
        context={**context, "acme_only": True},
        validate="nginx -t -q",
    )
    system.service(name="Reload nginx for the ACME challenge", unit="nginx",
                   reload_when=[acme])
    letsencrypt_certificate(name=f"Get a Let's Encrypt certificate for "
                            f"{config.nginx_server_name}",
                            certificate=certificate, domain=config.nginx_server_name,
                            email=config.nginx_letsencrypt_email)


@operation()
def modern_protocols_only(path: str):
    """
    Rewrite every ``ssl_protocols`` line of nginx's main configuration that enables TLS 1.0
    or 1.1 (Debian's and Ubuntu's, at http level) to TLS 1.2 and 1.3, then check it with
    ``nginx -t``. A converged file has no such line: nothing to do. (The site's own
    ``ssl_protocols`` already wins for its server; this keeps any other server, and a
    future default, from offering TLS 1.0/1.1.)

    + path: the file (``/etc/nginx/nginx.conf``)
    """
    # None: no such file yet; the nginx package this run installs brings it.
    if host.get_fact(FindInFile, path=path, pattern=_OLD_PROTOCOLS, extended_regex=True) == []:
        host.noop(f"{path} enables no TLS version below 1.2")
        return
    yield StringCommand("sed", "-E", "-i",
                        QuoteString(f"s/{_OLD_PROTOCOLS}/ssl_protocols TLSv1.2 TLSv1.3;/"), path)
    yield "nginx -t -q"


@snapshot.registers("files", "certificate")
@operation()
def selfsigned_certificate(certificate: str, key: str, server_name: str):
    """
    Make a self-signed certificate (RSA 2048, 825 days) unless one is there.

    + certificate, key: where they go (the key is created 0600)
    + server_name: the certificate's name (``_`` means the host's name)
    """
    if snapshot.lookup("files", certificate):
        host.noop(f"certificate {certificate} exists")
        return
    # "_": the host's own name, which the shell finds; any other name is one quoted word.
    subject, alt = (('"/CN=$(hostname -f)"', '"subjectAltName=DNS:$(hostname -f)"')
                    if server_name == "_" else
                    (shlex.quote(f"/CN={server_name}"),
                     shlex.quote(f"subjectAltName=DNS:{server_name}")))
    key, certificate = shlex.quote(key), shlex.quote(certificate)
    yield StringCommand("sh", "-c", QuoteString(
        f"umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 825 "
        f"-subj {subject} -addext {alt} "
        f"-keyout {key} -out {certificate} 2>/dev/null && chmod 644 {certificate}"
    ))


@snapshot.registers("files", "certificate")
@operation()
def letsencrypt_certificate(certificate: str, domain: str, email: str):
    """
    Get a Let's Encrypt certificate with certbot's webroot method unless one is there;
    certbot's own timer renews it and the deploy hook reloads nginx.

    + certificate: the fullchain path certbot writes
    + domain: the DNS name (must resolve to this host; port 80 must be open)
    + email: the account's contact address
    """
    if snapshot.lookup("files", certificate):
        host.noop(f"certificate for {domain} exists")
        return
    yield StringCommand(
        "certbot", "certonly", "--webroot", "-w", ACME_WEBROOT, "-d", domain, "-m", email,
        "--agree-tos", "--non-interactive", "--deploy-hook", "'systemctl reload nginx'",
    )
