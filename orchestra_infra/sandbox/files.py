"""Writing and deleting files of root file systems, which belong to another machine.

A root file system may hold symlinks into this machine's own files, and mounts (a killed
debootstrap can leave /proc, /sys or /dev mounted inside): neither may be followed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .commands import run_command
from .errors import SandboxError


def replace_file(path: Path, content: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # may be a symlink into the host's own files
    path.write_text(content)
    path.chmod(mode)


def remove_tree(path: Path) -> None:
    """rmtree that first unmounts whatever is mounted below: it must never descend into a mount."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        run_command(["umount", "--lazy", point])
    if _mounts_under(path):
        raise SandboxError(f"refusing to delete {path}: still has mounts below it")
    shutil.rmtree(path)


def _mounts_under(path: Path) -> list[str]:
    """Mount points below path, deepest first, so each is unmounted before its parent."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted((p for p in points if (p + "/").startswith(prefix)), reverse=True)
