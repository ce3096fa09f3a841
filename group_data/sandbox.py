"""Local sandbox hosts (orchestra-infra sandbox up): overrides of group_data/all.py."""

import glob as _glob
from pathlib import Path as _Path

from standins.weaviate_release import build_weaviate_tarball as _build_weaviate_tarball

environment = "sandbox"
# The sandbox reaches the package registries through this machine's TLS-inspecting
# gateway; its CA certificates must be trusted on the hosts, as on a corporate network.
extra_ca_certificates = sorted(_glob.glob("/usr/local/share/ca-certificates/*.crt"))

# Weaviate's release cannot be downloaded here: the sandbox runs weaviate-standin (NOT
# Weaviate; see standins/weaviate/weaviate), packaged exactly like the release tarball and
# installed through the same code path, uploaded from this machine. The build is
# reproducible, so its checksum is as fixed as a pinned release's.
weaviate_version = "1.38.2"
_tarball, weaviate_sha256 = _build_weaviate_tarball(
    weaviate_version, _Path(__file__).resolve().parent.parent / "build"
)
weaviate_source = "upload"
weaviate_local_tarball = str(_tarball)
# Small hosts: keep Redis and Weaviate modest.
weaviate_memory_max = "2G"
