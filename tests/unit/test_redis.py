"""Redis ACL rules the installed version accepts."""

import pytest
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

from operations import redis


@pytest.mark.parametrize(("candidate", "distro", "expected"), [
    ("5:7.0.15-1~deb12u1", {"name": "Debian", "major": 12}, True),
    ("5:6.0.16-1ubuntu1", {"name": "Ubuntu", "major": 22}, False),
    ("5:6.2.7-1", {"name": "Debian", "major": 11}, True),
    (None, {"name": "Ubuntu", "major": 22}, False),  # apt lists not fetched yet
    (None, {"name": "Debian", "major": 12}, True),
])
def test_channel_rules_only_where_redis_takes_them(candidate, distro, expected):
    state = FakeState()
    host = create_host(state, facts={
        "facts.AptCandidate": {"package=redis-server": candidate},
        "server.LinuxDistribution": distro,
    })
    with ctx_state.use(state), ctx_host.use(host):
        assert redis.channel_acls() is expected
