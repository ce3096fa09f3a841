"""Application releases as content-addressed tarballs built on the control machine.

The same source tree always gives the same bytes (sorted members, fixed mtime and owner,
gzip without a timestamp), so its digest names the release: deploying unchanged code is
a no-op, and a release id says exactly what runs.

Symbolic links are never followed out of the source tree: the app repository is code
someone else can push to, and a link to ``secrets/ENV.yaml`` or ``~/.ssh`` must not ship
the operator's files to the hosts. A link that resolves inside the tree is packed as a
link (relative, as written); any other (absolute, escaping with ``..``, or through a chain
of links that leaves the tree) stops the release with its path named, before anything is
uploaded.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

from .errors import ConfigError

# Build products and caches are made on the host, never shipped.
EXCLUDED = {"node_modules", "dist", "__pycache__", ".ruff_cache", ".pytest_cache", ".venv"}
FIXED_MTIME = 315532800  # 1980-01-01, any constant would do


def _members(source: Path) -> list[Path]:
    """Files and links under source, sorted; links are listed, never descended into."""
    found = []
    for directory, dirs, files in os.walk(source):  # followlinks=False: links stay leaves
        dirs[:] = [d for d in dirs if d not in EXCLUDED]
        base = Path(directory)
        for name in dirs + [f for f in files if f not in EXCLUDED]:
            path = base / name
            if path.is_symlink() or (name in files and path.is_file()):
                found.append(path.relative_to(source))
    return sorted(found)


def link_problem(source: Path, relative: Path) -> str | None:
    """Why the link at source/relative may not be packed, or None when it stays inside."""
    target = os.readlink(source / relative)
    if os.path.isabs(target):
        return f"{relative} -> {target}: an absolute link"
    # As written, step by step: on the host the tree has another name, so even a `..`
    # that comes back in (`../src/x`) would leave the release there.
    depth = len(relative.parent.parts)
    for part in Path(target).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return f"{relative} -> {target}: leads out of the source tree"
    root = os.path.realpath(source)
    resolved = os.path.realpath(source / relative)  # through any chain of links
    if resolved != root and not resolved.startswith(root + os.sep):
        return f"{relative} -> {target}: leads out of the source tree (to {resolved})"
    return None


def check_links(source: Path, members: list[Path]) -> None:
    problems = [problem for relative in members if (source / relative).is_symlink()
                and (problem := link_problem(source, relative))]
    if problems:
        raise ConfigError([f"app_source: {source}: {p}; a release never follows a link out of "
                           "its source tree" for p in problems])


def build(source: Path, out_dir: Path) -> tuple[Path, str]:
    """Pack ``source`` reproducibly into ``out_dir``; return the tarball and release id."""
    raw = io.BytesIO()
    members = _members(source)
    check_links(source, members)
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for relative in members:
            path = source / relative
            info = tarfile.TarInfo(str(relative))
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path.is_symlink():
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
                tar.addfile(info)
                continue
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    release_id = hashlib.sha256(packed.getvalue()).hexdigest()[:12]
    out_dir.mkdir(parents=True, exist_ok=True)
    tarball = out_dir / f"orchestra-{release_id}.tar.gz"
    if not tarball.exists():
        tmp = tarball.with_suffix(".tmp")
        tmp.write_bytes(packed.getvalue())
        tmp.replace(tarball)
    return tarball, release_id
