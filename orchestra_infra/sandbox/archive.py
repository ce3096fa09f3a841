"""Proof that an Ubuntu root file system came from Ubuntu's archive, before any of it runs.

This machine (Debian 12) has no Ubuntu archive keyring, so debootstrap cannot check the
archive's signature while it downloads. The image is therefore built in two stages
(``--foreign``: download and unpack, no package script runs; then ``--second-stage`` in a
chroot) and, between the two, this module checks the whole chain on what stage one left:

1. the keyring in the new root file system holds the archive key pinned below (fingerprint);
2. the suite's ``InRelease`` has a valid signature by that key (``gpgv``);
3. each ``Packages`` index debootstrap used has the SHA256 and size the signed file lists;
4. each downloaded ``.deb`` has the SHA256 and size its ``Packages`` entry lists.

Only then does any code from the download run as root here.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
from pathlib import Path

from .errors import SandboxError

KEYRING = "usr/share/keyrings/ubuntu-archive-keyring.gpg"
# "Ubuntu Archive Automatic Signing Key (2018) <ftpmaster@ubuntu.com>", and the 2012 key
# that also signs the older suites' InRelease.
ARCHIVE_KEYS = frozenset({
    "F6ECB3762474EDA9D21B7022871920D1991BC93C",
    "790BC7277767219C42C86F933B4FE6ACC0B21F32",
})
LISTS = "var/lib/apt/lists"
ARCHIVES = "var/cache/apt/archives"


def verify_stage_one(rootfs: Path, suite: str) -> int:
    """Check the chain above on a ``--foreign`` root file system; the number of .debs checked."""
    in_release = _one(rootfs / LISTS, f"*_dists_{suite}_InRelease")
    with tempfile.TemporaryDirectory() as scratch:
        signed = signed_content(_keyring(rootfs, Path(scratch)), in_release)
    listed = release_sha256(signed)
    packages = sorted((rootfs / LISTS).glob(f"*_dists_{suite}_*_binary-*_Packages"))
    if not packages:
        raise SandboxError(f"no Packages index of {suite} in /{LISTS}")
    index: dict[str, tuple[str, int]] = {}
    for path in packages:
        # HOST_ubuntu_dists_jammy_main_binary-amd64_Packages -> main/binary-amd64/Packages
        relative = path.name.split(f"_dists_{suite}_", 1)[1].replace("_", "/")
        _check(path, listed.get(relative), f"{relative} (signed InRelease)")
        index.update(packages_sha256(path.read_text()))
    debs = sorted((rootfs / ARCHIVES).glob("*.deb"))
    if not debs:
        raise SandboxError(f"no downloaded packages in /{ARCHIVES}")
    for deb in debs:
        _check(deb, index.get(deb.name), f"{deb.name} (Packages)")
    return len(debs)


def _keyring(rootfs: Path, scratch: Path) -> Path:
    """The keyring that came with the download: unpacked by stage one, or still in its .deb
    (``dpkg-deb -x`` runs nothing). Whatever it holds, only the pinned keys count."""
    if (rootfs / KEYRING).is_file():
        return rootfs / KEYRING
    for deb in sorted((rootfs / ARCHIVES).glob("ubuntu-keyring_*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True,
                       capture_output=True)
        if (scratch / KEYRING).is_file():
            return scratch / KEYRING
    raise SandboxError(f"no archive keyring (/{KEYRING}) in the downloaded packages")


def signed_content(keyring: Path, in_release: Path) -> str:
    """The text InRelease signs, once gpgv has found a valid signature by a pinned key."""
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "Release"
        result = subprocess.run(
            ["gpgv", "--status-fd", "1", "--keyring", str(keyring), "--output", str(body),
             str(in_release)],
            capture_output=True, text=True,
        )
        signers = {line.split()[-1] for line in result.stdout.splitlines()
                   if line.startswith("[GNUPG:] VALIDSIG ")}
        if result.returncode != 0 or not signers & ARCHIVE_KEYS:
            raise SandboxError(
                f"{in_release.name}: no valid signature by the Ubuntu archive key "
                f"({', '.join(sorted(ARCHIVE_KEYS))}); gpgv said:\n{result.stderr.strip()}"
            )
        return body.read_text()


def release_sha256(release: str) -> dict[str, tuple[str, int]]:
    """{path: (sha256, size)} of a Release file's SHA256 section."""
    listed = {}
    section = False
    for line in release.splitlines():
        if not line.startswith(" "):
            section = line.strip() == "SHA256:"
            continue
        if section:
            digest, size, path = line.split()
            listed[path] = (digest, int(size))
    return listed


def packages_sha256(packages: str) -> dict[str, tuple[str, int]]:
    """{deb file name as debootstrap saves it: (sha256, size)} of a Packages index.

    debootstrap names a download PACKAGE_VERSION_ARCH.deb with the epoch's colon as %3a.
    """
    found = {}
    keys = {"Package", "Version", "Architecture", "SHA256", "Size"}
    for stanza in packages.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9]+): (\S+)$", stanza, re.MULTILINE))
        if keys <= fields.keys():
            version = fields["Version"].replace(":", "%3a")
            name = f"{fields['Package']}_{version}_{fields['Architecture']}.deb"
            found[name] = (fields["SHA256"], int(fields["Size"]))
    return found


def _check(path: Path, expected: tuple[str, int] | None, what: str) -> None:
    if expected is None:
        raise SandboxError(f"{path.name} is not listed in {what.split(' (')[1].rstrip(')')}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if (digest, path.stat().st_size) != expected:
        raise SandboxError(f"{what}: sha256 {digest} or size {path.stat().st_size} "
                           f"does not match the listed {expected[0]} / {expected[1]}")


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise SandboxError(f"expected one {pattern} in /{LISTS}, found {len(found)}")
    return found[0]
