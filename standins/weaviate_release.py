"""Release-shaped artifacts for the stand-ins the sandbox uses instead of unreachable downloads.

The real Weaviate release asset cannot be downloaded here, so the sandbox serves
``weaviate-standin`` (``standins/weaviate/weaviate``, NOT Weaviate) packaged exactly like one,
and the deploy installs it through its real code path: download, sha256 check, unpack, run
``weaviate --host H --port P --scheme http``.

What "exactly like one" means, checked against Weaviate's release workflow (it builds with
wangyoucao577/go-release-action, binary name = the repository's name, ``extra_files: LICENSE
README.md``, ``sha256sum: true``):

- the asset is ``weaviate-vX.Y.Z-linux-amd64.tar.gz``, a gzipped tar made by ``tar cvfz ... *``
  inside the build folder: the members ``LICENSE``, ``README.md`` and ``weaviate`` sit at the top
  level (no folder, no ``./`` prefix), ``weaviate`` is executable;
- next to it, ``weaviate-vX.Y.Z-linux-amd64.tar.gz.sha256`` holds the hex digest and a newline,
  **without a file name** (the action writes ``echo $SHA256_SUM``): ``sha256sum -c`` cannot read
  it, a reader must compare the first word.

The build is reproducible: fixed member order, mtime, owner and modes, gzip mtime 0 and no file
name in the gzip header, so one version always gives the same sha256 (with the same zlib).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WEAVIATE_STANDIN_SOURCE = REPO_ROOT / "standins" / "weaviate" / "weaviate"

# The version the sandbox's stand-in claims to be, the tarball `orchestra-infra sandbox up`
# builds for it, and the record of that build group_data/sandbox.py reads.
SANDBOX_VERSION = "1.38.2"
SANDBOX_RECORD = "weaviate-standin.json"

# 1980-01-01T00:00:00Z, the usual reproducible-builds timestamp: any constant would do, but
# not the build time.
FIXED_MTIME = 315532800

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$")
# The one line of the stand-in that holds the version it claims in /v1/meta.
_VERSION_LINE_RE = re.compile(r'^VERSION = "[^"\n]*"$', re.MULTILINE)

_LICENSE = """\
weaviate-standin is part of the orchestra-infra repository and is distributed under the same
terms as that repository. It contains no code from Weaviate (BSD-3-Clause, Weaviate B.V.).
"""

_README = """\
# weaviate-standin {version}

**This is NOT Weaviate.** The `weaviate` file in this archive is a small Python 3 program
(standard library only) that serves a part of Weaviate's REST API, so that the orchestra-infra
deploy can be tested where the real Weaviate release cannot be downloaded. It is packaged
like the real `weaviate-v{version}-linux-amd64.tar.gz` release asset and reports version
{version} in `/v1/meta` (with `"standin": true`).

Its own docstring lists what it implements and what it does not (no search, no GraphQL, no
gRPC). Never use it in production.
"""


def weaviate_asset_name(version: str) -> str:
    """The name of Weaviate's Linux amd64 release asset for version (no leading ``v``)."""
    return f"weaviate-v{version}-linux-amd64.tar.gz"


def render_weaviate_standin(version: str) -> bytes:
    """The stand-in's source with its VERSION line set to version."""
    _check_version(version)
    source = WEAVIATE_STANDIN_SOURCE.read_text()
    rendered, count = _VERSION_LINE_RE.subn(f'VERSION = "{version}"', source)
    if count != 1:
        raise RuntimeError(f"{WEAVIATE_STANDIN_SOURCE}: expected one VERSION line, found {count}")
    return rendered.encode()


def build_weaviate_tarball(version: str, out_dir: Path) -> tuple[Path, str]:
    """Write ``weaviate-v{version}-linux-amd64.tar.gz`` and its ``.sha256`` into out_dir, shaped
    like Weaviate's release assets, with the stand-in as ``weaviate``. Returns the archive's
    path and its sha256 (hex). The same version always gives the same bytes."""
    _check_version(version)
    members = [  # the order `tar cvfz ... *` gives them (the shell sorts the glob)
        ("LICENSE", 0o644, _LICENSE.encode()),
        ("README.md", 0o644, _README.format(version=version).encode()),
        ("weaviate", 0o755, render_weaviate_standin(version)),
    ]
    archive = _reproducible_tar_gz(members)
    digest = hashlib.sha256(archive).hexdigest()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / weaviate_asset_name(version)
    _write_atomically(path, archive)
    _write_atomically(path.with_name(path.name + ".sha256"), f"{digest}\n".encode())
    return path, digest


def build_for_sandbox(build_dir: Path) -> Path:
    """Build the sandbox's release (SANDBOX_VERSION) into build_dir and record its name and
    sha256 beside it; return the record's path.

    Run where sandbox hosts are started (``sandbox.up``), so that reading the sandbox's data
    (group_data/sandbox.py, through ``built_for_sandbox``) writes nothing.
    """
    path, digest = build_weaviate_tarball(SANDBOX_VERSION, build_dir)
    record = Path(build_dir) / SANDBOX_RECORD
    _write_atomically(record, json.dumps({
        "version": SANDBOX_VERSION, "tarball": path.name, "sha256": digest,
    }, indent=2).encode() + b"\n")
    return record


def built_for_sandbox(build_dir: Path) -> tuple[str, str, str]:
    """(version, tarball path, sha256) of the release ``build_for_sandbox`` last built.

    pyinfra reads every group data file on every run, prod's too, so a missing build must not
    raise here. Its sha256 is then a message instead, which validating the sandbox's data
    (deploy.py, ``orchestra-infra check sandbox``) rejects, naming the command that builds it.
    """
    record = Path(build_dir) / SANDBOX_RECORD
    try:
        built = json.loads(record.read_text())
    except FileNotFoundError:
        missing = f"{record} is missing: run `orchestra-infra sandbox up`"
        return SANDBOX_VERSION, str(record.parent / weaviate_asset_name(SANDBOX_VERSION)), missing
    return built["version"], str(record.parent / built["tarball"]), built["sha256"]


def _check_version(version: str) -> None:
    # Also keeps anything but a version out of the Python source it is written into.
    if not _VERSION_RE.match(version):
        raise ValueError(f"not a Weaviate version (X.Y.Z, no leading v): {version!r}")


def _reproducible_tar_gz(members: list[tuple[str, int, bytes]]) -> bytes:
    tar_bytes = io.BytesIO()
    # GNU format: what GNU tar, which builds the real asset, writes by default.
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    gz_bytes = io.BytesIO()
    # GzipFile rather than gzip.compress: the header it writes (mtime 0, no file name) is the
    # same on every Python version, gzip.compress's is not.
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz_bytes, compresslevel=9,
                       mtime=0) as gz:
        gz.write(tar_bytes.getvalue())
    return gz_bytes.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (a web server handing out the artifact) never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
