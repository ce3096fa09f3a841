"""Each host's own disk: a copy of the image, given the host's own identity and our login key."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .commands import run_command
from .files import remove_tree, replace_file
from .image import TAR_FLAGS
from .paths import USER, ssh_key_path


def create_rootfs(entry: Mapping[str, Any], tarball: Path) -> None:
    """Unpack a fresh disk for the host, then give it its own identity.

    Unpacked beside its final place and renamed, so an existing rootfs is always a complete one.
    """
    rootfs = Path(entry["rootfs"])
    staging = rootfs.with_name("rootfs.new")
    remove_tree(staging)
    staging.mkdir(parents=True)
    run_command(["tar", *TAR_FLAGS, "-C", str(staging), "-xpf", str(tarball)])
    personalise_rootfs(staging, entry["name"])
    remove_tree(rootfs)
    os.replace(staging, rootfs)


def personalise_rootfs(rootfs: Path, name: str) -> None:
    replace_file(rootfs / "etc/hostname", f"{name}\n")
    with open(rootfs / "etc/hosts", "a") as hosts:
        hosts.write(f"127.0.1.1\t{name}\n")  # sudo resolves the hostname on every call
    # A fixed machine ID keeps journald's files across reboots and avoids systemd's first-boot
    # mode, which would apply unit presets and could enable services a cloud image does not run.
    replace_file(rootfs / "etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    run_command(["chroot", str(rootfs), "ssh-keygen", "-A"])
    install_authorized_key(rootfs, ssh_key_path().with_suffix(".pub").read_text())


def install_authorized_key(rootfs: Path, public_key: str) -> None:
    # Installed per host rather than baked into the cached image: the cache outlives the state
    # folder that holds the key, and a regenerated key must still log in.
    home = rootfs / "home" / USER
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(public_key)
    keys.chmod(0o600)
    uid, gid = home.stat().st_uid, home.stat().st_gid
    for path in (ssh_dir, keys):
        os.chown(path, uid, gid)
