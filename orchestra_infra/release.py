"""Application releases as content-addressed tarballs built on the control machine.

The same source tree always gives the same bytes (sorted members, fixed mtime and owner,
gzip without a timestamp), so its digest names the release: deploying unchanged code is
a no-op, and a release id says exactly what runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

# Build products and caches are made on the host, never shipped.
EXCLUDED = {"node_modules", "dist", "__pycache__", ".ruff_cache", ".pytest_cache", ".venv"}
FIXED_MTIME = 315532800  # 1980-01-01, any constant would do


def _members(source: Path) -> list[Path]:
    files = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if EXCLUDED.intersection(relative.parts) or not path.is_file():
            continue
        files.append(relative)
    return files


def build(source: Path, out_dir: Path) -> tuple[Path, str]:
    """Pack ``source`` reproducibly into ``out_dir``; return the tarball and release id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for relative in _members(source):
            data = (source / relative).read_bytes()
            info = tarfile.TarInfo(str(relative))
            info.size = len(data)
            info.mtime = FIXED_MTIME
            info.mode = 0o755 if (source / relative).stat().st_mode & 0o111 else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
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
