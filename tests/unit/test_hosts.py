"""Real environments' host lists: files and environment variables, never committed."""

import pytest

from orchestra_infra import hosts


def test_a_bare_address_is_in_every_group():
    assert hosts.parse("203.0.113.10\n", "hosts/prod") == {
        "edge": ["203.0.113.10"], "app": ["203.0.113.10"], "data": ["203.0.113.10"],
        "metrics": ["203.0.113.10"],
    }


def test_groups_comments_and_blank_lines():
    text = "# prod\n\n203.0.113.10  edge,app   # the front\n203.0.113.11 data\n"
    # The environment's Prometheus on the first edge host, unless a line says.
    assert hosts.parse(text, "hosts/prod") == {
        "edge": ["203.0.113.10"], "app": ["203.0.113.10"], "data": ["203.0.113.11"],
        "metrics": ["203.0.113.10"],
    }
    assert hosts.parse(text.replace("data", "data,metrics"), "hosts/prod")["metrics"] == \
        ["203.0.113.11"]


def test_one_metrics_host_at_most():
    text = "203.0.113.10 edge,app,metrics\n203.0.113.11 data,metrics\n"
    assert hosts.layout_problems(text, "hosts/prod", "10.210.0.0/16") == [
        "hosts/prod: at most one host may be in group metrics (the environment's Prometheus and "
        "Alertmanager), found 2: 203.0.113.10 (hosts/prod:1), 203.0.113.11 (hosts/prod:2)"]


def test_recording_a_host_leaves_the_implicit_metrics_group_unwritten(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHESTRA_ROOT", str(tmp_path))
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "prod").write_text("203.0.113.10  edge,app\n203.0.113.12 data\n")
    assert hosts.record("prod", "203.0.113.10", ["edge", "app"]) is False
    assert hosts.record("prod", "203.0.113.11", ["app"]) is True
    assert (tmp_path / "hosts" / "prod").read_text() == \
        "203.0.113.10  edge,app\n203.0.113.12 data\n203.0.113.11  app\n"


def test_unknown_group_names_file_and_line():
    with pytest.raises(hosts.HostsError) as raised:
        hosts.parse("203.0.113.10\n203.0.113.11 web\n", "hosts/prod")
    assert str(raised.value) == (
        "hosts/prod:2: expected 'ADDRESS [edge,app,data,metrics] [drain]', got '203.0.113.11 web'"
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


def test_record_creates_the_file_and_is_idempotent(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHESTRA_ROOT", str(tmp_path))
    monkeypatch.delenv("ORCHESTRA_PROD_HOSTS", raising=False)
    assert hosts.record("prod", "203.0.113.10") is True
    assert hosts.record("prod", "203.0.113.10") is False
    assert hosts.load("prod")["data"] == ["203.0.113.10"]
    assert (tmp_path / "hosts" / "prod").read_text().splitlines()[1:] == ["203.0.113.10"]


def test_record_appends_keeping_comments_and_groups(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHESTRA_ROOT", str(tmp_path))
    (tmp_path / "hosts").mkdir()
    path = tmp_path / "hosts" / "prod"
    path.write_text("# prod\n203.0.113.10  edge   # the front\n")
    assert hosts.record("prod", "203.0.113.11", groups=["data", "app"]) is True
    assert path.read_text() == "# prod\n203.0.113.10  edge   # the front\n203.0.113.11  app,data\n"
    assert hosts.record("prod", "203.0.113.11", groups=["app", "data"]) is False
    assert hosts.record("prod", "203.0.113.11") is False  # no groups given: the line stays
    assert hosts.record("prod", "203.0.113.11", groups=["data"]) is True
    assert path.read_text().splitlines()[-1] == "203.0.113.11  data"


def test_record_replace_comments_out_the_other_hosts(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHESTRA_ROOT", str(tmp_path))
    (tmp_path / "hosts").mkdir()
    path = tmp_path / "hosts" / "prod"
    path.write_text("# prod\n203.0.113.10\n")
    assert hosts.record("prod", "203.0.113.20", replace=True) is True
    assert path.read_text() == "# prod\n# replaced by 203.0.113.20: 203.0.113.10\n203.0.113.20\n"
    assert hosts.record("prod", "203.0.113.20", replace=True) is False


def test_record_refuses_bad_input_and_leaves_a_broken_file_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHESTRA_ROOT", str(tmp_path))
    with pytest.raises(hosts.HostsError, match="not a host address"):
        hosts.record("prod", "203.0.113.10 web")
    with pytest.raises(hosts.HostsError, match="unknown group web"):
        hosts.record("prod", "203.0.113.10", groups=["web"])
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "prod").write_text("203.0.113.10 web\n")
    with pytest.raises(hosts.HostsError, match="hosts/prod:1"):
        hosts.record("prod", "203.0.113.11")
    assert (tmp_path / "hosts" / "prod").read_text() == "203.0.113.10 web\n"
