"""Local sandbox hosts (orchestra-infra sandbox up): overrides of group_data/all.py."""

import glob as _glob

from orchestra_infra.sandbox.paths import weaviate_build_dir as _weaviate_build_dir
from standins.weaviate_release import built_for_sandbox as _built_for_sandbox

environment = "sandbox"
# The sandbox reaches the package registries through this machine's TLS-inspecting
# gateway; its CA certificates must be trusted on the hosts, as on a corporate network.
extra_ca_certificates = sorted(_glob.glob("/usr/local/share/ca-certificates/*.crt"))

# Weaviate's release cannot be downloaded here: the sandbox runs weaviate-standin (NOT
# Weaviate; see standins/weaviate/weaviate), packaged exactly like the release tarball and
# installed through the same code path, uploaded from this machine. `orchestra-infra sandbox
# up` builds it (version: standins/weaviate_release.py) into this machine's sandbox cache and
# records it; this file only reads the record. The build is reproducible, so its checksum is
# as fixed as a pinned release's.
weaviate_version, weaviate_local_tarball, weaviate_sha256 = _built_for_sandbox(
    _weaviate_build_dir())
weaviate_source = "upload"
# Small hosts: keep Redis and Weaviate modest.
weaviate_memory_max = "2G"
# This machine's kernel has no WireGuard module: a multi-host sandbox layout runs
# wireguard-go (the hosts get /dev/net/tun).
wireguard_userspace = True
