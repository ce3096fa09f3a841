"""The Lambda Cloud client and `orchestra-infra lambda` against lambda-standin on 127.0.0.1.

The client, the stand-in and the CLI share one fake clock: every wait (rate limits, Retry-After,
polling for an active instance) is a recorded call to its sleep, which moves the clock, so the
tests assert how long the client waited without ever waiting.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from orchestra_infra import hosts, secrets
from orchestra_infra import lambda_cloud as lc
from orchestra_infra.cli import main
from orchestra_infra.paths import REPO_ROOT
from standins.lambda_cloud import AddressPool, LambdaStandin

KEY = "standin-key-7c1e9a4f2b"  # recognisable, to look for it where it must not be
ADDRESSES = ["203.0.113.7", "203.0.113.8", "203.0.113.9"]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def standin(clock):
    with LambdaStandin(api_key=KEY, clock=clock.time, boot_delay=30.0,
                       address_source=AddressPool(ADDRESSES)) as server:
        yield server


def make_client(standin, clock, key=KEY, **kwargs):
    return lc.Client(key, standin.url + "/api/v1", clock=clock.time, sleep=clock.sleep, **kwargs)


@pytest.fixture
def client(standin, clock):
    return make_client(standin, clock)


def launches(standin) -> int:
    return sum(1 for request in standin.requests if request[1] == "/instance-operations/launch")


# --- client -----------------------------------------------------------------------------------


def test_instance_types_with_the_regions_that_have_capacity(client):
    types = {t.name: t for t in client.instance_types()}
    a10 = types["gpu_1x_a10"]
    assert [r.name for r in a10.regions_with_capacity] == ["us-east-1", "us-west-1"]
    assert (a10.gpus, a10.price_cents_per_hour) == (1, 75)
    assert types["gpu_8x_h100_sxm5"].regions_with_capacity == ()
    assert a10.has_capacity_in("us-west-1") and not a10.has_capacity_in("us-south-1")


def test_launch_then_wait_until_active(client, standin, clock):
    instance_id = client.launch("gpu_1x_a10", "us-east-1", "orchestra", "orchestra-data",
                                "orchestra-test")
    assert standin.launches == [{
        "region_name": "us-east-1", "instance_type_name": "gpu_1x_a10",
        "ssh_key_names": ["orchestra"], "quantity": 1,
        "file_system_names": ["orchestra-data"], "name": "orchestra-test",
    }]
    seen = []
    instance = client.wait_active(instance_id, timeout=300, interval=10, progress=seen.append)
    assert (instance.status, instance.ip, instance.region) == ("active", ADDRESSES[0], "us-east-1")
    assert instance.file_system_names == ("orchestra-data",)
    assert seen[0].status == "booting" and seen[0].ip is None
    assert [s for s in clock.sleeps if s == 10] == [10] * (len(seen) - 1)
    assert clock.now >= 1000 + 30  # it waited out the boot delay, on the fake clock


def test_insufficient_capacity_is_a_clear_error(client):
    with pytest.raises(lc.LambdaError) as raised:
        client.launch("gpu_8x_h100_sxm5", "us-east-1", "orchestra")
    e = raised.value
    assert (e.code, e.status) == (lc.INSUFFICIENT_CAPACITY, 400)
    assert str(e).startswith("Not enough capacity to fulfill launch request "
                             "(instance-operations/launch/insufficient-capacity). ")


def test_a_bad_key_is_a_clear_error_that_never_shows_a_key(standin, clock):
    client = make_client(standin, clock, key="wrong-key-0d9b3e")
    with pytest.raises(lc.LambdaError) as raised:
        client.instances()
    assert (raised.value.code, raised.value.status) == (lc.INVALID_API_KEY, 401)
    assert "API key was invalid" in str(raised.value)
    for text in (str(raised.value), repr(raised.value), repr(client)):
        assert "wrong-key-0d9b3e" not in text


def test_every_request_waits_a_second_after_the_previous_one(client, clock):
    client.instances()
    client.ssh_keys()
    client.file_systems()
    assert clock.sleeps == [1.0, 1.0]


def test_launches_are_twelve_seconds_apart(client, standin, clock):
    client.launch("gpu_1x_a10", "us-east-1", "orchestra")
    client.instances()
    client.launch("gpu_1x_a10", "us-west-1", "orchestra")
    assert clock.sleeps == [1.0, 11.0]  # 1 s after the list, 12 s after the first launch
    assert launches(standin) == 2  # no 429 on the way


def test_a_429_is_retried_after_retry_after(standin, clock):
    eager = lc.RateLimiter(clock=clock.time, sleep=clock.sleep,
                           intervals={"general": 0.0, "launch": 0.0})
    notices = []
    client = make_client(standin, clock, limiter=eager, notice=notices.append)
    client.launch("gpu_1x_a10", "us-east-1", "orchestra")
    client.launch("gpu_1x_a10", "us-east-1", "orchestra")
    assert clock.sleeps == [10.0]  # the stand-in's Retry-After, honoured once
    assert launches(standin) == 3 and len(standin.launches) == 2
    assert notices == ["POST /instance-operations/launch: rate limited, retrying in 10 s"]


def test_429_retries_are_bounded(clock):
    frozen = FakeClock()  # the stand-in's time never moves: it keeps answering 429
    with LambdaStandin(api_key=KEY, clock=frozen.time) as server:
        eager = lc.RateLimiter(clock=clock.time, sleep=clock.sleep,
                               intervals={"general": 0.0, "launch": 0.0})
        client = make_client(server, clock, limiter=eager)
        client.launch("gpu_1x_a10", "us-east-1", "orchestra")
        with pytest.raises(lc.LambdaError) as raised:
            client.launch("gpu_1x_a10", "us-east-1", "orchestra")
        assert (raised.value.status, raised.value.code) == (429, "global/rate-limited")
        assert clock.sleeps == [10.0] * lc.MAX_RATE_LIMIT_RETRIES
        assert launches(server) == 2 + lc.MAX_RATE_LIMIT_RETRIES


def test_a_long_retry_after_is_an_error_not_a_wait(clock):
    with LambdaStandin(api_key=KEY, clock=clock.time, launch_interval=600) as server:
        client = make_client(server, clock)
        client.launch("gpu_1x_a10", "us-east-1", "orchestra")
        with pytest.raises(lc.LambdaError) as raised:
            client.launch("gpu_1x_a10", "us-east-1", "orchestra")
        assert raised.value.status == 429
        assert clock.sleeps == [12.0]  # its own launch spacing, then no 588 s wait


def test_waiting_is_bounded(clock):
    with LambdaStandin(api_key=KEY, clock=clock.time, boot_delay=10_000) as server:
        client = make_client(server, clock)
        instance_id = client.launch("gpu_1x_a10", "us-east-1", "orchestra")
        with pytest.raises(lc.WaitTimeout) as raised:
            client.wait_active(instance_id, timeout=60, interval=10)
        assert "still booting after 60 s" in str(raised.value)
        assert sum(clock.sleeps) <= 60 + 12


def test_an_instance_that_fails_to_boot_stops_the_wait(clock):
    def no_address(instance):
        raise RuntimeError("no host")

    with LambdaStandin(api_key=KEY, clock=clock.time, address_source=no_address) as server:
        client = make_client(server, clock)
        instance_id = client.launch("gpu_1x_a10", "us-east-1", "orchestra")
        # The address source runs in its own thread: poll (on the fake clock) until it failed.
        with pytest.raises(lc.LambdaError) as raised:
            client.wait_active(instance_id, timeout=600, interval=10)
        assert raised.value.code == "orchestra/instance-failed"


def test_terminate_and_unknown_instances(client, standin):
    instance_id = client.launch("gpu_1x_a10", "us-east-1", "orchestra")
    [terminated] = client.terminate([instance_id])
    assert (terminated.id, terminated.status) == (instance_id, "terminated")
    assert client.instances() == []
    with pytest.raises(lc.LambdaError) as raised:
        client.terminate([instance_id])
    assert (raised.value.code, raised.value.status) == (lc.NOT_FOUND, 404)


def test_opening_web_ports_keeps_rules_and_is_idempotent(client, standin):
    standin.firewall_rules.append({"protocol": "udp", "port_range": [51820, 51820],
                                   "source_network": "10.0.0.0/8", "description": "vpn"})
    added = client.open_ports()
    assert [r.port_range for r in added] == [(80, 80), (443, 443)]
    assert [(r["protocol"], r["port_range"]) for r in standin.firewall_rules] == [
        ("tcp", [22, 22]), ("udp", [51820, 51820]), ("tcp", [80, 80]), ("tcp", [443, 443])]
    assert client.open_ports() == []
    assert standin.firewall_puts == 1


def test_merge_counts_wider_rules_as_covering():
    wide = [lc.FirewallRule("all", "0.0.0.0/0", (1, 65535))]
    assert lc.merge_rules(wide, lc.web_rules()) == (wide, [])
    narrow = [lc.FirewallRule("tcp", "10.0.0.0/8", (1, 65535)),
              lc.FirewallRule("tcp", "0.0.0.0/0", (80, 80))]
    merged, added = lc.merge_rules(narrow, lc.web_rules())
    assert [r.port_range for r in added] == [(443, 443)] and merged == narrow + added


def test_base_url_default_and_override():
    assert lc.base_url({}) == "https://cloud.lambda.ai/api/v1"
    assert lc.base_url({lc.BASE_URL_ENV: "http://127.0.0.1:9/api/v1/"}) == \
        "http://127.0.0.1:9/api/v1"


# --- failures on the way: retries, redirects, plain http --------------------------------------


def requests_to(standin, method, path) -> int:
    return sum(1 for request in standin.requests if request == (method, path))


def test_a_wait_survives_a_502_and_a_dropped_connection_after_a_billed_launch(standin, clock):
    notices = []
    client = make_client(standin, clock, notice=notices.append)
    instance_id = client.launch("gpu_1x_a10", "us-east-1", "orchestra")
    standin.inject(502, method="GET", path=f"/instances/{instance_id}")
    standin.inject(0, method="GET", path=f"/instances/{instance_id}")
    instance = client.wait_active(instance_id, timeout=300, interval=10)
    assert (instance.status, instance.ip) == ("active", ADDRESSES[0])
    assert launches(standin) == 1
    assert notices[0] == f"GET /instances/{instance_id}: HTTP 502, retrying in 1 s (1/5)"
    assert notices[1].startswith(f"GET /instances/{instance_id}: cannot reach the Lambda Cloud "
                                 "API") and notices[1].endswith("retrying in 2 s (2/5)")


def test_get_retries_back_off_and_are_bounded(standin, clock):
    client = make_client(standin, clock)
    standin.inject(503, method="GET", path="/instance-types", times=100)
    with pytest.raises(lc.LambdaError) as raised:
        client.instance_types()
    assert (raised.value.code, raised.value.status) == ("orchestra/server-error", 503)
    assert str(raised.value) == \
        "GET /instance-types: HTTP 503 after 5 retries (orchestra/server-error)"
    assert requests_to(standin, "GET", "/instance-types") == 1 + lc.MAX_GET_RETRIES
    assert [s for s in clock.sleeps if s > 1] == [2, 4, 8, 16]


def test_a_launch_is_never_retried(standin, clock):
    client = make_client(standin, clock)
    standin.inject(502, method="POST", path="/instance-operations/launch")
    with pytest.raises(lc.LambdaError) as raised:
        client.launch("gpu_1x_a10", "us-east-1", "orchestra")
    assert raised.value.status == 502 and "may have gone through" in str(raised.value)
    standin.inject(0, method="POST", path="/instance-operations/launch")
    with pytest.raises(lc.LambdaError, match="cannot reach"):
        client.launch("gpu_1x_a10", "us-east-1", "orchestra")
    assert launches(standin) == 2  # one request each, none repeated
    assert standin.launches == []


@pytest.fixture
def other_origin():
    """Another server on loopback that records the Authorization headers it receives."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = b'{"data": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_origin_is_refused_and_the_key_stays(standin, clock,
                                                                    other_origin, status):
    url, seen = other_origin
    standin.inject(status, method="GET", path="/instances", location=url + "/api/v1/instances")
    with pytest.raises(lc.LambdaError) as raised:
        make_client(standin, clock).instances()
    assert raised.value.code == "orchestra/redirect-refused"
    assert f"HTTP {status} to {url}, another origin: not followed" in str(raised.value)
    assert seen == []  # the other origin never saw a request, let alone the key
    assert KEY not in str(raised.value)


def test_a_redirect_within_the_api_is_followed(standin, clock):
    standin.inject(302, method="GET", path="/ssh-keys",
                   location=standin.url + "/api/v1/ssh-keys")
    assert [k.name for k in make_client(standin, clock).ssh_keys()] == ["orchestra"]
    assert requests_to(standin, "GET", "/ssh-keys") == 2


@pytest.mark.parametrize("url, problem", [
    ("http://api.example.com/api/v1", "is plain http"),
    ("http://10.0.0.5:8080/api/v1", "is plain http"),
    ("ftp://cloud.example.com/api/v1", "is not an https:// URL"),
    ("https://user:pw@cloud.example.com/api/v1", "carries a user or password"),
    ("https://cloud.example.com/api/v1\nX: y", "control character"),
    ("cloud.example.com/api/v1", "is not an https:// URL"),
])
def test_the_base_url_must_be_https_except_on_loopback(url, problem):
    with pytest.raises(lc.LambdaError) as raised:
        lc.Client(KEY, url)
    assert raised.value.code == "orchestra/insecure-url" and problem in raised.value.message
    assert lc.BASE_URL_ENV in raised.value.message
    with pytest.raises(lc.LambdaError, match=problem):
        lc.base_url({lc.BASE_URL_ENV: url})


def test_https_anywhere_and_http_on_loopback_are_accepted():
    for url in ("https://cloud.lambda.ai/api/v1", "http://127.0.0.1:9/api/v1",
                "http://localhost:9", "http://[::1]:9/api/v1"):
        assert lc.Client(KEY, url).url == url


# --- the stand-in's own contract ----------------------------------------------------------------


def raw(standin, method, path, body=None, auth=f"Bearer {KEY}"):
    request = urllib.request.Request(
        standin.url + "/api/v1" + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": auth, "Content-Type": "application/json"})
    try:
        with NO_PROXY.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_standin_takes_the_key_as_basic_user_too(standin):
    basic = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert raw(standin, "GET", "/ssh-keys", auth=basic)[0] == 200
    status, body = raw(standin, "GET", "/ssh-keys", auth="Basic " + base64.b64encode(
        b"other:").decode())
    assert status == 401 and body["error"]["code"] == "global/invalid-api-key"


def test_standin_checks_launch_fields(standin):
    status, body = raw(standin, "POST", "/instance-operations/launch", {
        "region_name": "us-east-1", "instance_type_name": "gpu_1x_a10",
        "ssh_key_names": ["a", "b"], "quantity": 2})
    assert status == 400 and body["error"]["code"] == "global/invalid-parameters"
    assert set(body["field_errors"]) == {"ssh_key_names", "quantity"}


def test_standin_refuses_a_file_system_in_another_region(standin, clock):
    status, body = raw(standin, "POST", "/instance-operations/launch", {
        "region_name": "us-west-1", "instance_type_name": "gpu_1x_a10",
        "ssh_key_names": ["orchestra"], "file_system_names": ["orchestra-data"]})
    assert status == 400
    assert body["error"]["code"] == "instance-operations/launch/file-system-in-wrong-region"


def test_standin_refuses_bad_firewall_rules(standin):
    status, body = raw(standin, "PUT", "/firewall-rules", {"data": [
        {"protocol": "tcp", "port_range": [443, 80], "source_network": "0.0.0.0/0"}]})
    assert status == 400 and "port_range" in body["error"]["message"]
    assert standin.firewall_puts == 0


def test_standin_listens_on_loopback_only():
    with pytest.raises(ValueError):
        LambdaStandin(api_key=KEY, host="0.0.0.0")


# --- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch, secrets_dir, standin):
    """A project root with a prod environment whose inventory reads hosts/prod."""
    (tmp_path / "inventories").mkdir()
    (tmp_path / "group_data").mkdir()
    shutil.copy(REPO_ROOT / "inventories" / "prod.py", tmp_path / "inventories" / "prod.py")
    (tmp_path / "group_data" / "prod.py").write_text("")
    monkeypatch.setenv("ORCHESTRA_ROOT", str(tmp_path))
    monkeypatch.delenv("ORCHESTRA_PROD_HOSTS", raising=False)
    monkeypatch.setenv(lc.BASE_URL_ENV, standin.url + "/api/v1")
    monkeypatch.setenv("ORCHESTRA_SECRET_LAMBDA_API_KEY", KEY)
    return tmp_path


def cli(clock, *args, input=None):
    return CliRunner().invoke(main, ["lambda", *args], input=input,
                              obj={"clock": clock.time, "sleep": clock.sleep})


LAUNCH = ("launch", "prod", "--type", "gpu_1x_a10", "--region", "us-east-1",
          "--ssh-key", "orchestra", "--filesystem", "orchestra-data")


def test_cli_types_shows_capacity(project, clock):
    result = cli(clock, "types", "--available")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].split() == [
        "gpu_1x_a10", "1", "30", "200", "0.75", "us-east-1,", "us-west-1"]
    assert "gpu_8x_h100_sxm5" not in result.output


def test_cli_launch_waits_and_records_the_address(project, clock, standin):
    result = cli(clock, *LAUNCH)
    assert result.exit_code == 0, result.output
    assert f"hosts/prod: added {ADDRESSES[0]}" in result.output
    hosts_file = (project / "hosts" / "prod").read_text()
    assert hosts_file.splitlines()[-1] == ADDRESSES[0]
    assert standin.launches[0]["name"] == "orchestra-prod"
    assert hosts.load("prod")["edge"] == [ADDRESSES[0]]


def test_cli_launch_replacing_a_lost_host(project, clock):
    (project / "hosts").mkdir()
    (project / "hosts" / "prod").write_text("198.51.100.99\n")
    result = cli(clock, *LAUNCH, "--replace")
    assert result.exit_code == 0, result.output
    assert (project / "hosts" / "prod").read_text() == (
        f"# replaced by {ADDRESSES[0]}: 198.51.100.99\n{ADDRESSES[0]}\n")


def test_cli_insufficient_capacity_exits_non_zero_with_a_hint(project, clock):
    result = cli(clock, "launch", "prod", "--type", "gpu_8x_h100_sxm5", "--region",
                 "us-east-1", "--ssh-key", "orchestra", "--filesystem", "orchestra-data")
    assert result.exit_code == 1
    assert "insufficient-capacity" in result.output
    assert "gpu_8x_h100_sxm5 has no capacity in any region now" in result.output
    assert not (project / "hosts" / "prod").exists()


def test_cli_bad_key_exits_non_zero_and_names_the_source(project, clock, monkeypatch):
    monkeypatch.setenv("ORCHESTRA_SECRET_LAMBDA_API_KEY", "wrong-key-0d9b3e")
    result = cli(clock, "instances")
    assert result.exit_code == 1
    assert "global/invalid-api-key" in result.output
    assert "came from ORCHESTRA_SECRET_LAMBDA_API_KEY" in result.output
    assert "wrong-key-0d9b3e" not in result.output


def test_cli_reads_the_key_from_the_secrets_file(project, clock, monkeypatch):
    monkeypatch.delenv("ORCHESTRA_SECRET_LAMBDA_API_KEY")
    path, _ = secrets.init("prod")
    path.write_text(path.read_text() + f"lambda_api_key: {KEY}\n")
    result = cli(clock, "instances")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ID")


def test_cli_missing_key_says_where_to_put_it(project, clock, monkeypatch):
    monkeypatch.delenv("ORCHESTRA_SECRET_LAMBDA_API_KEY")
    secrets.init("prod")
    result = cli(clock, "types")
    assert result.exit_code == 1
    assert "add lambda_api_key to" in result.output
    assert "ORCHESTRA_SECRET_LAMBDA_API_KEY" in result.output


def test_cli_terminate_asks_first(project, clock, standin):
    instance_id = make_client(standin, clock).launch("gpu_1x_a10", "us-east-1", "orchestra")
    refused = cli(clock, "terminate", instance_id, input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert [r for r in standin.requests if r[1] == "/instance-operations/terminate"] == []
    accepted = cli(clock, "terminate", instance_id, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert f"Terminated {instance_id}" in accepted.output


def test_cli_terminate_yes_skips_the_question(project, clock, standin):
    instance_id = make_client(standin, clock).launch("gpu_1x_a10", "us-east-1", "orchestra")
    result = cli(clock, "terminate", instance_id, "--yes")
    assert result.exit_code == 0, result.output
    assert "[y/N]" not in result.output
    assert cli(clock, "instances").output.splitlines()[1:] == []


def test_cli_terminate_unknown_instance(project, clock):
    result = cli(clock, "terminate", "0123abcd", "--yes")
    assert result.exit_code == 1
    assert "global/object-does-not-exist" in result.output


def test_cli_open_web_ports_twice(project, clock, standin):
    first = cli(clock, "open-web-ports")
    assert first.exit_code == 0, first.output
    assert first.output.startswith("Opened tcp 80, tcp 443 from 0.0.0.0/0")
    second = cli(clock, "open-web-ports")
    assert second.exit_code == 0 and "no change" in second.output
    assert standin.firewall_puts == 1


def test_cli_refuses_an_environment_without_a_hosts_file_inventory(project, clock, standin):
    (project / "inventories" / "lab.py").write_text("edge = app = data = ['10.0.0.1']\n")
    (project / "group_data" / "lab.py").write_text("")
    result = cli(clock, "launch", "lab", "--type", "gpu_1x_a10", "--region", "us-east-1",
                 "--ssh-key", "orchestra")
    assert result.exit_code == 1
    assert "inventories/lab.py does not read hosts/lab" in result.output
    assert standin.requests == []  # nothing launched


def test_cli_unreachable_api_is_a_clear_error(project, clock, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv(lc.BASE_URL_ENV, f"http://127.0.0.1:{closed}/api/v1")
    result = cli(clock, *LAUNCH)
    assert result.exit_code == 1
    assert "cannot reach the Lambda Cloud API" in result.output
    assert "the launch may have gone through" in result.output


def test_cli_refuses_a_plain_http_api_url_before_any_request(project, clock, standin,
                                                            monkeypatch):
    monkeypatch.setenv(lc.BASE_URL_ENV, "http://api.example.com/api/v1")
    result = cli(clock, "instances")
    assert result.exit_code == 1
    assert "is plain http" in result.output and lc.BASE_URL_ENV in result.output


def active_instance(standin, clock) -> lc.Instance:
    client = make_client(standin, clock)
    return client.wait_active(client.launch("gpu_1x_a10", "us-east-1", "orchestra"))


@pytest.mark.parametrize("listed_in", ["prod", "staging"])
def test_cli_terminate_refuses_an_instance_a_hosts_file_lists(project, clock, standin,
                                                              listed_in):
    instance = active_instance(standin, clock)
    (project / "hosts").mkdir()
    (project / "hosts" / listed_in).write_text(f"# {listed_in}\n{instance.ip}  app,data\n")
    result = cli(clock, "terminate", instance.id, input="y\n")
    assert result.exit_code == 1
    assert (f"refusing to terminate {instance.id} ({instance.ip}): listed in hosts/{listed_in}. "
            "Pass --force to terminate anyway") in result.output
    assert "[y/N]" not in result.output  # said before asking, and never asked
    assert requests_to(standin, "POST", "/instance-operations/terminate") == 0


def test_cli_terminate_force_terminates_a_listed_instance(project, clock, standin):
    instance = active_instance(standin, clock)
    (project / "hosts").mkdir()
    (project / "hosts" / "prod").write_text(f"{instance.ip}\n")
    result = cli(clock, "terminate", instance.id, "--force", "-y")
    assert result.exit_code == 0, result.output
    assert f"warning (--force): {instance.id} ({instance.ip}): listed in hosts/prod" in \
        result.output
    assert f"Terminated {instance.id}" in result.output


def test_cli_terminate_refuses_when_a_hosts_file_cannot_be_read(project, clock, standin):
    instance = active_instance(standin, clock)
    (project / "hosts").mkdir()
    (project / "hosts" / "lab").write_text("10.0.0.1 nonsense-group\n")
    result = cli(clock, "terminate", instance.id, "-y")
    assert result.exit_code == 1 and "hosts/lab cannot be read" in result.output
    assert requests_to(standin, "POST", "/instance-operations/terminate") == 0


def test_cli_terminate_an_unlisted_instance_with_y(project, clock, standin):
    instance = active_instance(standin, clock)
    (project / "hosts").mkdir()
    (project / "hosts" / "prod").write_text("203.0.113.200\n")
    result = cli(clock, "terminate", instance.id, "-y")
    assert result.exit_code == 0, result.output
    assert f"Terminated {instance.id}" in result.output


def test_cli_launch_meeting_a_502_is_not_repeated_and_says_check_first(project, clock, standin):
    standin.inject(502, method="POST", path="/instance-operations/launch")
    result = cli(clock, *LAUNCH)
    assert result.exit_code == 1
    assert "HTTP 502" in result.output and "the launch may have gone through" in result.output
    assert requests_to(standin, "POST", "/instance-operations/launch") == 1


def test_cli_open_mesh_port_allows_wireguard_between_the_hosts_only(project, clock, standin):
    (project / "hosts").mkdir()
    (project / "hosts" / "prod").write_text(
        "203.0.113.10 edge,app\n203.0.113.11 app\n203.0.113.12 data\n")
    (project / "group_data" / "all.py").write_text("wireguard_port = 51820\n")
    first = cli(clock, "open-mesh-port", "prod")
    assert first.exit_code == 0, first.output
    assert first.output.startswith("Opened udp 51820 from 203.0.113.10/32, udp 51820 from "
                                   "203.0.113.11/32, udp 51820 from 203.0.113.12/32")
    second = cli(clock, "open-mesh-port", "prod")
    assert second.exit_code == 0 and "no change" in second.output
    assert standin.firewall_puts == 1
