"""Multi-host layouts: the hosts file's layout, the mesh's addresses and keys, and what each
host of a three-host layout (A edge,app; B app; C data) receives from the deploy."""

import base64
import ipaddress
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestra_infra import hosts, mesh, secrets
from orchestra_infra.cli import main

ROOT = Path(__file__).resolve().parent.parent.parent
A, B, C = "203.0.113.10", "203.0.113.11", "203.0.113.12"
LAYOUT = {A: "edge,app", B: "app", C: "data"}
SEED = "golden-seed-0123456789abcdef"
NETWORK = "10.210.0.0/16"


# --- addresses and keys --------------------------------------------------------------------


def test_addresses_are_stable_inside_the_network_and_per_host():
    first = mesh.address(NETWORK, A)
    assert first == mesh.address(NETWORK, A)
    assert ipaddress.ip_address(first) in ipaddress.ip_network(NETWORK)
    assert first not in ("10.210.0.0", "10.210.255.255")
    assert len({mesh.address(NETWORK, h) for h in (A, B, C)}) == 3


def test_a_collision_names_both_hosts():
    names = [f"198.51.100.{i}" for i in range(1, 40)]
    problems = mesh.address_problems("10.9.0.0/28", names)
    assert problems and re.fullmatch(r"mesh_network: \S+ and \S+ both get 10\.9\.0\.\d+; "
                                     r"choose a larger network \(e\.g\. a /16\)", problems[0])


def test_public_key_is_x25519_of_the_private_key():
    # RFC 7748, section 6.1: Alice's key pair.
    private = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert mesh.public_key(base64.b64encode(private).decode()) == base64.b64encode(public).decode()


def test_private_keys_are_clamped_and_differ_per_host_and_seed():
    key = base64.b64decode(mesh.private_key(SEED, A))
    assert len(key) == 32 and key[0] & 7 == 0 and key[31] & 128 == 0 and key[31] & 64
    assert mesh.private_key(SEED, A) != mesh.private_key(SEED, B)
    assert mesh.private_key(SEED, A) != mesh.private_key(SEED + "x", A)


# --- the layout ----------------------------------------------------------------------------


def test_an_address_listed_twice_names_both_lines():
    with pytest.raises(hosts.HostsError) as raised:
        hosts.parse(f"{A} edge,app\n{B} app\n{A} data\n", "hosts/prod")
    assert str(raised.value) == f"hosts/prod:3: {A} is already listed on line 1"


def test_one_host_in_every_group_is_a_valid_layout():
    assert hosts.layout_problems(f"{A}\n", "hosts/prod", NETWORK) == []
    assert hosts.layout_problems("prod.example.com\n", "hosts/prod", NETWORK) == []


def test_the_three_host_layout_is_valid():
    text = "".join(f"{a} {g}\n" for a, g in LAYOUT.items())
    assert hosts.layout_problems(text, "hosts/prod", NETWORK) == []


def test_layout_problems_name_the_lines():
    text = f"{A} edge,data\n{B} data\napp.example.com app\n"
    assert hosts.layout_problems(text, "hosts/prod", NETWORK) == [
        f"hosts/prod: exactly one host must be in group data, found 2: {A} (hosts/prod:1), "
        f"{B} (hosts/prod:2)",
        "hosts/prod:3: app.example.com is not an IP address (a multi-host layout's firewall "
        "names its peers by address)",
    ]
    assert hosts.layout_problems(f"{A} data\n{B} data,app\n", "hosts/prod", NETWORK)[1:] == [
        "hosts/prod: at least one host must be in group edge, found none"]
    assert hosts.layout_problems("# nothing\n", "hosts/prod", NETWORK) == [
        "hosts/prod: no host listed"]


def test_check_validates_the_layout(secrets_dir, monkeypatch):
    pinned = f"weaviate_sha256={'ab' * 32}"
    monkeypatch.setenv("ORCHESTRA_STAGING_HOSTS", f"{A},{B}")  # both in every group
    secrets.init("staging")
    result = CliRunner().invoke(main, ["check", "staging", "--data", pinned])
    assert result.exit_code == 2
    assert result.output.startswith("ORCHESTRA_STAGING_HOSTS: exactly one host must be in "
                                    f"group data, found 2: {A} (ORCHESTRA_STAGING_HOSTS:1)")


def test_check_wants_the_seed_for_several_hosts(secrets_dir, monkeypatch, tmp_path):
    root = tmp_path / "root"
    for folder in ("inventories", "group_data"):
        (root / folder).mkdir(parents=True)
        for path in (ROOT / folder).glob("*.py"):
            (root / folder / path.name).write_text(path.read_text())
    (root / "hosts").mkdir()
    (root / "hosts" / "staging").write_text("".join(f"{a} {g}\n" for a, g in LAYOUT.items()))
    monkeypatch.setenv("ORCHESTRA_ROOT", str(root))
    monkeypatch.delenv("ORCHESTRA_STAGING_HOSTS", raising=False)
    secrets.init("staging")
    pinned = f"weaviate_sha256={'ab' * 32}"
    assert CliRunner().invoke(main, ["check", "staging", "--data", pinned]).exit_code == 0
    path = secrets.secrets_path("staging")
    path.write_text("\n".join(line for line in path.read_text().splitlines()
                              if not line.startswith("wireguard_mesh_seed")) + "\n")
    result = CliRunner().invoke(main, ["check", "staging", "--data", pinned])
    assert result.exit_code == 2
    assert "secrets.wireguard_mesh_seed: missing; a multi-host layout needs it" in result.output


# --- what each host of the three-host layout receives --------------------------------------


@cache
def _capture(layout: str = json.dumps(LAYOUT), drain: str = "") -> dict[str, dict[str, str]]:
    """{host address: {file: content}} of every file the deploy writes, and "$": commands;
    the host at address ``drain`` marked drain."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ORCHESTRA_GOLDEN_LAYOUT": layout,
           "ORCHESTRA_GOLDEN_DRAIN": drain,
           "ORCHESTRA_GOLDEN_SECRETS": json.dumps({"wireguard_mesh_seed": SEED})}
    env.pop("ORCHESTRA_GOLDEN_DATA", None)
    run = subprocess.run([sys.executable, str(ROOT / "tests/unit/golden/capture.py"),
                          "ubuntu2204"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    found: dict[str, dict[str, str]] = {}
    for who, path, body in re.findall(r"^\[@fake/([\d.]+)\] > (\S+)\n(.*?)\n<$", run.stdout,
                                      re.M | re.S):
        found.setdefault(who, {})[path.removesuffix(".orchestra-new")] = body
    found["log"] = {"stderr": run.stderr}
    for who, command in re.findall(r"^\[@fake/([\d.]+)\] \$ (.*)$", run.stdout, re.M):
        found.setdefault(who, {}).setdefault("$", "")
        found[who]["$"] += command + "\n"
    return found


def _address(name: str) -> str:
    return mesh.address(NETWORK, f"@fake/{name}")


def test_every_host_has_every_other_as_a_peer():
    plans = _capture()
    for me in (A, B, C):
        conf = plans[me]["/etc/wireguard/wg0.conf"]
        assert f"Address = {_address(me)}/16\n" in conf
        assert f"PrivateKey = {mesh.private_key(SEED, f'@fake/{me}')}\n" in conf
        peers = re.findall(r"PublicKey = (\S+)\nAllowedIPs = (\S+)\nEndpoint = (\S+)", conf)
        assert sorted(peers) == sorted(
            (mesh.public_key(mesh.private_key(SEED, f"@fake/{other}")),
             f"{_address(other)}/32", f"{other}:51820") for other in (A, B, C) if other != me)
        assert "wg-quick@wg0" in plans[me]["$"]
        assert "wireguard-tools" in plans[me]["$"]


def test_the_private_key_never_reaches_a_masked_copy_or_a_command():
    plans = _capture()
    for me in (A, B, C):
        key = mesh.private_key(SEED, f"@fake/{me}")
        masked = [body for path, body in plans[me].items() if "/masked/" in path]
        assert masked and not any(key in body for body in masked)
        assert any("(WireGuard key from wireguard_mesh_seed)" in body for body in masked)
        assert key not in plans[me]["$"] and SEED not in plans[me]["$"]
        assert "install -m 600 -o root -g root /dev/null /etc/wireguard/wg0.conf" \
            in plans[me]["$"]


def test_the_firewall_opens_the_mesh_to_the_peers_only():
    plans = _capture()
    rules = {me: plans[me]["/etc/nftables.d/orchestra.nft"] for me in (A, B, C)}
    assert f"udp dport 51820 ip saddr {{ {B}, {C} }} accept" in rules[A]
    data_peers = ", ".join(sorted([_address(A), _address(B)]))
    # The stores, and the status share (9198) every host hands the admin hosts.
    assert (f'iifname "wg0" ip saddr {{ {data_peers} }} tcp dport {{ 5432, 6379, 8080, '
            "9198, 50051 } accept") in rules[C]
    app_ports = "3000, 8000, 8001, 8003, 8006, 8007, 8008, 8009, 8013, 8016, 8017, 8018, 8019"
    # A, the metrics host, hands the environment's Prometheus (9090) to the admin hosts.
    assert f"tcp dport {{ {app_ports}, 9090, 9198 }} accept" in rules[A]
    assert f"tcp dport {{ {app_ports}, 9198 }} accept" in rules[B]
    assert "tcp dport { 22, 80, 443 } accept" in rules[C]  # the public ports are unchanged
    # The exporters: to the metrics host's private address alone (A scrapes its own on lo).
    assert f'iifname "wg0" ip saddr {_address(A)} tcp dport {{ 9100, 9115 }} accept' in rules[B]
    assert (f'iifname "wg0" ip saddr {_address(A)} tcp dport {{ 9100, 9115, 9121, 9187 }} '
            "accept") in rules[C]
    assert "9100" not in rules[A]


def _scraped(prometheus_yml: str) -> dict[str, set[tuple[str, str]]]:
    """{job: {(target, host label)}} of a prometheus.yml."""
    import yaml

    found: dict[str, set[tuple[str, str]]] = {}
    for job in yaml.safe_load(prometheus_yml)["scrape_configs"]:
        for group in job["static_configs"]:
            for target in group["targets"]:
                labels = group.get("labels", {})
                where = labels.get("__blackbox", target)
                found.setdefault(job["job_name"], set()).add((where, labels.get("host")))
    return found


def test_one_prometheus_per_environment_scrapes_every_host_over_the_mesh():
    plans = _capture()
    a, b, c = (_address(n) for n in (A, B, C))
    label = {n: f"@fake/{n}" for n in (A, B, C)}
    # Prometheus and Alertmanager on A (the first edge host) alone; removed elsewhere.
    assert "/etc/prometheus/prometheus.yml" in plans[A]
    for other in (B, C):
        assert "/etc/prometheus/prometheus.yml" not in plans[other]
        assert "/etc/default/prometheus" not in plans[other]
        assert " prometheus " not in plans[other]["$"].split("install", 1)[-1].split("\n")[0]
    jobs = _scraped(plans[A]["/etc/prometheus/prometheus.yml"])
    assert jobs["prometheus"] == {("127.0.0.1:9090", label[A])}
    assert jobs["alertmanager"] == {("127.0.0.1:9093", label[A])}
    assert jobs["node"] == {(f"{a}:9100", label[A]), (f"{b}:9100", label[B]),
                            (f"{c}:9100", label[C])}
    assert jobs["postgres"] == {(f"{c}:9187", label[C])}
    assert jobs["redis"] == {(f"{c}:9121", label[C])}
    assert jobs["nginx"] == {(f"{a}:9113", label[A])}
    assert jobs["mtail"] == {(f"{a}:3903", label[A])}
    # Each host's health endpoints, through that host's blackbox exporter.
    assert {where for where, _ in jobs["probe"]} == {f"{a}:9115", f"{b}:9115", f"{c}:9115"}
    import yaml

    config = yaml.safe_load(plans[A]["/etc/prometheus/prometheus.yml"])
    assert config["global"]["external_labels"] == {"environment": "golden"}  # hosts: targets'
    # Every host's units in the rule that alerts on a stopped one; only targets with a host
    # (not the package's own config's localhost, whose last samples outlive its restart).
    rules = plans[A]["/etc/prometheus/rules/orchestra.yml"]
    assert 'up{job!="probe", host!=""}' in rules
    assert re.search(r'node_systemd_unit_state\{state="active", name=~"[^"]+", host!=""\}', rules)
    for unit in ("nginx", "supervisor", "redis-server", "weaviate", "postgresql@14-main"):
        assert f"|{unit}|" in rules or f"({unit}|" in rules or f"|{unit})" in rules, unit


def test_each_host_s_exporters_listen_on_its_private_address():
    plans = _capture()
    for me, exporters in ((A, ("node", "blackbox", "nginx")), (B, ("node", "blackbox")),
                          (C, ("node", "blackbox", "postgres", "redis"))):
        for exporter in exporters:
            args = plans[me][f"/etc/default/prometheus-{exporter}-exporter"]
            assert f"listen-address={_address(me)}:" in args, (me, exporter)
            if exporter in ("node", "blackbox", "nginx"):  # their comments say where
                assert "the private address only" in args or "the private address out" in args
    assert f"--address {_address(A)} --port 3903" in \
        plans[A]["/etc/systemd/system/mtail.service.d/10-orchestra.conf"]
    # Prometheus and Alertmanager stay on loopback; the admin hosts read Prometheus through
    # the socket proxy on A's private address.
    assert "--web.listen-address=127.0.0.1:9090" in plans[A]["/etc/default/prometheus"]
    socket_unit = plans[A]["/etc/systemd/system/orchestra-prometheus-share.socket"]
    assert f"ListenStream={_address(A)}:9090\n" in socket_unit
    assert "IPAddressDeny=any\nIPAddressAllow=10.210.0.0/16\n" in socket_unit
    assert "systemd-socket-proxyd --exit-idle-time=5min 127.0.0.1:9090\n" in \
        plans[A]["/etc/systemd/system/orchestra-prometheus-share.service"]


def test_the_admin_hosts_read_the_environment_s_prometheus_and_one_alertmanager():
    plans = _capture()
    a = plans[A]["/etc/orchestra/ecosystem.config.js"]
    b = plans[B]["/etc/orchestra/ecosystem.config.js"]
    assert 'PROMETHEUS_URL: "http://127.0.0.1:9090"' in a
    assert 'ALERTMANAGER_URL: "http://127.0.0.1:9093"' in a
    assert f'PROMETHEUS_URL: "http://{_address(A)}:9090"' in b
    assert 'ALERTMANAGER_URL: ""' in b
    # Only A's status document carries alerts (the environment's, each with its host).
    runner = "/usr/local/lib/orchestra/status/orchestra-status"
    assert 'ALERTS_URL = "http://127.0.0.1:9093/api/v2/alerts' in plans[A][runner]
    for other in (B, C):
        assert "ALERTS_URL = None" in plans[other][runner]


def test_every_host_hands_its_status_to_the_admin_hosts_over_the_mesh():
    plans = _capture()
    for me in (A, B, C):
        socket_unit = plans[me]["/etc/systemd/system/orchestra-status-share.socket"]
        assert f"ListenStream={_address(me)}:9198\n" in socket_unit
        assert "IPAddressDeny=any\nIPAddressAllow=10.210.0.0/16\n" in socket_unit
        service = plans[me]["/etc/systemd/system/orchestra-status-share@.service"]
        assert "ExecStart=/bin/cat /run/orchestra-status/status.json\n" in service
        assert "DynamicUser=true\n" in service
        assert "/usr/local/lib/orchestra/status/orchestra-status" in plans[me]
    for me in (A, B):  # the admin hosts read the others
        ecosystem = plans[me]["/etc/orchestra/ecosystem.config.js"]
        peers = re.search(r'STATUS_PEERS: "(.*)"', ecosystem).group(1).split(",")
        assert sorted(peers) == sorted(f"@fake/{other}={_address(other)}:9198"
                                       for other in (A, B, C) if other != me)
    assert "/etc/orchestra/ecosystem.config.js" not in plans[C]


def test_the_app_hosts_use_the_data_host_over_the_mesh():
    plans = _capture()
    data = _address(C)
    for me in (A, B):
        env = plans[me]["/etc/orchestra/api.env"]
        assert f"@{data}:5432/orchestra\n" in env and f"@{data}:6379/0\n" in env
        assert f"WEAVIATE_URL=http://{data}:8080\n" in env
        assert f"ORCHESTRA_LISTEN_ALSO={_address(me)}\n" in env
        assert f'LISTEN_ALSO: "{_address(me)}"' in plans[me]["/etc/orchestra/ecosystem.config.js"]
    assert "/etc/orchestra/api.env" not in plans[C]


def test_the_data_host_listens_on_its_private_address_for_the_app_hosts():
    plans = _capture()[C]
    data, apps = _address(C), sorted([_address(A), _address(B)])
    assert f"listen_addresses = '127.0.0.1,::1,{data}'" in \
        plans["/etc/postgresql/14/main/conf.d/orchestra.conf"]
    hba = plans["/etc/postgresql/14/main/pg_hba.conf"]
    assert sorted(re.findall(r"^hostssl all +all +(\S+)/32 +scram-sha-256$", hba, re.M)) == apps
    assert f"bind 127.0.0.1 {data}\n" in plans["/etc/redis/redis.conf"]
    unit = plans["/etc/systemd/system/weaviate.service"]
    assert "--host 0.0.0.0 " in unit
    allowed = re.search(r"^IPAddressAllow=(.*)$", unit, re.M).group(1).split()
    assert allowed[0] == "localhost" and sorted(allowed[1:]) == apps
    assert "net.ipv4.ip_nonlocal_bind = 1" in plans["/etc/sysctl.d/60-orchestra.conf"]


def test_the_edge_balances_over_every_app_host_skipping_a_dead_one():
    conf = _capture()[A]["/etc/nginx/conf.d/orchestra.conf"]
    api = re.search(r"upstream orchestra_api \{(.*?)\}", conf, re.S).group(1)
    # Each host's first instance, then each host's second: nginx's next try after a
    # failure is another host's instance.
    assert re.findall(r"server (\S+)", api) == [
        "127.0.0.1:8000", f"{_address(B)}:8000", "127.0.0.1:8001", f"{_address(B)}:8001"]
    assert f"server {_address(B)}:8000 max_fails=1 fail_timeout=10s;" in api
    assert "server 127.0.0.1:8000 max_fails=0;" in api
    assert "/etc/nginx/conf.d/orchestra.conf" not in _capture()[B]


def test_each_mcp_session_goes_to_the_app_host_instance_that_made_it():
    """The route each app host's Supervisor gives an MCP instance (the start of its sessions'
    ids) is the one the edge's nginx maps to that host's address and port, and no two
    instances of the environment share one."""
    conf = _capture()[A]["/etc/nginx/conf.d/orchestra.conf"]
    mapped = {}
    for route, upstream in re.findall(r"~\^([0-9a-f]{8})- (orchestra_mcp_\w+);", conf):
        block = re.search(rf"upstream {upstream} \{{\s*server (\S+);", conf).group(1)
        mapped[route] = block
    given = {}
    for name, address in ((A, "127.0.0.1"), (B, _address(B))):
        programs = _capture()[name]["/etc/supervisor/conf.d/orchestra.conf"]
        for port, route in re.findall(r"--port (\d+)\ndirectory=\S+\n"
                                      r'environment=MCP_SESSION_ROUTE="([0-9a-f]{8})"', programs):
            given[route] = f"{address}:{port}"
    assert len(given) == 2 * 5 * 2  # two hosts, five servers, two instances each
    assert mapped == given


def test_a_bad_layout_stops_every_host_before_any_change():
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "ORCHESTRA_GOLDEN_LAYOUT": json.dumps({A: "edge,app,data", B: "app,data"}),
           "ORCHESTRA_GOLDEN_SECRETS": json.dumps({"wireguard_mesh_seed": SEED})}
    run = subprocess.run([sys.executable, str(ROOT / "tests/unit/golden/capture.py"),
                          "ubuntu2204"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode != 0
    assert "invalid layout, nothing was changed" in run.stderr
    assert "exactly one host must be in group data, found 2" in run.stderr
    assert not re.search(r"^\[@fake/[\d.]+\] (\$ (apt|install|systemctl)|>)", run.stdout, re.M)


def test_a_drained_host_stays_in_the_mesh_but_leaves_the_upstreams():
    text = f"{A} edge,app\n{B} app drain\n{C} data\n"
    assert hosts.drained(text, "hosts/prod") == [B]
    assert hosts.parse(text, "hosts/prod")["app"] == [A, B]
    assert hosts.layout_problems(text, "hosts/prod", NETWORK) == []
    assert hosts.layout_problems(f"{A} edge,app drain\n{C} data\n", "hosts/prod", NETWORK) == [
        "hosts/prod: every app host is marked drain: the edge would have no upstream"]
    plans = _capture(drain=B)
    conf = plans[A]["/etc/nginx/conf.d/orchestra.conf"]
    assert _address(B) not in conf and "127.0.0.1:8000" in conf
    assert f"AllowedIPs = {_address(B)}/32" in plans[A]["/etc/wireguard/wg0.conf"]
    assert f"{_address(B)}/32" in plans[C]["/etc/postgresql/14/main/pg_hba.conf"]



def test_the_app_hosts_wait_for_the_data_host_and_the_edge_for_the_app_hosts():
    order = re.findall(r"--> Starting (?:serial )?operation: (.*?) ?$",
                       _capture()["log"]["stderr"], re.M)

    def first(prefix):
        return next(i for i, name in enumerate(order) if name.startswith(prefix))

    assert first("Weaviate | Wait until Weaviate is ready") \
        < first("Wait until every host is done: data services") \
        < first("App | Make release") \
        < first("Wait until every host is done: app releases") < first("nginx | ")
    # A release rolls across the app hosts one host at a time.
    serial = re.findall(r"--> Starting serial operation: (.*?) ?$", _capture()["log"]["stderr"],
                        re.M)
    assert [name.split(" ")[0] for name in serial] == ["App", "Supervisor", "PM2"]


def test_the_layout_benchmark_names_its_hosts_and_refuses_too_few(monkeypatch):
    from benchmarks import layout

    monkeypatch.setenv("ORCHESTRA_BENCH_PREFIX", "t-x")
    assert layout._names(4) == ("t-x-one", ["t-x-edge", "t-x-app1", "t-x-app2", "t-x-data"])
    with pytest.raises(RuntimeError, match="at least 3 hosts"):
        layout.run(count=2)
    figures = layout.LayoutFigures(100.0, 2.0, 250.0, 2.8, 4, 1.6, 2.0)
    assert "(1.40x; target <= 1.5x)" in figures.report()
    assert "1.6 s one host, 2.0 s 4 hosts (1.25x)" in figures.report()


def test_the_layout_benchmark_counts_the_pyinfra_process_s_cpu(monkeypatch):
    from benchmarks import layout

    def busy(*args, **kwargs):  # a child that spends a known share of a second on the CPU
        return subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                               "while time.process_time() - t < 0.3: pass"], check=False)

    monkeypatch.setattr(layout, "run_pyinfra", busy)
    wall, cpu = layout._deploy(["t-x-one"])
    assert 0.3 <= cpu <= wall + 0.05


def test_the_metrics_group_may_be_a_host_of_its_own():
    D = "203.0.113.13"
    plans = _capture(json.dumps({**LAYOUT, D: "metrics"}))
    assert "/etc/prometheus/prometheus.yml" in plans[D]
    assert "/etc/prometheus/prometheus.yml" not in plans[A]
    jobs = _scraped(plans[D]["/etc/prometheus/prometheus.yml"])
    assert {where for where, _ in jobs["node"]} == {f"{_address(n)}:9100" for n in (A, B, C, D)}
    # A's exporters now answer D; D runs no app, no store, no edge.
    assert f"ip saddr {_address(D)} tcp dport {{ 3903, 9100, 9113, 9115 }}" in \
        plans[A]["/etc/nftables.d/orchestra.nft"]
    assert not any(path.startswith(("/etc/nginx/", "/etc/supervisor/", "/etc/redis/"))
                   for path in plans[D])
    assert f'PROMETHEUS_URL: "http://{_address(D)}:9090"' in \
        plans[A]["/etc/orchestra/ecosystem.config.js"]


def test_a_peer_with_an_ipv6_address_is_reached_and_let_in_over_ipv6():
    V6 = "2001:db8::11"
    plans = _capture(json.dumps({A: "edge,app", V6: "app", C: "data"}))
    conf = plans[A]["/etc/wireguard/wg0.conf"]
    assert f"Endpoint = [{V6}]:51820\n" in conf and f"Endpoint = {C}:51820\n" in conf
    rules = plans[A]["/etc/nftables.d/orchestra.nft"]
    assert f"udp dport 51820 ip saddr {{ {C} }} accept" in rules
    assert f"udp dport 51820 ip6 saddr {{ {V6} }} accept" in rules
    from orchestra_infra.lambda_cloud import mesh_rules

    assert [r.source_network for r in mesh_rules(51820, [C, V6])] == [f"{V6}/128", f"{C}/32"]


def test_every_socket_the_deploy_writes_is_one_the_port_check_expects():
    """A port held by a systemd socket the deploy wrote (the status share, the Prometheus
    proxy) is not a foreign process to the next run's port check (operations/ports.py)."""
    from orchestra_infra import catalog
    from orchestra_infra import config as config_module
    from orchestra_infra.schema import validate
    from orchestra_infra.secrets import NAMES

    config = validate(config_module.environment_data("prod", {"weaviate_sha256": "ab" * 32}),
                      NAMES)
    key_of = {port: key for key, port in config.port_table().items()}
    owners = catalog.port_owners(config)
    plans = _capture()
    sockets = {(me, path): body for me in (A, B, C) for path, body in plans[me].items()
               if path.endswith(".socket")}
    assert len(sockets) == 4  # a status share on each host, the Prometheus proxy on A
    for (me, path), body in sockets.items():
        port = int(re.search(r"^ListenStream=\S+:(\d+)$", body, re.M).group(1))
        assert ("systemd", "root") in owners[key_of[port]], (me, path, key_of[port])
