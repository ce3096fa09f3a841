"""Production: overrides of group_data/all.py."""

environment = "prod"
