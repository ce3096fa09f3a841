"""Local sandbox hosts (orchestra-infra sandbox up): overrides of group_data/all.py."""

import glob as _glob

environment = "sandbox"
# The sandbox reaches the package registries through this machine's TLS-inspecting
# gateway; its CA certificates must be trusted on the hosts, as on a corporate network.
extra_ca_certificates = sorted(_glob.glob("/usr/local/share/ca-certificates/*.crt"))
