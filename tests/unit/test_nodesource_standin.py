"""nodesource-standin: the repository it builds, checked with the tools that consume it (gpgv,
dpkg-deb, apt-get against the server on loopback), and the server's life cycle.

The Node.js tree is a fake (a shell script for node, a few files for npm and corepack), so
nothing here downloads anything and the whole module takes a few seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestra_infra.sandbox.errors import SandboxError
from orchestra_infra.sandbox.network import SANDBOX_SUBNET
from standins import nodesource as ns
from standins.nodesource import repository as ns_repository
from standins.nodesource import server as ns_server

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("gpg", "gpgv", "gpgconf", "dpkg-deb")),
    reason="needs gpg, gpgv and dpkg-deb (scripts/setup installs gnupg)",
)

VERSION = ns.NODE_VERSION
DEB = f"node_22.x/pool/main/n/nodejs/nodejs_{VERSION}-1nodesource1_amd64.deb"
SUITE = "node_22.x/dists/nodistro"
# Installed versions of what the package depends on, as on a fresh instance of each.
BASE_SYSTEMS = {
    "ubuntu-22.04": {"libc6": "2.35-0ubuntu3.8", "libgcc-s1": "12.3.0-1ubuntu1~22.04",
                     "libstdc++6": "12.3.0-1ubuntu1~22.04"},
    "debian-12": {"libc6": "2.36-9+deb12u10", "libgcc-s1": "12.2.0-14",
                  "libstdc++6": "12.2.0-14"},
}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fake_node_tree(version: str, work_dir: Path, corepack: bool = True) -> Path:
    """A Node.js install prefix in miniature, with the odd modes a real one can have."""
    tree = work_dir / "node"
    files = {
        "bin/node": (0o755, f"#!/bin/sh\necho v{version}\n"),
        "lib/node_modules/npm/package.json": (0o600, '{"name": "npm"}\n'),
        "lib/node_modules/npm/bin/npm-cli.js": (0o775, "#!/usr/bin/env node\n"),
        "lib/node_modules/npm/bin/npx-cli.js": (0o755, "#!/usr/bin/env node\n"),
        "lib/node_modules/npm/lib/cli.js": (0o664, "module.exports = () => {}\n"),
    }
    if corepack:
        files["lib/node_modules/corepack/dist/corepack.js"] = (0o755, "#!/usr/bin/env node\n")
    for name, (mode, text) in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    return tree


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def root(cache) -> Path:
    return ns.build_repository(cache, VERSION, fetch=fake_node_tree)


@pytest.fixture(scope="module")
def keyring(root, tmp_path_factory) -> Path:
    """The exported key, dearmoured for gpgv as apt does with an .asc keyring."""
    path = tmp_path_factory.mktemp("keyring") / "nodesource.gpg"
    with open(root / "gpgkey/nodesource-repo.gpg.key", "rb") as armoured, open(path, "wb") as out:
        subprocess.run(["gpg", "--dearmor"], stdin=armoured, stdout=out, check=True)
    return path


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)


def fields(text: str) -> dict[str, str]:
    """One deb822 stanza as a dict; continuation lines joined with newlines."""
    result: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith(" ") and key:
            result[key] += "\n" + line[1:]
        elif line:
            key, _, value = line.partition(":")
            result[key] = value.strip()
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(root) -> Iterator[str]:
    """The site served on loopback in a thread; yields its base URL."""
    httpd = ns.make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def status(url: str, method: str = "GET") -> int:
    try:
        with _OPENER.open(urllib.request.Request(url, method=method), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


# --- the repository ------------------------------------------------------------------------------


def test_urls_have_nodesources_shape():
    assert ns.repository_url("10.213.0.1") == "http://10.213.0.1:8765/node_22.x"
    assert ns.key_url("10.213.0.1") == "http://10.213.0.1:8765/gpgkey/nodesource-repo.gpg.key"
    assert ns.NODE_VERSION.startswith(f"{ns.NODE_MAJOR}.")


def test_site_root_is_laid_out_like_nodesources(root):
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == sorted([
        "gpgkey/nodesource-repo.gpg.key",
        f"{SUITE}/InRelease",
        f"{SUITE}/Release",
        f"{SUITE}/Release.gpg",
        f"{SUITE}/main/binary-amd64/Packages",
        f"{SUITE}/main/binary-amd64/Packages.gz",
        DEB,
    ])
    assert all(p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644)
               for p in root.rglob("*"))
    key = (root / "gpgkey/nodesource-repo.gpg.key").read_text()
    assert key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")


def test_signing_key_says_it_is_not_nodesource(root, cache, tmp_path):
    shown = run("gpg", "--homedir", str(tmp_path), "--batch", "--show-keys", "--with-colons",
                str(root / "gpgkey/nodesource-repo.gpg.key"), check=True).stdout
    uids = [line.split(":")[9] for line in shown.splitlines() if line.startswith("uid:")]
    assert uids == ["orchestra-infra NodeSource stand-in (NOT NodeSource) "
                    "<nodesource-standin@orchestra-infra.invalid>"]
    gnupghome = cache / "nodesource-standin" / "gnupg"
    assert gnupghome.stat().st_mode & 0o777 == 0o700


def test_release_and_inrelease_verify_with_the_exported_key(root, keyring):
    suite = root / SUITE
    inrelease = run("gpgv", "--keyring", str(keyring), str(suite / "InRelease"))
    assert inrelease.returncode == 0, inrelease.stderr
    detached = run("gpgv", "--keyring", str(keyring), str(suite / "Release.gpg"),
                   str(suite / "Release"))
    assert detached.returncode == 0, detached.stderr
    # InRelease signs exactly Release.
    signed = run("gpg", "--homedir", str(keyring.parent), "--batch", "--decrypt",
                 "--no-default-keyring", "--keyring", str(keyring), str(suite / "InRelease"))
    assert signed.stdout == (suite / "Release").read_text()


def test_a_changed_release_does_not_verify(root, keyring, tmp_path):
    release = (root / SUITE / "Release").read_text().replace("main", "mane", 1)
    (tmp_path / "Release").write_text(release)
    result = run("gpgv", "--keyring", str(keyring), str(root / SUITE / "Release.gpg"),
                 str(tmp_path / "Release"))
    assert result.returncode != 0
    assert "BAD signature" in result.stderr


def test_release_describes_the_suite_and_hashes_its_indexes(root):
    release = fields((root / SUITE / "Release").read_text())
    assert {k: release[k] for k in ("Origin", "Label", "Suite", "Codename", "Architectures",
                                    "Components")} == {
        "Origin": "Node Source", "Label": "Node Source", "Suite": "nodistro",
        "Codename": "nodistro", "Architectures": "amd64", "Components": "main"}
    assert release["Date"].endswith(" GMT")
    for field, algorithm in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
        listed = {}
        for line in release[field].strip().splitlines():
            digest, size, name = line.split()
            listed[name] = (digest, int(size))
        assert set(listed) == {"main/binary-amd64/Packages", "main/binary-amd64/Packages.gz"}
        for name, (digest, size) in listed.items():
            data = (root / SUITE / name).read_bytes()
            assert (algorithm(data).hexdigest(), len(data)) == (digest, size), name


def test_packages_points_at_the_deb_with_its_size_and_hashes(root):
    packages = (root / SUITE / "main/binary-amd64/Packages").read_bytes()
    assert gzip.decompress((root / SUITE / "main/binary-amd64/Packages.gz").read_bytes()) == \
        packages
    stanza = fields(packages.decode())
    deb = (root / "node_22.x" / stanza["Filename"]).read_bytes()
    assert stanza["Filename"] == DEB.removeprefix("node_22.x/")
    assert int(stanza["Size"]) == len(deb)
    assert stanza["SHA256"] == hashlib.sha256(deb).hexdigest()
    assert stanza["MD5sum"] == hashlib.md5(deb).hexdigest()
    assert stanza["Package"] == "nodejs" and stanza["Version"] == f"{VERSION}-1nodesource1"


def test_deb_control_fields(root):
    control = fields(run("dpkg-deb", "--field", str(root / DEB), check=True).stdout)
    bundled = "nodejs-dev, nodejs-doc, nodejs-legacy, npm"
    assert control["Package"] == "nodejs"
    assert control["Version"] == f"{VERSION}-1nodesource1"
    assert control["Architecture"] == "amd64"
    assert "orchestra-infra" in control["Maintainer"]
    assert control["Provides"] == control["Conflicts"] == control["Replaces"] == bundled
    assert control["Depends"] == "libc6 (>= 2.17), libgcc-s1 (>= 3.4), libstdc++6 (>= 4.8)"
    assert "NOT NodeSource" in control["Description"].splitlines()[0]
    assert int(control["Installed-Size"]) > 0


def test_deb_holds_node_npm_and_their_links_root_owned_with_sane_modes(root):
    listing = run("dpkg-deb", "--contents", str(root / DEB), check=True).stdout
    entries = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, name, *link = line.split()
        entries[name.removeprefix(".")] = (mode, owner, link[1] if link else None)
    assert {owner for _, owner, _ in entries.values()} == {"root/root"}
    assert entries["/usr/bin/node"] == ("-rwxr-xr-x", "root/root", None)
    assert entries["/usr/bin/npm"][2] == "../lib/node_modules/npm/bin/npm-cli.js"
    assert entries["/usr/bin/npx"][2] == "../lib/node_modules/npm/bin/npx-cli.js"
    assert entries["/usr/bin/corepack"][2] == "../lib/node_modules/corepack/dist/corepack.js"
    assert all(mode.startswith("l") for name, (mode, _, _) in entries.items()
               if name in ("/usr/bin/npm", "/usr/bin/npx", "/usr/bin/corepack"))
    # Whatever the source's modes (0600, 0664, 0775 in the fake), 0644 or 0755.
    assert entries["/usr/lib/node_modules/npm/package.json"][0] == "-rw-r--r--"
    assert entries["/usr/lib/node_modules/npm/lib/cli.js"][0] == "-rw-r--r--"
    assert entries["/usr/lib/node_modules/npm/bin/npm-cli.js"][0] == "-rwxr-xr-x"
    assert {m for n, (m, _, _) in entries.items() if n.endswith("/")} == {"drwxr-xr-x"}
    assert "/usr/share/doc/nodejs/README.standin" in entries


def test_deb_without_corepack_has_no_corepack_link(tmp_path):
    tree = fake_node_tree(VERSION, tmp_path, corepack=False)
    deb = ns.build_deb(tree, VERSION, tmp_path / "deb")
    listing = run("dpkg-deb", "--contents", str(deb), check=True).stdout
    assert "./usr/bin/npm -> " in listing
    assert "corepack" not in listing


def test_built_once_then_cached_per_version_and_recipe(cache, root, monkeypatch):
    def no_fetch(version, work_dir):
        raise AssertionError("fetched again")

    assert ns.build_repository(cache, VERSION, fetch=no_fetch) == root
    monkeypatch.setattr(ns_repository, "RECIPE", ns_repository.RECIPE + 1)
    with pytest.raises(AssertionError, match="fetched again"):
        ns.build_repository(cache, VERSION, fetch=no_fetch)
    # A failed build leaves nothing behind that looks built, and no temporary folder.
    home = cache / "nodesource-standin"
    assert sorted(p.name for p in home.iterdir()) == [".lock", "gnupg", root.name]


def test_node_asking_for_newer_symbols_than_depends_is_refused(tmp_path):
    node = tmp_path / "node"
    node.write_bytes(b"\x7fELF\x00libc.so.6\x00GLIBC_2.2.5\x00GLIBC_2.17\x00GLIBCXX_3.4.19\x00")
    ns_repository._check_symbol_versions(node)
    node.write_bytes(b"\x7fELF\x00GLIBC_2.17\x00GLIBC_2.28\x00GCC_3.0\x00")
    with pytest.raises(SandboxError, match="GLIBC"):
        ns_repository._check_symbol_versions(node)


# --- apt, against the server ---------------------------------------------------------------------


def apt_root(path: Path, source: str, key: Path, installed: dict[str, str]) -> dict[str, str]:
    """A throwaway apt configuration and state under path; returns the environment to use it."""
    for folder in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                   "var/lib/apt/lists/partial", "var/cache/apt/archives/partial"):
        (path / folder).mkdir(parents=True, exist_ok=True)
    (path / "status").write_text("\n".join(
        f"Package: {name}\nStatus: install ok installed\nVersion: {version}\n"
        "Architecture: amd64\n" for name, version in installed.items()))
    (path / "etc/apt/sources.list").write_text(f"deb [signed-by={key}] {source} nodistro main\n")
    (path / "apt.conf").write_text(
        f'Dir "{path}/";\nDir::State::status "{path}/status";\n'
        'Debug::NoLocking "true";\nAPT::Sandbox::User "root";\n'
        'Acquire::Languages "none";\nAcquire::http::Proxy "DIRECT";\n'
        'APT::Architecture "amd64";\nAPT::Architectures { "amd64"; };\n')
    return {**os.environ, "APT_CONFIG": str(path / "apt.conf"), "LC_ALL": "C"}


@pytest.mark.skipif(not shutil.which("apt-get"), reason="needs apt-get")
@pytest.mark.parametrize("system", sorted(BASE_SYSTEMS))
def test_apt_accepts_the_repository_and_installs_nodejs(root, server, tmp_path, system):
    # The production path: the key as downloaded to /etc/apt/keyrings/nodesource.asc.
    key = tmp_path / "nodesource.asc"
    key.write_bytes((root / "gpgkey/nodesource-repo.gpg.key").read_bytes())
    env = apt_root(tmp_path / "apt", f"{server}/node_22.x", key, BASE_SYSTEMS[system])
    update = run("apt-get", "update", env=env)
    assert update.returncode == 0 and "W:" not in update.stderr, update.stdout + update.stderr
    policy = run("apt-cache", "policy", "nodejs", env=env, check=True).stdout
    assert f"Candidate: {VERSION}-1nodesource1" in policy
    install = run("apt-get", "--simulate", "install", "nodejs", env=env)
    assert install.returncode == 0, install.stdout + install.stderr
    assert f"Inst nodejs ({VERSION}-1nodesource1 Node Source:nodistro [amd64])" in install.stdout
    download = run("apt-get", "download", "nodejs", env=env, cwd=tmp_path)
    assert download.returncode == 0, download.stderr
    assert (tmp_path / Path(DEB).name).read_bytes() == (root / DEB).read_bytes()


@pytest.mark.skipif(not shutil.which("apt-get"), reason="needs apt-get")
def test_apt_refuses_the_repository_with_another_key(root, server, tmp_path):
    other = ns.ensure_signing_key(tmp_path / "other-gnupg")
    key = tmp_path / "nodesource.asc"
    key.write_bytes(ns.export_key(other))
    env = apt_root(tmp_path / "apt", f"{server}/node_22.x", key, BASE_SYSTEMS["debian-12"])
    update = run("apt-get", "update", env=env)
    assert update.returncode != 0
    assert "NO_PUBKEY" in update.stdout + update.stderr


# --- the server ----------------------------------------------------------------------------------


def test_only_this_machine_and_the_sandbox_are_answered():
    assert ns.allowed_client("127.0.0.1")
    assert ns.allowed_client("127.3.2.1")
    assert ns.allowed_client(str(SANDBOX_SUBNET.network_address + 2))
    assert not ns.allowed_client("192.0.2.10")
    assert not ns.allowed_client("10.213.1.2")
    assert not ns.allowed_client("::1")  # it listens on IPv4 only
    assert not ns.allowed_client("not an address")


def test_server_serves_files_get_and_head_only_and_no_listings(root, server):
    assert status(f"{server}/gpgkey/nodesource-repo.gpg.key") == 200
    assert status(f"{server}/{SUITE}/InRelease", "HEAD") == 200
    assert status(f"{server}/{SUITE}/Missing") == 404
    assert status(f"{server}/{SUITE}/") == 404
    assert status(f"{server}/{SUITE}/InRelease", "POST") == 501
    with _OPENER.open(f"{server}/{DEB}", timeout=5) as response:
        assert response.read() == (root / DEB).read_bytes()


def test_server_answers_403_to_clients_outside_its_networks(root):
    httpd = ns.make_server(root, "127.0.0.1", 0, networks=[SANDBOX_SUBNET])
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        assert status(f"http://127.0.0.1:{port}/gpgkey/nodesource-repo.gpg.key") == 403
        assert status(f"http://127.0.0.1:{port}/{SUITE}/InRelease", "HEAD") == 403
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_server_refuses_a_folder_that_is_not_a_site_root(tmp_path):
    with pytest.raises(SandboxError, match="not a nodesource-standin site root"):
        ns.make_server(tmp_path, "127.0.0.1", 0)


# --- the detached server -------------------------------------------------------------------------


def test_detached_server_starts_once_stops_and_tolerates_a_stale_pid_file(cache, root,
                                                                          tmp_path):
    state, port = tmp_path / "state", free_port()
    pid_file = state / ns.PID_FILE
    try:
        assert ns.ensure_server(cache, state, port) == port
        pid = int(pid_file.read_text())
        assert os.getsid(pid) == pid  # a session of its own
        assert status(f"http://127.0.0.1:{port}/{SUITE}/InRelease") == 200
        assert ns.ensure_server(cache, state, port) == port
        assert int(pid_file.read_text()) == pid  # left alone: it serves this root
    finally:
        ns.stop_server(state)
    assert not pid_file.exists()
    assert not ns_server._is_standin(pid)
    assert not ns_server._answers(root, port)  # (the port is free: another test may take it)
    ns.stop_server(state)  # nothing to stop: fine
    # A pid file naming a live process that is not the stand-in (this one) is stale: not killed.
    pid_file.write_text(f"{os.getpid()}\n")
    ns.stop_server(state)
    assert not pid_file.exists()


def test_detached_server_on_a_port_in_use_fails_with_its_log(cache, root, tmp_path):
    state = tmp_path / "state"
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        with pytest.raises(SandboxError, match="Address already in use"):
            ns.ensure_server(cache, state, taken.getsockname()[1])
    assert not (state / ns.PID_FILE).exists()


# --- the sandbox's inventory -------------------------------------------------------------------


def test_sandbox_hosts_get_the_standin_at_their_veths_end(monkeypatch):
    from orchestra_infra import sandbox

    entry = {"name": "orch-1", "address": "10.213.0.6", "host_address": "10.213.0.5"}
    monkeypatch.setattr(sandbox, "read_state", lambda: {"orch-1": entry})
    monkeypatch.setattr(sandbox, "is_running", lambda e: True)
    ((address, data),) = sandbox.inventory_hosts()
    assert address == "10.213.0.6"
    assert data["node_apt_repository"] == "http://10.213.0.5:8765/node_22.x"
    assert data["node_apt_key_url"] == "http://10.213.0.5:8765/gpgkey/nodesource-repo.gpg.key"
