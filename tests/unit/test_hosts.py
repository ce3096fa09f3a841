"""Real environments' host lists: files and environment variables, never committed."""

import pytest

from orchestra_infra import hosts


def test_a_bare_address_is_in_every_group():
    assert hosts.parse("203.0.113.10\n", "hosts/prod") == {
        "edge": ["203.0.113.10"], "app": ["203.0.113.10"], "data": ["203.0.113.10"],
    }


def test_groups_comments_and_blank_lines():
    text = "# prod\n\n203.0.113.10  edge,app   # the front\n203.0.113.11 data\n"
    assert hosts.parse(text, "hosts/prod") == {
        "edge": ["203.0.113.10"], "app": ["203.0.113.10"], "data": ["203.0.113.11"],
    }


def test_unknown_group_names_file_and_line():
    with pytest.raises(hosts.HostsError) as raised:
        hosts.parse("203.0.113.10\n203.0.113.11 web\n", "hosts/prod")
    assert str(raised.value) == (
        "hosts/prod:2: expected 'ADDRESS [edge,app,data]', got '203.0.113.11 web'"
    )


def test_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHESTRA_ROOT", str(tmp_path))
    monkeypatch.setenv("ORCHESTRA_STAGING_HOSTS", "198.51.100.1,198.51.100.2")
    assert hosts.load("staging")["app"] == ["198.51.100.1", "198.51.100.2"]


def test_missing_hosts_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHESTRA_ROOT", str(tmp_path))
    monkeypatch.delenv("ORCHESTRA_PROD_HOSTS", raising=False)
    with pytest.raises(hosts.HostsError) as raised:
        hosts.load("prod")
    assert str(raised.value) == (
        f"no hosts for prod: write {tmp_path}/hosts/prod (one address per line) "
        "or set ORCHESTRA_PROD_HOSTS"
    )
