"""Weaviate: a pinned, checksum-verified release in a versioned directory, run by systemd."""

from __future__ import annotations

import hashlib
import posixpath

from pyinfra import host
from pyinfra.api import (
    OperationError,
    QuoteString,
    StringCommand,
    deploy,
    operation,
)
from pyinfra.facts.files import FileContents, Link
from pyinfra.operations import server

from operations import render, system, wireguard
from orchestra_infra import catalog

ROOT = catalog.WEAVIATE_ROOT
CURRENT = catalog.WEAVIATE_CURRENT
ENV_FILE = "/etc/weaviate/weaviate.env"
READY_TIMEOUT = 120  # seconds a (re)started Weaviate has to report ready
# A single node's cluster ports (Weaviate's defaults, written out): gossip and Raft bind
# loopback (CLUSTER_BIND_ADDR, CLUSTER_ADVERTISE_ADDR); the data API and gRPC bind every
# interface whatever is set, so weaviate.service's IP firewall keeps them to loopback.
CLUSTER_BIND = "127.0.0.1"
CLUSTER_PORTS = {
    "CLUSTER_GOSSIP_BIND_PORT": 7946,
    "CLUSTER_DATA_BIND_PORT": 7947,
    "RAFT_PORT": 8300,
    "RAFT_INTERNAL_RPC_PORT": 8301,
}


def packages(config, groups) -> list[str]:
    """None: the release tarball, checked against weaviate_sha256."""
    return []


def listen(config) -> dict:
    """Weaviate's REST address (it takes one) and who may talk to it: loopback; in a
    multi-host layout every interface, with the unit's IP firewall (and nftables) letting in
    only loopback and the app hosts' private addresses."""
    if not wireguard.enabled():
        return {"listen": "127.0.0.1", "allowed": ["localhost"]}
    apps = [wireguard.private_address(config, h) for h in wireguard.group_hosts("app")
            if h.name != host.name]
    return {"listen": "0.0.0.0", "allowed": ["localhost", *apps]}


def release_dir(version: str) -> str:
    return f"{ROOT}/v{version}"


@deploy("Weaviate")
def configure(config):
    system.service_account(name="Create system user weaviate", user="weaviate",
                           home=config.weaviate_data_dir)
    for path, owner, mode in (
        (ROOT, "root", "755"),
        ("/etc/weaviate", "root", "750"),
        (config.weaviate_data_dir, "weaviate", "750"),
        (config.weaviate_backup_dir, "weaviate", "750"),
    ):
        system.directory(name=f"Create {path}", path=path, user=owner, group="weaviate",
                         mode=mode)

    installed = release(
        name=f"Install Weaviate {config.weaviate_version} (sha256-checked)",
        version=config.weaviate_version,
        sha256=config.weaviate_sha256,
        url=config.weaviate_url.format(version=config.weaviate_version),
        local_tarball=config.weaviate_local_tarball if config.weaviate_source == "upload"
        else None,
        keep=config.weaviate_keep_versions,
    )
    env = render.template(
        name="Configure Weaviate (env file)",
        src="weaviate/etc/weaviate/weaviate.env.j2",
        dest=ENV_FILE,
        context={"config": config, "cluster_bind": CLUSTER_BIND, "cluster_ports": CLUSTER_PORTS},
        group="weaviate", mode="640",
        secret=True,
    )
    unit = render.template(
        name="Install the weaviate unit",
        src="weaviate/etc/systemd/system/weaviate.service.j2",
        dest="/etc/systemd/system/weaviate.service",
        context={"config": config, "binary": f"{CURRENT}/weaviate", "env_file": ENV_FILE,
                 **listen(config)},
    )
    service = system.service(
        name="Run Weaviate",
        unit="weaviate",
        running=True,
        enabled=True,
        restart_when=[installed, env, unit],
        daemon_reload_when=[unit],
    )
    server.shell(
        name="Wait until Weaviate is ready",
        commands=[system.wait_healthy(
            "weaviate", config.weaviate_port, "/v1/.well-known/ready", READY_TIMEOUT,
            on_failure="journalctl -u weaviate -n 30 --no-pager >&2; ")],
        _if=service.did_change,
    )


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@operation()
def release(version: str, sha256: str, url: str, local_tarball: str | None = None,
            keep: int = 2):
    """
    Install a Weaviate release tarball beside the others and point ``current`` at it.

    The tarball is checked against ``sha256`` in a staging directory before anything is
    extracted; a mismatch fails with the running version untouched. Older versions are
    kept for a rollback (``keep`` in all, the running one included).

    + version: Weaviate version, e.g. ``1.38.2``
    + sha256: the release tarball's SHA-256
    + url: where the host downloads it (when no ``local_tarball``)
    + local_tarball: a tarball on the control machine to upload instead
    + keep: how many versions to keep installed
    """
    target = release_dir(version)
    marker = f"{target}/.sha256"
    if local_tarball:
        actual = _sha256_of(local_tarball)
        if actual != sha256:
            raise OperationError(f"sha256 mismatch for {local_tarball}: expected {sha256}, got "
                                 f"{actual}; nothing was installed")

    installed = (host.get_fact(FileContents, path=marker) or [""])[0] == sha256
    if not installed:
        staging = f"{ROOT}/.staging-v{version}"
        tarball = f"{staging}/weaviate-v{version}-linux-amd64.tar.gz"
        yield StringCommand("rm", "-rf", QuoteString(staging))
        yield StringCommand("install", "-d", "-m", "755", QuoteString(f"{staging}/extract"))
        if local_tarball:
            yield from render.upload(local_tarball, tarball)
        script = render.script("weaviate/scripts/install-release.sh.j2", staging=staging,
                               tarball=tarball, url=None if local_tarball else url,
                               sha256=sha256, version=version, target=target,
                               curl_limits=system.curl_limits(system.DOWNLOAD_TIME))
        yield StringCommand("sh", "-c", QuoteString(script))

    link = host.get_fact(Link, path=CURRENT)
    if not installed or not link or posixpath.basename(link.get("link_target", "")) != \
            f"v{version}":
        # Atomic switch: a new link renamed over the old one.
        yield StringCommand("ln", "-sfn", QuoteString(target), QuoteString(f"{CURRENT}.new"))
        yield StringCommand("mv", "-T", QuoteString(f"{CURRENT}.new"), QuoteString(CURRENT))
        prune = f"ls -1dt {ROOT}/v* | grep -vx {target} | tail -n +{keep} | xargs -r rm -rf"
        yield StringCommand("sh", "-c", QuoteString(prune))
    else:
        host.noop(f"Weaviate {version} is installed and current")
