"""Node.js: NodeSource's repository by default (one package), the distro's only where it is
new enough, and an older installed major upgraded."""

from types import SimpleNamespace

import pytest
from pyinfra.api import DeployError
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from operations import pm2


def _config(**kwargs):
    defaults = {"node_source": "nodesource", "node_major": 22, "node_apt_repository": None,
                "node_apt_key_url": None}
    return SimpleNamespace(**{**defaults, **kwargs})


def test_nodesource_bundles_npm_the_distro_splits_it():
    assert pm2.packages(_config(), ["app"]) == ["nodejs"]
    assert pm2.packages(_config(node_source="distro"), ["app"]) == ["nodejs", "npm"]


def test_nodesource_urls_follow_the_pinned_major_unless_a_mirror_is_set():
    assert pm2.repository_url(_config(node_major=24)) == "https://deb.nodesource.com/node_24.x"
    assert pm2.key_url(_config()) == "https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key"
    mirror = _config(node_apt_repository="http://10.0.0.1:8765/node_22.x",
                     node_apt_key_url="http://10.0.0.1:8765/gpgkey/nodesource-repo.gpg.key")
    assert pm2.repository_url(mirror) == "http://10.0.0.1:8765/node_22.x"
    assert pm2.key_url(mirror) == "http://10.0.0.1:8765/gpgkey/nodesource-repo.gpg.key"


def test_no_repository_for_the_distros_node():
    assert pm2.add_repository(_config(node_source="distro")) is None


def _on(distro, candidate=None):
    state = FakeState()
    host = create_host(state, facts={
        "server.LinuxDistribution": distro,
        "facts.AptCandidate": {"package=nodejs": candidate},
    })
    return state, host


@pytest.mark.parametrize(("distro", "candidate"), [
    ({"name": "Ubuntu", "major": 22}, None),  # a bare instance: no package lists yet
    ({"name": "Ubuntu", "major": 22}, "12.22.9~dfsg-1ubuntu3.6"),
    ({"name": "Ubuntu", "major": 20}, "10.19.0~dfsg-3ubuntu1"),  # not in the table: apt says
])
def test_distro_node_older_than_18_stops_the_deploy_saying_what_to_set(distro, candidate):
    state, host = _on(distro, candidate)
    with ctx_state.use(state), ctx_host.use(host), \
            pytest.raises(DeployError, match='set node_source = "nodesource"'):
        pm2.check_node(_config(node_source="distro"))


@pytest.mark.parametrize("distro", [{"name": "Debian", "major": 12},
                                    {"name": "Ubuntu", "major": 24}])
def test_distro_node_18_or_newer_is_accepted(distro):
    state, host = _on(distro)
    with ctx_state.use(state), ctx_host.use(host):
        pm2.check_node(_config(node_source="distro"))


def test_nodesource_is_accepted_on_ubuntu_2204():
    state, host = _on({"name": "Ubuntu", "major": 22})
    with ctx_state.use(state), ctx_host.use(host):
        pm2.check_node(_config())
