"""Node.js from NodeSource on prod (one package) or from the distro (nodejs + npm)."""

from types import SimpleNamespace

from operations import pm2


def test_nodesource_bundles_npm_the_distro_splits_it():
    nodesource = SimpleNamespace(node_apt_repository="https://node.example.invalid/node_22.x")
    distro = SimpleNamespace(node_apt_repository=None)
    assert pm2.packages(nodesource) == ["nodejs"]
    assert pm2.packages(distro) == ["nodejs", "npm"]


def test_no_repository_without_data():
    assert pm2.add_repository(SimpleNamespace(node_apt_repository=None)) is None
