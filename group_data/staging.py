"""Staging: overrides of group_data/all.py."""

environment = "staging"
# Staging may take updates and reboot on its own; prod waits for a maintenance window.
unattended_upgrades_reboot = True
