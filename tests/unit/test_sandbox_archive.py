"""archive.py: the Ubuntu image's download is checked against a pinned key before it runs.

A throwaway GnuPG key signs a miniature archive here; the pinned set is patched to that key, so
the same gpgv call and hash checks run as on the real download (verified on one in the e2e
image build), and each link of the chain is broken once.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestra_infra.sandbox import archive
from orchestra_infra.sandbox.errors import SandboxError

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("gpgv")),
                                reason="needs gpg and gpgv")
PREFIX = "mirror.invalid_ubuntu_dists_jammy"


def _gpg(home: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", *args], check=True,
                          capture_output=True, **kwargs)


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    _gpg(home, "--passphrase", "", "--quick-gen-key", "archive test key", "ed25519", "sign",
         "never")
    fpr = next(line.split(":")[9] for line in _gpg(home, "--with-colons", "--list-keys").stdout
               .decode().splitlines() if line.startswith("fpr"))
    keyring = home / "exported.gpg"
    keyring.write_bytes(_gpg(home, "--export", fpr).stdout)
    yield home, fpr, keyring
    # gpg leaves an agent running for its home: stop it with the test.
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(root: Path, signer, deb_body=b"deb payload", sign_with=None) -> Path:
    home, fpr, keyring = signer
    deb = b"!<arch>\n" + deb_body
    packages = (f"Package: base-files\nArchitecture: amd64\nVersion: 1:12\n"
                f"Filename: pool/main/b/base-files/base-files_12_amd64.deb\n"
                f"Size: {len(deb)}\nSHA256: {_sha(deb)}\n\n").encode()
    release = ("Origin: Ubuntu\nSuite: jammy\nSHA256:\n"
               f" {_sha(packages)} {len(packages)} main/binary-amd64/Packages\n")
    lists = root / archive.LISTS
    lists.mkdir(parents=True)
    (root / archive.ARCHIVES).mkdir(parents=True)
    (root / archive.KEYRING).parent.mkdir(parents=True)
    shutil.copy(keyring, root / archive.KEYRING)
    (lists / f"{PREFIX}_main_binary-amd64_Packages").write_bytes(packages)
    (root / archive.ARCHIVES / "base-files_1%3a12_amd64.deb").write_bytes(deb)
    signed = _gpg(sign_with or home, "--clearsign", "--local-user", fpr, "--output", "-",
                  input=release.encode()).stdout
    (lists / f"{PREFIX}_InRelease").write_bytes(signed)
    return root


@pytest.fixture
def pinned(signer, monkeypatch):
    monkeypatch.setattr(archive, "ARCHIVE_KEYS", frozenset({signer[1]}))


def test_a_download_signed_by_the_pinned_key_passes(tmp_path, signer, pinned):
    assert archive.verify_stage_one(build(tmp_path, signer), "jammy") == 1


def test_a_valid_signature_by_another_key_is_refused(tmp_path, signer):
    # The keyring that came with the download holds the signer, but the pin does not.
    with pytest.raises(SandboxError, match="no valid signature by the Ubuntu archive key"):
        archive.verify_stage_one(build(tmp_path, signer), "jammy")


def test_a_changed_index_is_refused(tmp_path, signer, pinned):
    root = build(tmp_path, signer)
    index = root / archive.LISTS / f"{PREFIX}_main_binary-amd64_Packages"
    index.write_text(index.read_text().replace("base-files", "base-filez"))
    with pytest.raises(SandboxError, match="main/binary-amd64/Packages .signed InRelease."):
        archive.verify_stage_one(root, "jammy")


def test_a_changed_package_is_refused(tmp_path, signer, pinned):
    root = build(tmp_path, signer)
    (root / archive.ARCHIVES / "base-files_1%3a12_amd64.deb").write_bytes(b"!<arch>\nevil payload")
    with pytest.raises(SandboxError, match="base-files_1%3a12_amd64.deb .Packages.: sha256"):
        archive.verify_stage_one(root, "jammy")


def test_an_unlisted_package_is_refused(tmp_path, signer, pinned):
    root = build(tmp_path, signer)
    (root / archive.ARCHIVES / "extra_1_amd64.deb").write_bytes(b"!<arch>\n")
    with pytest.raises(SandboxError, match="extra_1_amd64.deb is not listed in Packages"):
        archive.verify_stage_one(root, "jammy")


def test_a_tampered_signature_is_refused(tmp_path, signer, pinned):
    root = build(tmp_path, signer)
    in_release = root / archive.LISTS / f"{PREFIX}_InRelease"
    in_release.write_text(in_release.read_text().replace("Origin: Ubuntu", "Origin: Evil"))
    with pytest.raises(SandboxError, match="no valid signature"):
        archive.verify_stage_one(root, "jammy")


def test_no_keyring_is_refused(tmp_path, signer, pinned):
    root = build(tmp_path, signer)
    (root / archive.KEYRING).unlink()
    with pytest.raises(SandboxError, match="no archive keyring .* in the downloaded packages"):
        archive.verify_stage_one(root, "jammy")


def test_the_real_ubuntu_keys_are_pinned():
    # The fingerprints of the Ubuntu archive's 2018 and 2012 signing keys.
    assert archive.ARCHIVE_KEYS == {"F6ECB3762474EDA9D21B7022871920D1991BC93C",
                                    "790BC7277767219C42C86F933B4FE6ACC0B21F32"}
