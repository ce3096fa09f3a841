"""pyinfra inventory of one bare fake host, for capture.py: the single-instance layout,
with group_data/all.py's defaults and the few values a real environment must supply."""

hosts = [("@fake/golden", {
    "environment": "golden",
    "weaviate_sha256": "0" * 64,
})]
edge = list(hosts)
app = list(hosts)
data = list(hosts)
