"""The root file system every host starts from: debootstrap once, customise, cache as a tarball.

What makes a host itself (name, machine ID, host keys, login key) is added to each host's copy
(disk.py), so one tarball serves every host.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .archive import verify_stage_one
from .commands import run_command
from .errors import SandboxError
from .files import remove_tree, replace_file
from .paths import USER, cache_dir

# Bump when the image customisation below changes; the debootstrap command is hashed into the
# tarball name as well, so a changed package list or mirror rebuilds the cache by itself.
IMAGE_RECIPE_VERSION = 2
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "ca-certificates",
    "iproute2",
)
IMAGE_SUITES = {"debian12": "bookworm", "ubuntu2204": "jammy"}
DEFAULT_IMAGE = "ubuntu2204"
# What a Lambda Stack instance has that can change a deploy, from Ubuntu's own archive:
# apt's first-boot run and daily timers, needrestart, Docker Engine with its own firewall rules,
# a time zone database. (No NVIDIA driver or CUDA: no sandbox host has a GPU.)
LAMBDA_PACKAGES = ("unattended-upgrades", "needrestart", "docker.io", "tzdata", "curl")
UBUNTU_COMPONENTS = "main restricted universe multiverse"
OVERLAY = Path(__file__).resolve().parent / "overlay"
BUILD_TIMEOUT = 1800.0

# Numeric owners: the image's users are not this machine's. Extended attributes carry file
# capabilities.
TAR_FLAGS = ("--numeric-owner", "--xattrs", "--xattrs-include=*")


def debootstrap_command(image: str, target: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The debootstrap argv for image, from debootstrap's own default archive of the suite
    unless SANDBOX_MIRROR names another one (Ubuntu only).

    Ubuntu is built ``--foreign`` without a signature check (this machine has no Ubuntu
    keyring): archive.py verifies the download against a pinned key before stage two runs.
    """
    env = os.environ if env is None else env
    if image not in IMAGE_SUITES:
        raise SandboxError(f"unknown image {image!r}: choose one of {', '.join(IMAGE_SUITES)}")
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
    if image == "ubuntu2204":
        argv += ["--components=main,universe", "--foreign", "--no-check-gpg"]
    argv += [IMAGE_SUITES[image], target]
    mirror = env.get("SANDBOX_MIRROR", "").strip()
    if image == "ubuntu2204" and mirror:
        argv.append(mirror)
    return argv


def ubuntu_sources_list(mirror: str) -> str:
    suite = IMAGE_SUITES["ubuntu2204"]
    return "".join(
        f"deb {mirror} {s} {UBUNTU_COMPONENTS}\n"
        for s in (suite, f"{suite}-updates", f"{suite}-security")
    )


def debootstrap_mirror(rootfs: Path) -> str:
    """The archive debootstrap used: the one URL of the sources.list it wrote."""
    lines = (rootfs / "etc/apt/sources.list").read_text().split()
    if len(lines) < 2 or lines[0] != "deb":
        raise SandboxError(f"unexpected sources.list from debootstrap: {' '.join(lines)!r}")
    return lines[1]


def image_tarball(image: str, env: Mapping[str, str] | None = None) -> Path:
    """Cache path of image, stamped with the recipe so a changed recipe means a new file."""
    recipe = [IMAGE_RECIPE_VERSION, debootstrap_command(image, "TARGET", env)]
    if image == "ubuntu2204":
        recipe += [LAMBDA_PACKAGES, sorted((str(f.relative_to(OVERLAY)), f.read_text())
                                           for f in OVERLAY.rglob("*") if f.is_file())]
    stamp = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:10]
    return cache_dir() / f"rootfs-{image}-v{IMAGE_RECIPE_VERSION}-{stamp}.tar"


def ensure_image(image: str) -> Path:
    """The cached root file system tarball for image, built first if missing."""
    tarball = image_tarball(image)
    if not tarball.exists():
        build_image(image, tarball)
    return tarball


def build_image(image: str, tarball: Path) -> None:
    """Build into a temporary folder and rename into place: an interrupted build leaves no cache."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(tarball.parent)
    work = Path(tempfile.mkdtemp(dir=tarball.parent, prefix=".build-"))
    try:
        rootfs = work / "rootfs"
        run_command(debootstrap_command(image, str(rootfs)), timeout=BUILD_TIMEOUT)
        if image == "ubuntu2204":
            verify_stage_one(rootfs, IMAGE_SUITES[image])
            run_command(["chroot", str(rootfs), "/debootstrap/debootstrap", "--second-stage"],
                        timeout=BUILD_TIMEOUT)
        customise_image(rootfs, image)
        partial = work / tarball.name
        run_command(["tar", *TAR_FLAGS, "-C", str(rootfs), "-cf", str(partial), "."])
        os.replace(partial, tarball)
    finally:
        # Not rmtree alone: a killed debootstrap can leave /proc, /sys or /dev mounted inside.
        remove_tree(work)
    for stale in tarball.parent.glob(f"rootfs-{image}-*.tar"):
        if stale != tarball:
            stale.unlink()


def remove_abandoned_builds(cache: Path) -> None:
    """Build folders of a killed process; older than any build can run, so none is in use."""
    cutoff = time.time() - 2 * BUILD_TIMEOUT
    for work in cache.glob(".build-*"):
        if work.stat().st_mtime < cutoff:
            remove_tree(work)


def customise_image(rootfs: Path, image: str) -> None:
    """What every host shares: the ubuntu user, DNS, a fresh-instance apt state."""
    # This machine resolves the registries through its own resolv.conf and hosts file.
    replace_file(rootfs / "etc/resolv.conf", Path("/etc/resolv.conf").read_text())
    replace_file(rootfs / "etc/hosts", Path("/etc/hosts").read_text())
    useradd = ["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", USER]
    run_command(["chroot", str(rootfs), *useradd])
    replace_file(rootfs / "etc/sudoers.d/90-ubuntu", f"{USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    if image == "ubuntu2204":
        make_lambda_like(rootfs)
    # Identity is per host (set when a host is created): no host may share these.
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    replace_file(rootfs / "etc/hostname", "localhost\n")
    replace_file(rootfs / "etc/machine-id", "")
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    # A fresh instance has no package lists: the deploy must run apt-get update itself, as it
    # would have to on a real one. The downloaded .debs only make the tarball bigger.
    run_command(["chroot", str(rootfs), "apt-get", "clean"])
    for lists in (rootfs / "var/lib/apt/lists").glob("*"):
        if lists.is_file():
            lists.unlink()


def make_lambda_like(rootfs: Path) -> None:
    """Ubuntu's full sources, the packages of LAMBDA_PACKAGES, cloud-init's sshd drop-in and a
    first boot that holds the dpkg lock (overlay/ubuntu2204 mirrors where its files land)."""
    replace_file(rootfs / "etc/apt/sources.list", ubuntu_sources_list(debootstrap_mirror(rootfs)))
    # No service may start inside this chroot: it would run on this machine.
    replace_file(rootfs / "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    try:
        chroot = ["chroot", str(rootfs), "env", "DEBIAN_FRONTEND=noninteractive"]
        run_command([*chroot, "apt-get", "update", "-qq"], timeout=BUILD_TIMEOUT)
        run_command([*chroot, "apt-get", "install", "-y", "-qq", "--no-install-recommends",
                     *LAMBDA_PACKAGES], timeout=BUILD_TIMEOUT)
    finally:
        (rootfs / "usr/sbin/policy-rc.d").unlink()
    overlay = OVERLAY / "ubuntu2204"
    for source in sorted(overlay.rglob("*")):
        if source.is_file():
            replace_file(rootfs / source.relative_to(overlay), source.read_text(),
                         source.stat().st_mode & 0o777)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants/lambda-first-boot-apt.service"
    wants.unlink(missing_ok=True)
    wants.symlink_to("/etc/systemd/system/lambda-first-boot-apt.service")
