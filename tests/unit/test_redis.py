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


WANTED = ["127.0.0.1", "-::1"]


def test_redis_62_and_later_skip_a_missing_optional_address_themselves():
    assert redis.bind_addresses(WANTED, (7, 0), ["127.0.0.1"]) == WANTED
    assert redis.bind_addresses(WANTED, (6, 2), []) == WANTED


def test_redis_60_gets_an_optional_address_bare_where_the_host_has_it():
    # Ubuntu 22.04's 6.0.16 refuses "-::1" ("Name or service not known") and never starts.
    assert redis.bind_addresses(WANTED, (6, 0), ["127.0.0.1", "::1", "10.0.0.2"]) == [
        "127.0.0.1", "::1"]


def test_redis_60_leaves_out_an_optional_address_the_host_lacks():
    assert redis.bind_addresses(WANTED, (6, 0), ["127.0.0.1", "10.0.0.2"]) == ["127.0.0.1"]


@pytest.mark.parametrize(("hello_before_auth", "default_user"), [
    (True, "user default off resetkeys -@all +hello"),
    (False, "user default off"),
])
def test_the_default_user_stays_off_and_may_only_say_hello_on_redis_60(hello_before_auth,
                                                                         default_user):
    from types import SimpleNamespace

    from operations import render
    config = SimpleNamespace(redis_app_user="orchestra")
    text = render.render("redis/etc/redis/users.acl.j2",
                         {"config": config, "channel_acls": not hello_before_auth,
                          "hello_before_auth": hello_before_auth}, masked=True)
    lines = text.splitlines()
    assert lines[0] == default_user
    assert [line.split()[1] for line in lines] == ["default", "admin", "orchestra", "prometheus"]
